//! The 8-bit KV cache (`--kv-cache-dtype q8`): half the bytes of f16, so
//! twice the tokens in the same memory and half the traffic of decode
//! attention, whose cost grows with the batch (a 64-sequence decode step
//! of SmolLM2 reads ~390 MB of f16 K/V).
//!
//! Each (token, kv head) row of K and of V is quantized on its own:
//! `scale = max|x| / 127` (f32), `x8 = round(x / scale)` in −127..=127.
//! Layout per `(head, block)` region (same offsets as [`KvShape`]'s f16
//! elements, here bytes):
//!
//! - K: `[dim / 4][slot][4]`, stored offset by 128 as unsigned bytes — 16
//!   slots × 4 dimensions fill one 64-byte register, the operand layout of
//!   `vpdpbusd`, so a score is integer multiply-adds with no conversion;
//! - V: `[dim][slot]` signed bytes, as the f16 cache transposes V;
//! - one f32 scale per slot for K and for V, `[head][block][slot]`.
//!
//! The arithmetic, the contract `portable.rs` states and `avx512.rs`
//! reproduces bit for bit:
//!
//! - the query head is quantized to 16 bits (`q16`, scale
//!   `qs = max|q| / 32767`; in 8 bits it moved the top-10
//!   log-probabilities of llama.cpp's reference prompts by up to 0.50, in
//!   16 bits by at most 0.39, the fast numerics' own bar being 0.45);
//! - `score = (f32(Σ_d k8·q16) · k_scale) · (qs · scale)` — the integer sum
//!   is exact, so its order does not matter (the SIMD kernel takes it as
//!   `256·Σ k8·hi + Σ k8·lo` over the query's high and low bytes, two
//!   `vpdpbusd` per 4 dimensions);
//! - `e = exp(score − max)` ([`crate::ops::exp_approx`]), summed per 16 absolute
//!   positions by the fixed tree into an f64 `total`;
//! - `u = e · v_scale` (f32), and the weights in 16 bits:
//!   `w = round(u · (32767 / max u))` — no f16 rounding, no normalization
//!   yet (it is one factor at the end);
//! - an output dimension is `Σ w · v8` in exact integers over each stretch
//!   of 256 absolute positions (`vpdpwssd`: two positions per lane, no
//!   conversions; 256 keeps the sum inside i32), the stretches added in
//!   order in f32, times `r = f32(max u / (32767 · total))`.
//!
//! The 16-bit weights lose at most `max u / 65534` each — far below the
//! 8-bit values' own rounding — and replace a conversion and a float
//! multiply-add per value with a quarter of an integer instruction.
//!
//! Like the f16 path, a row's result depends only on its own query and the
//! keys it sees: the same chunked or not, batched or alone, on any thread
//! count. It does not follow llama.cpp's rounding (its 8-bit caches differ
//! anyway), so greedy outputs may differ from the f16 cache's.

use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use super::cells::KvSlice;
use super::{run_tasks, AttentionParams, AttentionSeq, KvShape};
use crate::pool::WorkerPool;

/// One layer's 8-bit cache, read-only: `k` and `v` hold
/// [`KvShape::layer_len`] bytes, the scales one f32 per (head, block, slot).
#[derive(Clone, Copy)]
pub struct Q8Layer<'a> {
    pub k: &'a [u8],
    pub k_scales: &'a [f32],
    pub v: &'a [i8],
    pub v_scales: &'a [f32],
}

/// One layer's 8-bit cache, for writing.
pub struct Q8LayerMut<'a> {
    pub k: &'a mut [u8],
    pub k_scales: &'a mut [f32],
    pub v: &'a mut [i8],
    pub v_scales: &'a mut [f32],
}

/// One layer's 8-bit cache as cells several threads may use (see
/// `cells.rs`); what the kernels work on.
#[derive(Clone, Copy)]
pub struct Q8Cells<'a> {
    pub k: KvSlice<'a, u8>,
    pub k_scales: KvSlice<'a, f32>,
    pub v: KvSlice<'a, i8>,
    pub v_scales: KvSlice<'a, f32>,
}

impl Q8Cells<'_> {
    /// Panics unless the buffers have `shape`'s sizes.
    fn check(&self, shape: &KvShape) {
        let (n, ns) = (shape.layer_len(), q8_scales_len(shape));
        assert_eq!(self.k.len(), n, "K layer of the wrong shape");
        assert_eq!(self.v.len(), n, "V layer of the wrong shape");
        assert_eq!(self.k_scales.len(), ns, "K scales of the wrong shape");
        assert_eq!(self.v_scales.len(), ns, "V scales of the wrong shape");
    }
}

