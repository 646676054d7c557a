//! Attention on CPUs with AVX2, FMA and F16C but no AVX-512: the portable
//! kernel's operations in its order (see the module doc of `attention`),
//! arranged so that the compiler can vectorize them. The task's keys and
//! values are widened to f32 once, keys by position and values by
//! dimension, as the AVX-512 kernel does. Then:
//! - a score's 16 lane chains run over contiguous dimensions: two 8-lane
//!   fused multiply-adds per 16;
//! - an output dimension's 16 chains run over contiguous positions, whole
//!   16-position chunks at a time.
//!
//! A chunk's positions that the row does not see have zero weights (and
//! zero or finite values), which leave the chains' bits unchanged. The
//! portable kernel instead computed every cache address per element and
//! called the soft-float `fmaf`: AVX2 prefill spent 85% of its time there.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::portable::tree16;
use super::Task;
use crate::ops::exp_approx;

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `head_dim` must be a multiple
/// of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    let (p, shape) = (t.p, t.shape);
    let (hd, bs) = (p.head_dim, shape.block_size);
    let stride = p.n_heads * hd;
    let nq = t.num_queries();
    let (base, span) = (t.base(), t.span());
    let first_pos = t.lo_of(t.rows.start);
    let last_pos = t.pos_of(t.rows.end - 1);
    // [nq*span] scores | [span*hd] keys (by position) | [hd*span] values (by dim) | [hd] q
    let need = nq * span + 2 * span * hd + hd;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(nq * span);
    let (keys, rest) = rest.split_at_mut(span * hd);
    let (vals, rest) = rest.split_at_mut(hd * span);
    let qv = &mut rest[..hd];
    // Positions outside first_pos..=last_pos keep zero values (their weights
    // are zero); their keys are never read.
    vals.fill(0.0);
    for b in first_pos / bs..=last_pos / bs {
        let head = shape.head_offset(t.s.block_table[b] as usize, t.kv_head);
        let (p0, p1) = ((b * bs).max(first_pos), ((b + 1) * bs - 1).min(last_pos));
        for pos in p0..=p1 {
            let slot = pos % bs;
            // SAFETY (these reads): blocks of the task's own sequence (see `F16Kv`).
            let k = unsafe { t.kv.k.range(head + slot * hd..head + (slot + 1) * hd) };
            k.convert_to_f32_slice(&mut keys[(pos - base) * hd..(pos - base + 1) * hd]);
        }
        // V is [dim][slot]: the block's positions of one dimension are contiguous.
        let (s0, n) = (p0 % bs, p1 - p0 + 1);
        for d in 0..hd {
            let v = unsafe { t.kv.v.range(head + d * bs + s0..head + d * bs + s0 + n) };
            v.convert_to_f32_slice(&mut vals[d * span + p0 - base..d * span + p0 - base + n]);
        }
    }
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
            let key = &keys[(pos - base) * hd..(pos - base + 1) * hd];
            let mut lanes = [0f32; 16];
            for (kc, qc) in key.chunks_exact(16).zip(qv.chunks_exact(16)) {
                for l in 0..16 {
                    lanes[l] = kc[l].mul_add(qc[l], lanes[l]);
                }
            }
            row[pos - base] = tree16(&lanes) * p.scale;
            max = max.max(row[pos - base]);
        }
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
        let (c0, c1) = ((lo - base) / 16, (hi - base) / 16 + 1);
        let dst = &mut out[(t.s.first_row + r) * stride + h * hd..][..hd];
        for (d, o) in dst.iter_mut().enumerate() {
            let vd = &vals[d * span..(d + 1) * span];
            let mut lanes = [0f32; 16];
            for c in c0..c1 {
                let (vc, wc) = (&vd[16 * c..16 * c + 16], &row[16 * c..16 * c + 16]);
                for l in 0..16 {
                    lanes[l] = vc[l].mul_add(wc[l], lanes[l]);
                }
            }
            *o = tree16(&lanes);
        }
    }
}
