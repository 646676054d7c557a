//! The attention arithmetic, written plainly: the contract the SIMD path
//! reproduces bit for bit (see the module doc of `attention`).

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

#[inline(always)]
pub(crate) fn attend(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    let (p, shape) = (t.p, t.shape);
    let (hd, bs) = (p.head_dim, shape.block_size);
    let stride = p.num_heads * hd;
    let nq = t.num_queries();
    let (base, span) = (t.base(), t.span());
    let need = nq * span + hd;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(nq * span);
    let qv = &mut rest[..hd];
    let head_at = |pos: usize| {
        (
            shape.head_offset(t.s.block_table[pos / bs] as usize, t.kv_head),
            pos % bs,
        )
    };
    let k_at = |pos: usize, d: usize| {
        let (at, slot) = head_at(pos);
        // SAFETY: a block of the task's own sequence (see `F16Kv`).
        unsafe { t.kv.k.read(at + slot * hd + d) }.to_f32()
    };
    let v_at = |pos: usize, d: usize| {
        let (at, slot) = head_at(pos);
        // SAFETY: as above.
        unsafe { t.kv.v.read(at + d * bs + slot) }.to_f32()
    };
    for qi in 0..nq {
        let (r, h) = t.query(qi);
        for (d, x) in qv.iter_mut().enumerate() {
            *x = f16::from_f32(t.q[(t.s.first_row + r) * stride + h * hd + d]).to_f32();
        }
        let (lo, hi) = (t.lo_of(r), t.pos_of(r));
        let row = &mut scores[qi * span..(qi + 1) * span];
        row.fill(f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        for pos in lo..=hi {
            let mut lanes = [0f32; 16];
            for (l, acc) in lanes.iter_mut().enumerate() {
                for d in (l..hd).step_by(16) {
                    *acc = k_at(pos, d).mul_add(qv[d], *acc);
                }
            }
            row[pos - base] = tree16(&lanes) * p.scale;
            max = max.max(row[pos - base]);
        }
        softmax_to_f16(row, max);
        let dst = &mut out[(t.s.first_row + r) * stride + h * hd..][..hd];
        for (d, o) in dst.iter_mut().enumerate() {
            let mut lanes = [0f32; 16];
            for pos in lo..=hi {
                let l = (pos - base) % 16;
                lanes[l] = v_at(pos, d).mul_add(row[pos - base], lanes[l]);
            }
            *o = tree16(&lanes);
        }
    }
}
