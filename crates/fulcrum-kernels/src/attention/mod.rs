//! Attention over a paged KV cache, for a ragged batch.
//!
//! The cache of one layer is a pool of fixed-size blocks; a sequence's keys
//! and values live in the blocks its *block table* lists, position `p` in
//! block `table[p / block_size]`, slot `p % block_size`. One call serves a
//! whole step: prefill chunks (each query attends causally within its chunk
//! and fully to earlier positions) and single-token decodes side by side.
//!
//! Each task takes up to 16 query rows of one sequence and one KV head (with
//! the query heads sharing it) and sweeps the key blocks twice: scores and
//! maxima, then the weighted values; only the task's own score rows are kept
//! (`rows × heads × visible keys`), never a step-wide score matrix. The
//! rounding follows llama.cpp's CPU attention (q rounded to f16 like the
//! keys, softmax sums in f64, normalized weights rounded to f16 before they
//! multiply the f16 values): the small models fulcrum runs are sensitive
//! enough that this decides whether greedy outputs agree with llama.cpp's.
//!
//! The arithmetic, in this order, is the contract `portable.rs` states and
//! `avx512.rs` (and, for AVX2 CPUs, `avx2.rs`) reproduces bit for bit
//! (llama.cpp's f16 matrix products sum
//! the same way): a score is 16 lanes `l` of fused multiply-add chains over
//! dimensions `l, l+16, …`, reduced by a fixed tree, times the scale; weights
//! are `exp(score − max)` ([`crate::ops::exp_approx`]) summed per 16 absolute
//! positions (the same tree) into an f64 total; `p = f16(e · (1/total))`; an
//! output dimension is 16 lanes of fused multiply-add chains over positions
//! `l, l+16, …` (absolute), reduced by the tree.
//!
//! Every query row's result depends only on its own query vector and the keys
//! it sees, visited block by block in position order: the same whether the
//! prompt was chunked or not, whatever else is in the batch, and whatever the
//! thread count. That is why new K/V are written to the cache *before*
//! attention and always read back from it (f16), even within a chunk.

use std::cell::RefCell;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::pool::{SendPtr, WorkerPool};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::{exp16, reduce16x16};
mod cells;
mod portable;
mod q8;

pub use cells::{cells_from_vec, KvCell, KvSlice};
pub use q8::{
    paged_attention_q8, paged_attention_q8_cells, q8_scales_len, write_kv_q8_batch,
    write_kv_q8_batch_cells, Q8Cells, Q8Layer, Q8LayerMut,
};

/// Layout of one layer's K or V cache, f16: `[kv head][block]`, and per
/// (head, block) K is `[slot][dim]` (a key vector is contiguous) and V is
/// *transposed*, `[dim][slot]` (one dimension of consecutive positions is
/// contiguous), the shapes llama.cpp's non-flash attention multiplies, so
/// sums run in its order.
///
/// Head-major, not block-major: a task reads one head of a sequence, so
/// blocks a sequence got in a run (a prompt's) are one contiguous stretch of
/// memory the hardware prefetcher follows; with all heads of a block side by
/// side, a task read 2 KB of every 6 KB (measured with `attn_speed`, 64
/// sequences of 232 tokens: 10.5 → 14.3 GB/s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub num_blocks: usize,
    pub block_size: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl KvShape {
    /// Elements of one block (all heads).
    pub fn block_len(&self) -> usize {
        self.num_kv_heads * self.block_size * self.head_dim
    }

    /// Elements of one layer.
    pub fn layer_len(&self) -> usize {
        self.num_blocks * self.block_len()
    }

    /// Offset of `(block, head)`'s `block_size × head_dim` elements.
    pub(crate) fn head_offset(&self, block: usize, head: usize) -> usize {
        (head * self.num_blocks + block) * self.block_size * self.head_dim
    }
}

/// How the KV cache stores keys and values (`--kv-cache-dtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvDtype {
    /// Half precision, the arithmetic llama.cpp's CPU attention uses.
    #[default]
    F16,
    /// 8-bit rows with one f32 scale each (see `q8.rs`): about half the
    /// bytes, so twice the tokens and half the decode-attention traffic.
    Q8,
}