impl Q8Layer<'_> {
    /// # Safety
    /// Nothing may be written through the cells.
    unsafe fn cells(&self) -> Q8Cells<'_> {
        // SAFETY: read only (the caller's promise).
        unsafe {
            Q8Cells {
                k: KvSlice::from_ref(self.k),
                k_scales: KvSlice::from_ref(self.k_scales),
                v: KvSlice::from_ref(self.v),
                v_scales: KvSlice::from_ref(self.v_scales),
            }
        }
    }
}

impl Q8LayerMut<'_> {
    pub fn cells(&mut self) -> Q8Cells<'_> {
        Q8Cells {
            k: KvSlice::from_mut(self.k),
            k_scales: KvSlice::from_mut(self.k_scales),
            v: KvSlice::from_mut(self.v),
            v_scales: KvSlice::from_mut(self.v_scales),
        }
    }
}

/// Scales of one layer's K (or V): one per slot of every (head, block).
pub fn q8_scales_len(shape: &KvShape) -> usize {
    shape.num_kv_heads * shape.num_blocks * shape.block_size
}

/// Byte of key dimension `d`, slot `slot`, in the `(head, block)` region at `at`.
#[inline]
pub(crate) fn key_index(at: usize, block_size: usize, slot: usize, d: usize) -> usize {
    at + ((d / 4) * block_size + slot) * 4 + d % 4
}

/// `x8[i] = round(x[i] / scale)` with `scale = max|x| / 127`; returns the
/// scale (0 for an all-zero row, whose bytes are then 0).
pub(crate) fn quantize_i8(x: &[f32], mut put: impl FnMut(usize, i8)) -> f32 {
    quantize_levels(x, 127, |i, v| put(i, v as i8))
}

/// `q[i] = round(x[i] / scale)` in `-top..=top` with `scale = max|x| / top`;
/// returns the scale (0 for an all-zero row, whose levels are then 0).
fn quantize_levels(x: &[f32], top: i32, mut put: impl FnMut(usize, i32)) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / top as f32;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (i, &v) in x.iter().enumerate() {
        // `as` saturates (NaN → 0); the clamp only guards rounding at ±top.
        put(i, (round_even(v * inv) as i32).clamp(-top, top));
    }
    scale
}

/// Round to nearest, ties to even — what `round_ties_even` and the SIMD
/// conversions do — for |x| < 2²², by adding and removing 1.5·2²³ (whose
/// ulp is 1); without SSE4.1 `round_ties_even` is a libm call, which was
/// ~3% of a 64-sequence run in the KV writes alone.
#[inline]
fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// One key row into slot `slot` of the region at `at`: dimensions in fours,
/// each four a little-endian word flipped to offset-128 bytes.
fn put_key_q8(cells: &mut [u8], at: usize, bs: usize, slot: usize, q: &[i8]) {
    for (j, four) in q.chunks_exact(4).enumerate() {
        let word = u32::from_le_bytes([four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8]);
        let i = at + (j * bs + slot) * 4;
        cells[i..i + 4].copy_from_slice(&(word ^ 0x8080_8080).to_le_bytes());
    }
}

/// Stores the new K and V rows of every sequence of a step, as
/// [`super::write_kv_batch`] does for f16: one task per (head, K or V),
/// each owning its head's bytes and scales.
pub fn write_kv_q8_batch(
    pool: &WorkerPool,
    shape: &KvShape,
    mut layer: Q8LayerMut,
    seqs: &[AttentionSeq],
    k: &[f32],
    v: &[f32],
) {
    // SAFETY: the layer is exclusively borrowed.
    unsafe { write_kv_q8_batch_cells(pool, shape, layer.cells(), seqs, k, v) }
}

