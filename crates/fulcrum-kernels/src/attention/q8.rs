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
//! The arithmetic, the contract `q8_avx512.rs` reproduces bit for bit:
//!
//! - the query head is quantized to 16 bits (`q16`, scale
//!   `qs = max|q| / 32767`; in 8 bits it moved the top-10
//!   log-probabilities of llama.cpp's reference prompts by up to 0.50, in
//!   16 bits by at most 0.39, the fast numerics' own bar being 0.45);
//! - `score = (f32(Σ_d k8·q16) · k_scale) · (qs · scale)` — the integer sum
//!   is exact, so its order does not matter (the SIMD kernel takes it as
//!   `256·Σ k8·hi + Σ k8·lo` over the query's high and low bytes, two
//!   `vpdpbusd` per 4 dimensions);
//! - `e = exp(score − max)` ([`exp_approx`]), summed per 16 absolute
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

use super::cells::KvSlice;
use super::{run_tasks, AttentionParams, AttentionSeq, KvShape, Task};
use crate::ops::exp_approx;
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
            return unsafe { super::q8_avx512::quantize_row_i8(x, q) };
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
                    unsafe { super::q8_avx512::attend(task, &mut buf, out) }
                }
                #[cfg(target_arch = "x86_64")]
                crate::isa::Isa::Avx2 | crate::isa::Isa::Avx512 => {
                    // SAFETY: AVX2 (and so FMA and F16C) is supported when
                    // either is the active ISA.
                    unsafe { attend_fma(task, &mut buf, out) }
                }
                _ => attend(task, &mut buf, out),
            }
        })
    });
}

/// The query head `x` in 16 bits: `q16[i] = round(x[i] / scale)` with
/// `scale = max|x| / 32767`; returns the scale.
pub(crate) fn quantize_query(x: &[f32], q16: &mut [i16]) -> f32 {
    quantize_levels(x, 32767, |i, v| q16[i] = v as i16)
}

/// [`attend`] compiled with FMA and F16C for AVX2 CPUs: the same bits (see
/// `portable::attend_fma`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_fma(t: &Task<Q8Cells>, buf: &mut Q8Scratch, out: &mut [f32]) {
    attend(t, buf, out)
}