impl KvDtype {
    /// Bytes one head's key (or value) row of `head_dim` takes.
    pub fn row_bytes(self, head_dim: usize) -> usize {
        match self {
            KvDtype::F16 => 2 * head_dim,
            KvDtype::Q8 => head_dim + 4,
        }
    }

    /// Why this storage cannot hold rows of `head_dim`, if it cannot.
    pub fn check_head_dim(self, head_dim: usize) -> Result<(), String> {
        match self {
            KvDtype::Q8 if !head_dim.is_multiple_of(4) || head_dim > 256 => Err(format!(
                "the q8 KV cache needs a head dimension divisible by 4 and at most 256 \
                 (its integer sums stay within 32 bits); this model's is {head_dim}: use f16"
            )),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "auto" => Ok(KvDtype::F16),
            "q8" | "int8" => Ok(KvDtype::Q8),
            _ => Err(format!("unknown KV cache dtype `{s}`: expected f16 or q8")),
        }
    }
}

impl std::fmt::Display for KvDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvDtype::F16 => "f16",
            KvDtype::Q8 => "q8",
        })
    }
}

/// Stores one token's K and V rows (`[num_kv_heads * head_dim]` each) at
/// position `pos` of the sequence owning `block_table`.
pub fn write_kv(
    shape: &KvShape,
    k_layer: &mut [f16],
    v_layer: &mut [f16],
    block_table: &[u32],
    pos: usize,
    k_row: &[f32],
    v_row: &[f32],
) {
    let block = block_table[pos / shape.block_size] as usize;
    let slot = pos % shape.block_size;
    let hd = shape.head_dim;
    for h in 0..shape.num_kv_heads {
        let at = shape.head_offset(block, h);
        put_key(k_layer, at, slot, &k_row[h * hd..(h + 1) * hd]);
        put_value(
            v_layer,
            at,
            slot,
            shape.block_size,
            &v_row[h * hd..(h + 1) * hd],
        );
    }
}

/// Key `row` into slot `slot` of the `[slot][dim]` block at `at`.
fn put_key(cells: &mut [f16], at: usize, slot: usize, row: &[f32]) {
    let hd = row.len();
    cells[at + slot * hd..at + (slot + 1) * hd].convert_from_f32_slice(row);
}

/// Value `row` into slot `slot` of the transposed `[dim][slot]` block at `at`.
fn put_value(cells: &mut [f16], at: usize, slot: usize, block_size: usize, row: &[f32]) {
    for (d, &x) in row.iter().enumerate() {
        cells[at + d * block_size + slot] = f16::from_f32(x);
    }
}

/// Stores the new K and V rows of every sequence of a step (`k`, `v`:
/// `[rows, num_kv_heads * head_dim]`, row `first_row + r` at position
/// `num_computed_tokens + r`), what [`write_kv`] does row by row, in parallel: one task
/// per (head, K or V), each owning that head's region of the layout, so no
/// two tasks touch the same memory. (The scattered V stores miss the cache;
/// on the engine thread alone they took ~6 ms of a 64-sequence decode step.)
pub fn write_kv_batch(
    pool: &WorkerPool,
    shape: &KvShape,
    k_layer: &mut [f16],
    v_layer: &mut [f16],
    seqs: &[AttentionSeq],
    k: &[f32],
    v: &[f32],
) {
    let (kc, vc) = (KvSlice::from_mut(k_layer), KvSlice::from_mut(v_layer));
    // SAFETY: the layer is exclusively borrowed.
    unsafe { write_kv_batch_cells(pool, shape, kc, vc, seqs, k, v) }
}