/// [`write_kv_q8_batch`] into cells other threads may be using.
///
/// # Safety
/// As [`super::write_kv_batch_cells`]: no other thread touches the slots
/// written (values or scales), and `seqs` name each slot once.
pub unsafe fn write_kv_q8_batch_cells(
    pool: &WorkerPool,
    shape: &KvShape,
    layer: Q8Cells,
    seqs: &[AttentionSeq],
    k: &[f32],
    v: &[f32],
) {
    let (hd, bs) = (shape.head_dim, shape.block_size);
    assert!(
        hd.is_multiple_of(4),
        "q8 rows need a head dimension divisible by 4 (see KvDtype::check_head_dim)"
    );
    layer.check(shape);
    let kvd = shape.num_kv_heads * hd;
    #[cfg(target_arch = "x86_64")]
    let simd = crate::isa::Isa::active() == crate::isa::Isa::Avx512 && hd.is_multiple_of(16);
    let quantize = |x: &[f32], q: &mut [i8]| -> f32 {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is set only when the CPU has AVX-512 and rows
            // are whole 16-value chunks.
            return unsafe { avx512::quantize_row_i8(x, q) };
        }
        quantize_i8(x, |d, v| q[d] = v)
    };
    pool.run(2 * shape.num_kv_heads, |task| {
        let (h, is_v) = (task / 2, task % 2 == 1);
        let mut q = vec![0i8; hd];
        for s in seqs {
            for r in 0..s.num_rows {
                let pos = s.num_computed_tokens + r;
                let (at, slot) = (
                    shape.head_offset(s.block_table[pos / bs] as usize, h),
                    pos % bs,
                );
                let si = at / hd + slot;
                let row = (s.first_row + r) * kvd + h * hd;
                // SAFETY (all four): this task alone writes head h's K (or V)
                // region and scales of the block, and the caller excludes
                // other threads from the slot.
                if is_v {
                    let scale = quantize(&v[row..row + hd], &mut q);
                    let sc = unsafe { layer.v_scales.range_mut(si..si + 1) };
                    sc[0] = scale;
                    let cells = unsafe { layer.v.range_mut(at..at + bs * hd) };
                    for (d, &x) in q.iter().enumerate() {
                        cells[d * bs + slot] = x;
                    }
                } else {
                    let scale = quantize(&k[row..row + hd], &mut q);
                    let sc = unsafe { layer.k_scales.range_mut(si..si + 1) };
                    sc[0] = scale;
                    put_key_q8(
                        unsafe { layer.k.range_mut(at..at + bs * hd) },
                        0,
                        bs,
                        slot,
                        &q,
                    );
                }
            }
        }
    });
}

/// Buffers one thread reuses across tasks.
#[derive(Default)]
pub(crate) struct Q8Scratch {
    pub scores: Vec<f32>,
    pub q16: Vec<i16>,
    /// The SIMD kernel's query bytes: high (signed) and low (unsigned).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // AVX-512 only
    pub q_hi: Vec<i8>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub q_lo: Vec<u8>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub w16: Vec<i16>,
}

/// Positions whose integer value sums stay in i32 (2 per lane per chunk,
/// |w·v| < 2²²: 256 positions, 8 lanes summed, stay under 2³⁰).
pub(crate) const SEGMENT: usize = 256;

/// The scale of the 16-bit weights: `(32767 / max u, r)` where
/// `out = Σ_segments f32(Σ w·v8) · r` (both 0 when every weight is 0).
pub(crate) fn weight_scales(umax: f32, total: f64) -> (f32, f32) {
    if umax > 0.0 && total > 0.0 {
        (32767.0 / umax, (f64::from(umax) / (32767.0 * total)) as f32)
    } else {
        (0.0, 0.0)
    }
}

/// `u` in 16 bits: `round(u · inv)` in 0..=32767.
#[inline]
pub(crate) fn weight16(u: f32, inv: f32) -> i16 {
    (round_even(u * inv) as i32).clamp(0, 32767) as i16
}

thread_local! {
    static SCRATCH: RefCell<Q8Scratch> = RefCell::new(Q8Scratch::default());
}

/// [`super::paged_attention`] over an 8-bit cache.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_q8(
    pool: &WorkerPool,
    p: &AttentionParams,
    shape: &KvShape,
    q: &[f32],
    layer: Q8Layer,
    seqs: &[AttentionSeq],
    out: &mut [f32],
) {
    // SAFETY: the layer is borrowed shared (nothing writes it); attention reads only.
    unsafe { paged_attention_q8_cells(pool, p, shape, q, layer.cells(), seqs, out) }
}

/// [`paged_attention_q8`] over cells other threads may be using.
///
/// # Safety
/// As [`super::paged_attention_cells`]: no thread writes the blocks the
/// `seqs` read while it runs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn paged_attention_q8_cells(
    pool: &WorkerPool,
    p: &AttentionParams,
    shape: &KvShape,
    q: &[f32],
    layer: Q8Cells,
    seqs: &[AttentionSeq],
    out: &mut [f32],
) {
    layer.check(shape);
    run_tasks(pool, p, shape, q, layer, seqs, out, |task, out| {
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            match crate::isa::Isa::active() {
                #[cfg(target_arch = "x86_64")]
                crate::isa::Isa::Avx512
                    if p.head_dim.is_multiple_of(16) && shape.block_size.is_multiple_of(16) =>
                {
                    // SAFETY: the active ISA is only Avx512 when the CPU supports it.
                    unsafe { avx512::attend(task, &mut buf, out) }
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

/// The query head `x` in 16 bits: `q16[i] = round(x[i] / scale)` with
/// `scale = max|x| / 32767`; returns the scale.
pub(crate) fn quantize_query(x: &[f32], q16: &mut [i16]) -> f32 {
    quantize_levels(x, 32767, |i, v| q16[i] = v as i16)
}

#[cfg(test)]
mod tests;
