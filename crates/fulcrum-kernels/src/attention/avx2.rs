//! Attention on CPUs with AVX2, FMA and F16C but no AVX-512: the portable
//! kernel's operations in its order (see the module doc of `attention`),
//! arranged so that the compiler can vectorize them. The task's keys and
//! values are widened to f32 once, keys by position and values by
//! dimension, as the AVX-512 kernel does; the loop over the task's queries
//! is the portable kernel's (`attend_each_query`), over these buffers:
//! - a score's 16 lane chains run over contiguous dimensions: two 8-lane
//!   fused multiply-adds per 16;
//! - an output dimension's 16 chains run over contiguous positions, whole
//!   16-position chunks at a time.
//!
//! A chunk's positions that the row does not see have zero weights (and
//! zero or finite values), which leave the chains' bits unchanged. The
//! portable kernel instead computed every cache address per element and
//! called the soft-float `fmaf`: AVX2 prefill spent 85% of its time there.

use half::slice::HalfFloatSliceExt;

use super::portable::{attend_each_query, TaskKv};
use super::{widen_task_kv, Task};

/// # Safety
/// The CPU must support AVX2, FMA and F16C; `head_dim` must be a multiple
/// of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    let hd = t.p.head_dim;
    let nq = t.num_queries();
    let span = t.span();
    // [nq*span] scores | [span*hd] keys (by position) | [hd*span] values (by dim) | [hd] q
    let need = nq * span + 2 * span * hd + hd;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(nq * span);
    let (keys, rest) = rest.split_at_mut(span * hd);
    let (vals, rest) = rest.split_at_mut(hd * span);
    widen_task_kv(t, keys, vals, span, |src, dst| {
        src.convert_to_f32_slice(dst)
    });
    let kv = WidenedKv {
        keys,
        vals,
        hd,
        span,
        base: t.base(),
    };
    attend_each_query(t, &kv, scores, &mut rest[..hd], out);
}

/// The task's keys and values widened to f32: keys by position, values by
/// dimension (see [`widen_task_kv`]).
struct WidenedKv<'a> {
    keys: &'a [f32],
    vals: &'a [f32],
    hd: usize,
    span: usize,
    base: usize,
}

impl TaskKv for WidenedKv<'_> {
    /// Contiguous dimensions: two 8-lane fused multiply-adds per 16.
    #[inline(always)]
    fn score_lanes(&self, pos: usize, qv: &[f32]) -> [f32; 16] {
        let key = &self.keys[(pos - self.base) * self.hd..(pos - self.base + 1) * self.hd];
        let mut lanes = [0f32; 16];
        for (kc, qc) in key.chunks_exact(16).zip(qv.chunks_exact(16)) {
            for l in 0..16 {
                lanes[l] = kc[l].mul_add(qc[l], lanes[l]);
            }
        }
        lanes
    }

    /// Whole 16-position chunks of contiguous positions.
    #[inline(always)]
    fn value_lanes(&self, d: usize, row: &[f32], lo: usize, hi: usize) -> [f32; 16] {
        let (c0, c1) = ((lo - self.base) / 16, (hi - self.base) / 16 + 1);
        let vd = &self.vals[d * self.span..(d + 1) * self.span];
        let mut lanes = [0f32; 16];
        for c in c0..c1 {
            let (vc, wc) = (&vd[16 * c..16 * c + 16], &row[16 * c..16 * c + 16]);
            for l in 0..16 {
                lanes[l] = vc[l].mul_add(wc[l], lanes[l]);
            }
        }
        lanes
    }
}