/// [`write_kv_batch`] into cells other threads may be using.
///
/// # Safety
/// While it runs, no other thread touches the slots it writes (positions
/// `num_computed_tokens..num_computed_tokens + num_rows` of each sequence), and `seqs` name
/// each such slot once.
#[allow(clippy::too_many_arguments)]
pub unsafe fn write_kv_batch_cells(
    pool: &WorkerPool,
    shape: &KvShape,
    k_layer: KvSlice<f16>,
    v_layer: KvSlice<f16>,
    seqs: &[AttentionSeq],
    k: &[f32],
    v: &[f32],
) {
    let kv = F16Kv::new(shape, k_layer, v_layer);
    let (hd, bs) = (shape.head_dim, shape.block_size);
    let kvd = shape.num_kv_heads * hd;
    pool.run(2 * shape.num_kv_heads, |task| {
        let (h, is_v) = (task / 2, task % 2 == 1);
        let cells = if is_v { kv.v } else { kv.k };
        let src = if is_v { v } else { k };
        for s in seqs {
            for r in 0..s.num_rows {
                let pos = s.num_computed_tokens + r;
                let at = shape.head_offset(s.block_table[pos / bs] as usize, h);
                // SAFETY: this task alone writes head h's K (or V) region of
                // the block, and the caller excludes other threads from the slot.
                let region = unsafe { cells.range_mut(at..at + bs * hd) };
                let row = &src[(s.first_row + r) * kvd + h * hd..][..hd];
                if is_v {
                    put_value(region, 0, pos % bs, bs, row);
                } else {
                    put_key(region, 0, pos % bs, row);
                }
            }
        }
    });
}

/// One sequence's share of a step.
#[derive(Clone, Copy, Debug)]
pub struct AttentionSeq<'a> {
    /// Its first query row in the step's `q` / `out` matrices.
    pub first_row: usize,
    /// Number of new tokens (query rows) it has in this step.
    pub num_rows: usize,
    /// Position of its first new token (= tokens already in the cache).
    pub num_computed_tokens: usize,
    pub block_table: &'a [u32],
}

#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q·k (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Sliding window: a query at `p` sees keys at `p - window < k <= p`.
    pub window: Option<usize>,
}

/// Fewest query rows one task takes (they share each key load).
const ROWS_PER_TASK: usize = 16;

/// Most query rows one task takes.
const MAX_ROWS_PER_TASK: usize = 128;