/// The contract, written plainly (and the kernel of CPUs without AVX-512).
#[inline(always)]
pub(crate) fn attend(t: &Task<Q8Cells>, buf: &mut Q8Scratch, out: &mut [f32]) {
    let (p, shape) = (t.p, t.shape);
    let (hd, bs) = (p.head_dim, shape.block_size);
    let stride = p.num_heads * hd;
    let (base, span) = (t.base(), t.span());
    buf.scores.resize(span, 0.0);
    buf.q16.resize(hd, 0);
    let (row, q16) = (&mut buf.scores[..span], &mut buf.q16[..hd]);
    // (byte offset of the (head, block) region, scale index) of a position.
    let at = |pos: usize| {
        let block = t.s.block_table[pos / bs] as usize;
        (
            shape.head_offset(block, t.kv_head),
            shape.head_offset(block, t.kv_head) / hd + pos % bs,
        )
    };
    for qi in 0..t.num_queries() {
        let (r, h) = t.query(qi);
        let qs = quantize_query(&t.q[(t.s.first_row + r) * stride + h * hd..][..hd], q16);
        let c = qs * p.scale;
        let (lo, hi) = (t.lo_of(r), t.pos_of(r));
        row.fill(f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        for pos in lo..=hi {
            let (a, si) = at(pos);
            let raw: i32 = (0..hd)
                .map(|d| {
                    // SAFETY (these reads): blocks of the task's own sequence.
                    (i32::from(unsafe { t.kv.k.read(key_index(a, bs, pos % bs, d)) }) - 128)
                        * i32::from(q16[d])
                })
                .sum();
            let score = (raw as f32 * unsafe { t.kv.k_scales.read(si) }) * c;
            row[pos - base] = score;
            max = max.max(score);
        }
        let mut total = 0f64;
        for chunk in row.chunks_exact_mut(16) {
            for x in chunk.iter_mut() {
                *x = exp_approx(*x - max);
            }
            total += f64::from(super::portable::tree16(
                &<[f32; 16]>::try_from(&*chunk).unwrap(),
            ));
        }
        let mut umax = 0f32;
        for pos in lo..=hi {
            row[pos - base] *= unsafe { t.kv.v_scales.read(at(pos).1) };
            umax = umax.max(row[pos - base]);
        }
        let (inv, out_scale) = weight_scales(umax, total);
        let dst = &mut out[(t.s.first_row + r) * stride + h * hd..][..hd];
        for (d, o) in dst.iter_mut().enumerate() {
            let mut acc = 0f32;
            let mut seg = 0i32;
            for pos in lo..=hi {
                let v = i32::from(unsafe { t.kv.v.read(at(pos).0 + d * bs + pos % bs) });
                seg += i32::from(weight16(row[pos - base], inv)) * v;
                if pos % SEGMENT == SEGMENT - 1 || pos == hi {
                    acc += seg as f32;
                    seg = 0;
                }
            }
            *o = acc * out_scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// One layer's 8-bit cache; unwritten cells hold `fill` bytes and NaN
    /// scales, so a kernel that lets them into a sum fails.
    struct Cache {
        k: Vec<u8>,
        ks: Vec<f32>,
        v: Vec<i8>,
        vs: Vec<f32>,
    }

    impl Cache {
        fn new(shape: &KvShape, fill: u8) -> Cache {
            Cache {
                k: vec![fill; shape.layer_len()],
                ks: vec![f32::NAN; q8_scales_len(shape)],
                v: vec![fill as i8; shape.layer_len()],
                vs: vec![f32::NAN; q8_scales_len(shape)],
            }
        }

        fn layer(&self) -> Q8Layer<'_> {
            Q8Layer {
                k: &self.k,
                k_scales: &self.ks,
                v: &self.v,
                v_scales: &self.vs,
            }
        }

        fn write(&mut self, shape: &KvShape, seqs: &[AttentionSeq], k: &[f32], v: &[f32]) {
            let layer = Q8LayerMut {
                k: &mut self.k,
                k_scales: &mut self.ks,
                v: &mut self.v,
                v_scales: &mut self.vs,
            };
            write_kv_q8_batch(&WorkerPool::new(2), shape, layer, seqs, k, v);
        }
    }

    struct Case {
        p: AttentionParams,
        shape: KvShape,
        table: Vec<u32>,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        total: usize,
    }

    fn case(
        seed: u64,
        bs: usize,
        window: Option<usize>,
        heads: (usize, usize),
        hd: usize,
        total: usize,
    ) -> Case {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (num_heads, num_kv_heads) = heads;
        let shape = KvShape {
            num_blocks: total.div_ceil(bs) + 3,
            block_size: bs,
            num_kv_heads: num_kv_heads,
            head_dim: hd,
        };
        let mut table: Vec<u32> = (0..shape.num_blocks as u32).rev().collect();
        table.rotate_left(1);
        let mut gen = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.5..1.5)).collect() };
        Case {
            p: AttentionParams {
                num_heads,
                num_kv_heads: num_kv_heads,
                head_dim: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                window,
            },
            table,
            q: gen(total * num_heads * hd),
            k: gen(total * num_kv_heads * hd),
            v: gen(total * num_kv_heads * hd),
            shape,
            total,
        }
    }

    /// The whole sequence through the cache `chunk` tokens per call.
    fn run(c: &Case, pool: &WorkerPool, chunk: usize, fill: u8) -> Vec<f32> {
        let mut cache = Cache::new(&c.shape, fill);
        let (stride, kvd) = (
            c.p.num_heads * c.p.head_dim,
            c.p.num_kv_heads * c.p.head_dim,
        );
        let mut out = vec![0f32; c.total * stride];
        let mut start = 0;
        while start < c.total {
            let n = chunk.min(c.total - start);
            let seqs = [AttentionSeq {
                first_row: 0,
                num_rows: n,
                num_computed_tokens: start,
                block_table: &c.table,
            }];
            cache.write(
                &c.shape,
                &seqs,
                &c.k[start * kvd..(start + n) * kvd],
                &c.v[start * kvd..(start + n) * kvd],
            );
            let layer = cache.layer();
            let q = &c.q[start * stride..(start + n) * stride];
            paged_attention_q8(
                pool,
                &c.p,
                &c.shape,
                q,
                layer,
                &seqs,
                &mut out[start * stride..(start + n) * stride],
            );
            start += n;
        }
        out
    }

    /// Plain softmax attention in f64 over the unquantized inputs.
    fn reference(c: &Case) -> Vec<f32> {
        let (hd, nh) = (c.p.head_dim, c.p.num_heads);
        let group = nh / c.p.num_kv_heads;
        let kvd = c.p.num_kv_heads * hd;
        let mut out = vec![0f32; c.total * nh * hd];
        for pos in 0..c.total {
            let lo = c.p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..nh {
                let g = h / group;
                let q = &c.q[(pos * nh + h) * hd..][..hd];
                let s: Vec<f64> = (lo..=pos)
                    .map(|j| {
                        let k = &c.k[j * kvd + g * hd..][..hd];
                        q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum::<f64>()
                            * f64::from(c.p.scale)
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let tot: f64 = e.iter().sum();
                for d in 0..hd {
                    let val: f64 = (lo..=pos)
                        .zip(&e)
                        .map(|(j, w)| w * f64::from(c.v[j * kvd + g * hd + d]))
                        .sum();
                    out[(pos * nh + h) * hd + d] = (val / tot) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn quantized_rows_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0)
            .collect();
        let mut q = [0i8; 64];
        let s = quantize_i8(&x, |i, v| q[i] = v);
        assert!(q.iter().any(|&v| v.abs() == 127));
        for (a, &b) in x.iter().zip(&q) {
            assert!(
                (a - f32::from(b) * s).abs() <= s * 0.5 + 1e-6,
                "{a} vs {b}·{s}"
            );
        }
        // Ties go to even, as the SIMD conversions round.
        for i in -600..600 {
            let x = i as f32 * 0.25;
            assert_eq!(round_even(x), x.round_ties_even(), "{x}");
        }
        // An all-zero row: scale 0, bytes 0 (no division by zero).
        assert_eq!(quantize_i8(&[0.0; 8], |_, v| assert_eq!(v, 0)), 0.0);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_row_quantizer_equals_portable() {
        if !crate::isa::Isa::Avx512.is_supported() {
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut rows: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                let mag = 10f32.powi(i % 9 - 4);
                (0..64).map(|_| rng.gen_range(-1.0f32..1.0) * mag).collect()
            })
            .collect();
        // Edge rows: zeros, ties at half steps, NaN, infinities, a scale so
        // small that its reciprocal overflows, huge values.
        rows.push(vec![0.0; 64]);
        rows.push((0..64).map(|i| (i as f32 - 32.0) * 0.5).collect());
        let mut r = rows[0].clone();
        r[3] = f32::NAN;
        rows.push(r);
        let mut r = rows[1].clone();
        (r[5], r[9]) = (f32::INFINITY, f32::NEG_INFINITY);
        rows.push(r);
        rows.push((0..64).map(|i| f32::from_bits(1 + i as u32)).collect());
        rows.push((0..64).map(|i| (i as f32 - 30.0) * 1e37).collect());
        for (i, x) in rows.iter().enumerate() {
            let (mut a, mut b) = ([0i8; 64], [0i8; 64]);
            let sa = quantize_i8(x, |d, v| a[d] = v);
            // SAFETY: checked above that the CPU supports AVX-512.
            let sb = unsafe { crate::attention::q8_avx512::quantize_row_i8(x, &mut b) };
            assert_eq!((sa.to_bits(), a), (sb.to_bits(), b), "row {i}");
        }
    }

    #[test]
    fn close_to_float_attention() {
        let pool = WorkerPool::new(2);
        for (seed, bs, window, heads, hd) in [
            (1, 16, None, (9, 3), 64),
            (2, 16, Some(20), (4, 1), 32),
            (3, 4, None, (4, 2), 8),
            (4, 32, Some(7), (6, 2), 16),
        ] {
            let c = case(seed, bs, window, heads, hd, 45);
            let want = reference(&c);
            let got = run(&c, &pool, 45, 0);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // 8-bit q and K (scores), 8-bit V, 16-bit weights.
            assert!(worst < 0.015, "seed {seed}: max error {worst}");
            assert!(worst > 0.0, "seed {seed}: suspiciously exact");
        }
    }

    #[test]
    fn chunking_and_threads_are_bit_identical() {
        let c = case(5, 16, Some(11), (6, 2), 16, 50);
        let whole = run(&c, &WorkerPool::new(1), 50, 0);
        for chunk in [1, 3, 7, 16, 33] {
            let got = run(&c, &WorkerPool::new(2), chunk, 0x5A);
            assert!(
                got.iter()
                    .zip(&whole)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "chunk {chunk}"
            );
        }
    }

    /// The SIMD path reproduces the portable arithmetic bit for bit, with
    /// garbage bytes and NaN scales in every slot no position wrote.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_equals_portable() {
        if !crate::isa::Isa::Avx512.is_supported() {
            return;
        }
        for (seed, bs, window, heads, hd, total, num_computed_tokens) in [
            (10, 16, None, (9, 3), 64, 40, 0),
            (11, 16, Some(7), (4, 1), 32, 50, 10),
            (12, 32, Some(20), (4, 2), 64, 70, 60),
            (13, 16, None, (9, 3), 64, 45, 44),
            (14, 16, Some(20), (4, 1), 256, 70, 69),
            (15, 16, None, (2, 2), 16, 33, 32),
            (16, 16, None, (6, 3), 16, 20, 19),
            (17, 16, Some(5), (5, 1), 64, 30, 29),
            (18, 64, None, (6, 1), 32, 18, 17),
            (19, 16, None, (7, 1), 32, 50, 49),
            (20, 16, None, (8, 1), 128, 40, 39),
            (21, 16, None, (10, 1), 16, 40, 3),
            (22, 32, Some(9), (12, 2), 32, 37, 0),
            // Spans of several 256-position segments (integer sums flushed).
            (23, 16, None, (9, 3), 64, 600, 560),
            (24, 16, None, (4, 1), 32, 530, 500),
        ] {
            let c = case(seed, bs, window, heads, hd, total);
            let mut cache = Cache::new(&c.shape, 0xA7);
            let kvd = heads.1 * hd;
            let all = [AttentionSeq {
                first_row: 0,
                num_rows: total,
                num_computed_tokens: 0,
                block_table: &c.table,
            }];
            cache.write(&c.shape, &all, &c.k[..total * kvd], &c.v[..total * kvd]);
            let rows = total - num_computed_tokens;
            let seq = AttentionSeq {
                first_row: 0,
                num_rows: rows,
                num_computed_tokens,
                block_table: &c.table,
            };
            let q = &c.q[num_computed_tokens * heads.0 * hd..];
            let layer = cache.layer();
            for kv_head in 0..heads.1 {
                for r0 in (0..rows).step_by(16) {
                    let task = Task {
                        p: &c.p,
                        shape: &c.shape,
                        q,
                        // SAFETY: read only.
                        kv: unsafe { layer.cells() },
                        s: &seq,
                        kv_head,
                        rows: r0..(r0 + 16).min(rows),
                    };
                    let (mut a, mut b) = (vec![0f32; q.len()], vec![0f32; q.len()]);
                    attend(&task, &mut Q8Scratch::default(), &mut a);
                    // SAFETY: checked above that the CPU supports AVX-512.
                    unsafe {
                        crate::attention::q8_avx512::attend(
                            &task,
                            &mut Q8Scratch::default(),
                            &mut b,
                        )
                    };
                    assert!(
                        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "seed {seed} bs {bs} window {window:?} hd {hd} rows {r0}.."
                    );
                    assert!(a.iter().all(|x| x.is_finite()));
                }
            }
        }
    }
}
