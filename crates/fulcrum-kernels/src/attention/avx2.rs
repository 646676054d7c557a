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

use super::portable::{softmax_to_f16, tree16};
use super::{widen_task_kv, Task};

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `head_dim` must be a multiple
/// of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    let p = t.p;
    let hd = p.head_dim;
    let stride = p.num_heads * hd;
    let nq = t.num_queries();
    let (base, span) = (t.base(), t.span());
    // [nq*span] scores | [span*hd] keys (by position) | [hd*span] values (by dim) | [hd] q
    let need = nq * span + 2 * span * hd + hd;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(nq * span);
    let (keys, rest) = rest.split_at_mut(span * hd);
    let (vals, rest) = rest.split_at_mut(hd * span);
    let qv = &mut rest[..hd];
    widen_task_kv(t, keys, vals, span, |src, dst| {
        src.convert_to_f32_slice(dst)
    });
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
        softmax_to_f16(row, max);
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
