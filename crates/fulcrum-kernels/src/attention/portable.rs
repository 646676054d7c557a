//! The attention arithmetic, written plainly: the contract the SIMD path
//! reproduces bit for bit (see the module doc of `attention`). Its loop over
//! a task's queries ([`attend_each_query`]) also runs the AVX2 kernel, which
//! reads keys and values from widened copies instead of the cache
//! ([`TaskKv`]).

use half::f16;

use super::Task;
use crate::ops::exp_approx;

/// Sum of 16 values in the fixed tree the SIMD paths use.
pub(crate) fn tree16(v: &[f32; 16]) -> f32 {
    let s8: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    let s4: [f32; 4] = std::array::from_fn(|i| s8[i] + s8[i + 4]);
    let s2: [f32; 2] = std::array::from_fn(|i| s4[i] + s4[i + 2]);
    s2[0] + s2[1]
}

/// Turns a row of scores (whole 16-position chunks; unseen positions −∞)
/// into attention weights: `exp(score − max)` summed per 16 in f64, then
/// normalized and rounded to f16 as llama.cpp rounds its weights.
#[inline(always)]
pub(crate) fn softmax_to_f16(row: &mut [f32], max: f32) {
    let mut total = 0f64;
    for chunk in row.chunks_exact_mut(16) {
        for x in chunk.iter_mut() {
            *x = exp_approx(*x - max);
        }
        total += f64::from(tree16(&<[f32; 16]>::try_from(&*chunk).unwrap()));
    }
    let inv = (1.0 / total) as f32;
    for x in row.iter_mut() {
        *x = f16::from_f32(*x * inv).to_f32();
    }
}

/// [`attend`] compiled for CPUs with FMA and F16C, for the tasks no SIMD
/// kernel takes (head sizes not a multiple of 16): the same operations in
/// the same order, so the same bits, but each `mul_add` is one instruction
/// instead of a call into the soft-float library.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend_fma(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    attend(t, buf, out)
}

/// Where a kernel that takes one query at a time ([`attend_each_query`])
/// finds a task's keys and values, and how it runs their chains.
pub(crate) trait TaskKv {
    /// The 16 lanes of the score of the key at `pos` against `qv`: lane `l`
    /// is the chain of fused multiply-adds over dimensions `l, l+16, …`.
    fn score_lanes(&self, pos: usize, qv: &[f32]) -> [f32; 16];

    /// The 16 lanes of output dimension `d` over the weights `row` (from
    /// position `base`) of positions `lo..=hi`: lane `l` is the chain over
    /// positions `base + l, base + l + 16, …`.
    fn value_lanes(&self, d: usize, row: &[f32], lo: usize, hi: usize) -> [f32; 16];
}

/// The task's queries one at a time, the contract's operations in its
/// order: `q` rounded to f16, scores, softmax, values. `scores` holds
/// `num_queries · span` floats, `qv` `head_dim`.
#[inline(always)]
pub(crate) fn attend_each_query(
    t: &Task,
    kv: &impl TaskKv,
    scores: &mut [f32],
    qv: &mut [f32],
    out: &mut [f32],
) {
    let p = t.p;
    let hd = p.head_dim;
    let stride = p.num_heads * hd;
    let (base, span) = (t.base(), t.span());
    for qi in 0..t.num_queries() {
        let (r, h) = t.query(qi);
        for (d, x) in qv.iter_mut().enumerate() {
            *x = f16::from_f32(t.q[(t.s.first_row + r) * stride + h * hd + d]).to_f32();
        }
        let (lo, hi) = (t.lo_of(r), t.pos_of(r));
        let row = &mut scores[qi * span..(qi + 1) * span];
        row.fill(f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        for pos in lo..=hi {
            row[pos - base] = tree16(&kv.score_lanes(pos, qv)) * p.scale;
            max = max.max(row[pos - base]);
        }
        softmax_to_f16(row, max);
        let dst = &mut out[(t.s.first_row + r) * stride + h * hd..][..hd];
        for (d, o) in dst.iter_mut().enumerate() {
            *o = tree16(&kv.value_lanes(d, row, lo, hi));
        }
    }
}

/// Keys and values read from the cache element by element.
struct CacheKv<'a> {
    t: &'a Task<'a>,
    base: usize,
}

impl CacheKv<'_> {
    /// (Offset of the position's (block, head) region, its slot.)
    #[inline(always)]
    fn head_at(&self, pos: usize) -> (usize, usize) {
        let bs = self.t.shape.block_size;
        let block = self.t.s.block_table[pos / bs] as usize;
        (self.t.shape.head_offset(block, self.t.kv_head), pos % bs)
    }
}

impl TaskKv for CacheKv<'_> {
    #[inline(always)]
    fn score_lanes(&self, pos: usize, qv: &[f32]) -> [f32; 16] {
        let hd = self.t.p.head_dim;
        let (at, slot) = self.head_at(pos);
        let mut lanes = [0f32; 16];
        for (l, acc) in lanes.iter_mut().enumerate() {
            for d in (l..hd).step_by(16) {
                // SAFETY: a block of the task's own sequence (see `F16Kv`).
                let k = unsafe { self.t.kv.k.read(at + slot * hd + d) }.to_f32();
                *acc = k.mul_add(qv[d], *acc);
            }
        }
        lanes
    }

    #[inline(always)]
    fn value_lanes(&self, d: usize, row: &[f32], lo: usize, hi: usize) -> [f32; 16] {
        let bs = self.t.shape.block_size;
        let mut lanes = [0f32; 16];
        for pos in lo..=hi {
            let (at, slot) = self.head_at(pos);
            // SAFETY: as above.
            let v = unsafe { self.t.kv.v.read(at + d * bs + slot) }.to_f32();
            let l = (pos - self.base) % 16;
            lanes[l] = v.mul_add(row[pos - self.base], lanes[l]);
        }
        lanes
    }
}

#[inline(always)]
pub(crate) fn attend(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    let hd = t.p.head_dim;
    let nq = t.num_queries();
    let need = nq * t.span() + hd;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(nq * t.span());
    let kv = CacheKv { t, base: t.base() };
    attend_each_query(t, &kv, scores, &mut rest[..hd], out);
}