/// Query rows per task for a step of `total_rows` rows: as many as still
/// leave ~8 tasks per thread, between [`ROWS_PER_TASK`] and
/// [`MAX_ROWS_PER_TASK`], in multiples of 16. The f16 kernel widens its
/// task's keys and values once, a cost that grows with the prompt, not with
/// the task's rows: at 16 rows it took ~0.5–1 s of a 4 000-token prompt's
/// ~7 s of attention. Results do not depend on the split.
fn rows_per_task(total_rows: usize, num_kv_heads: usize, threads: usize) -> usize {
    let even = total_rows * num_kv_heads / (8 * threads.max(1));
    (even / 16 * 16).clamp(ROWS_PER_TASK, MAX_ROWS_PER_TASK)
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[row, head] = softmax(q·Kᵀ·scale) V` for every query row of every
/// sequence. `q`, `out`: `[num_rows, num_heads * head_dim]`; the K/V of every
/// query position must already be in the cache.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    pool: &WorkerPool,
    p: &AttentionParams,
    shape: &KvShape,
    q: &[f32],
    k_layer: &[f16],
    v_layer: &[f16],
    seqs: &[AttentionSeq],
    out: &mut [f32],
) {
    // SAFETY: the layer is borrowed shared, so nothing writes it; attention reads only.
    let (k, v) = unsafe { (KvSlice::from_ref(k_layer), KvSlice::from_ref(v_layer)) };
    // SAFETY: as above.
    unsafe { paged_attention_cells(pool, p, shape, q, k, v, seqs, out) }
}

/// [`paged_attention`] over cells other threads may be using.
///
/// # Safety
/// While it runs, no thread writes the blocks the `seqs` read (their block
/// tables up to their last position).
#[allow(clippy::too_many_arguments)]
pub unsafe fn paged_attention_cells(
    pool: &WorkerPool,
    p: &AttentionParams,
    shape: &KvShape,
    q: &[f32],
    k_layer: KvSlice<f16>,
    v_layer: KvSlice<f16>,
    seqs: &[AttentionSeq],
    out: &mut [f32],
) {
    let kv = F16Kv::new(shape, k_layer, v_layer);
    run_tasks(pool, p, shape, q, kv, seqs, out, |task, out| {
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            match crate::isa::Isa::active() {
                #[cfg(target_arch = "x86_64")]
                crate::isa::Isa::Avx512 if p.head_dim.is_multiple_of(16) => {
                    // SAFETY: the active ISA is only Avx512 when the CPU supports it.
                    unsafe { avx512::attend(task, &mut buf, out) }
                }
                #[cfg(target_arch = "x86_64")]
                crate::isa::Isa::Avx2 if p.head_dim.is_multiple_of(16) => {
                    // SAFETY: the active ISA is only Avx2 when the CPU supports it.
                    unsafe { avx2::attend(task, &mut buf, out) }
                }
                #[cfg(target_arch = "x86_64")]
                crate::isa::Isa::Avx2 | crate::isa::Isa::Avx512 => {
                    // SAFETY: AVX2 (and so FMA and F16C) is supported when
                    // either is the active ISA.
                    unsafe { portable::attend_fma(task, &mut buf, out) }
                }
                _ => portable::attend(task, &mut buf, out),
            }
        })
    });
}

/// Splits a step's attention into tasks — (sequence, kv head, chunk of up to
/// [`rows_per_task`] rows), enumerated without allocating — and runs
/// `attend` on each in the pool; whatever the cache's storage (`kv`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_tasks<C: Copy + Sync>(
    pool: &WorkerPool,
    p: &AttentionParams,
    shape: &KvShape,
    q: &[f32],
    kv: C,
    seqs: &[AttentionSeq],
    out: &mut [f32],
    attend: impl Fn(&Task<C>, &mut [f32]) + Sync,
) {
    debug_assert_eq!(p.head_dim, shape.head_dim);
    debug_assert_eq!(p.num_kv_heads, shape.num_kv_heads);
    debug_assert_eq!(p.num_heads % p.num_kv_heads, 0);
    let total_rows: usize = seqs.iter().map(|s| s.num_rows).sum();
    let rows_per_task = rows_per_task(total_rows, p.num_kv_heads, pool.num_threads());
    let chunks_of = |s: &AttentionSeq| s.num_rows.div_ceil(rows_per_task);
    let per_head: usize = seqs.iter().map(chunks_of).sum();
    let num_tasks = per_head * p.num_kv_heads;
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_len = out.len();
    pool.run(num_tasks, |task| {
        let kv_head = task / per_head;
        let mut chunk = task % per_head;
        let mut which = 0;
        while chunk >= chunks_of(&seqs[which]) {
            chunk -= chunks_of(&seqs[which]);
            which += 1;
        }
        let s = &seqs[which];
        let r0 = chunk * rows_per_task;
        let r1 = (r0 + rows_per_task).min(s.num_rows);
        // SAFETY: this task writes only rows r0..r1 of sequence `which`, heads of
        // group `kv_head`; no two tasks share a (row, head) pair, and `out` is
        // exclusively borrowed for the whole `run`.
        let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.get(), out_len) };
        let t = Task {
            p,
            shape,
            q,
            kv,
            s,
            kv_head,
            rows: r0..r1,
        };
        attend(&t, out);
    });
}

/// The passes over a group of `group` query heads, `(g0, n)` for heads
/// `g0..g0 + n`, up to 8 at a time: the AVX-512 kernels take a group's heads
/// together (each load serves them all), as many as their accumulators
/// leave registers for.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the AVX-512 kernels
pub(crate) fn head_passes(group: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..group)
        .step_by(8)
        .map(move |g0| (g0, (group - g0).min(8)))
}

/// The lanes of the 16 positions from `first` that a query row seeing
/// positions `lo..=hi` sees, bit `l` for position `first + l` (`first ≤ hi`
/// and `lo < first + 16`).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the AVX-512 kernels
pub(crate) fn visible_lanes(lo: usize, hi: usize, first: usize) -> u16 {
    let a = lo.saturating_sub(first).min(16);
    let b = (hi + 1 - first).min(16);
    (((1u32 << b) - 1) & !((1u32 << a) - 1)) as u16
}

/// One layer's f16 cache. Kernels read only the blocks of their task's
/// sequence, which no thread writes during attention (the contract of
/// [`paged_attention_cells`]).
#[derive(Clone, Copy)]
pub(crate) struct F16Kv<'a> {
    pub k: KvSlice<'a, f16>,
    pub v: KvSlice<'a, f16>,
}

impl<'a> F16Kv<'a> {
    /// Panics unless both buffers have `shape`'s size.
    fn new(shape: &KvShape, k: KvSlice<'a, f16>, v: KvSlice<'a, f16>) -> Self {
        assert_eq!(k.len(), shape.layer_len(), "K layer of the wrong shape");
        assert_eq!(v.len(), shape.layer_len(), "V layer of the wrong shape");
        F16Kv { k, v }
    }
}

/// The rows one task handles: `rows` of sequence `s`, query heads of
/// `kv_head`, over one layer's cache `kv` (its storage type).
pub(crate) struct Task<'a, C = F16Kv<'a>> {
    pub p: &'a AttentionParams,
    pub shape: &'a KvShape,
    pub q: &'a [f32],
    pub kv: C,
    pub s: &'a AttentionSeq<'a>,
    pub kv_head: usize,
    pub rows: std::ops::Range<usize>,
}

impl<C> Task<'_, C> {
    pub fn pos_of(&self, r: usize) -> usize {
        self.s.num_computed_tokens + r
    }

    /// First key position row `r` sees.
    pub fn lo_of(&self, r: usize) -> usize {
        match self.p.window {
            Some(w) => (self.pos_of(r) + 1).saturating_sub(w),
            None => 0,
        }
    }

    /// Score rows start at this position (a multiple of 16, so the softmax
    /// sums group keys by absolute position whatever the chunking).
    pub fn base(&self) -> usize {
        self.lo_of(self.rows.start) / 16 * 16
    }

    /// Length of each score row: up to the last row's position, rounded up to 16.
    pub fn span(&self) -> usize {
        (self.pos_of(self.rows.end - 1) + 1 - self.base()).div_ceil(16) * 16
    }

    pub fn num_queries(&self) -> usize {
        self.rows.len() * (self.p.num_heads / self.p.num_kv_heads)
    }

    /// Query `qi` (row-major over rows, then the group's heads): its row and head.
    pub fn query(&self, qi: usize) -> (usize, usize) {
        let group = self.p.num_heads / self.p.num_kv_heads;
        (
            self.rows.start + qi / group,
            self.kv_head * group + qi % group,
        )
    }
}

/// Widens a prompt task's keys and values to f32 once: keys by position
/// (`keys[(pos − base)·head_dim..]`), values by dimension
/// (`vals[d·val_stride + pos − base]`, the block's slots of one dimension
/// being contiguous), for positions `lo_of(first row)..=pos_of(last row)`.
/// Other values are zero (their weights are zero); other keys are left
/// as they are (never read). `widen` converts one contiguous run of f16;
/// each kernel passes its instruction set's.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the AVX-512 and AVX2 kernels
pub(crate) fn widen_task_kv(
    t: &Task,
    keys: &mut [f32],
    vals: &mut [f32],
    val_stride: usize,
    widen: impl Fn(&[f16], &mut [f32]),
) {
    let (hd, bs) = (t.p.head_dim, t.shape.block_size);
    let base = t.base();
    let num_computed_tokens = t.lo_of(t.rows.start);
    let last_pos = t.pos_of(t.rows.end - 1);
    vals.fill(0.0);
    for b in num_computed_tokens / bs..=last_pos / bs {
        let head = t.shape.head_offset(t.s.block_table[b] as usize, t.kv_head);
        let (p0, p1) = (
            (b * bs).max(num_computed_tokens),
            ((b + 1) * bs - 1).min(last_pos),
        );
        for pos in p0..=p1 {
            let slot = pos % bs;
            // SAFETY (these reads): blocks of the task's own sequence (see `F16Kv`).
            let k = unsafe { t.kv.k.range(head + slot * hd..head + (slot + 1) * hd) };
            widen(k, &mut keys[(pos - base) * hd..(pos - base + 1) * hd]);
        }
        let (s0, n) = (p0 % bs, p1 - p0 + 1);
        for d in 0..hd {
            let v = unsafe { t.kv.v.range(head + d * bs + s0..head + d * bs + s0 + n) };
            let at = d * val_stride + p0 - base;
            widen(v, &mut vals[at..at + n]);
        }
    }
}

#[cfg(test)]
mod tests;
