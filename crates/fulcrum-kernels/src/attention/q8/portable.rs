//! The 8-bit cache's attention written plainly: the contract `avx512.rs`
//! reproduces bit for bit (see the module doc of `q8`), and the kernel of
//! CPUs without AVX-512.

use super::{key_index, quantize_query, weight16, weight_scales, Q8Cells, Q8Scratch, SEGMENT};
use crate::attention::Task;
use crate::ops::exp_approx;

/// [`attend`] compiled with FMA and F16C for AVX2 CPUs: the same bits (see
/// the f16 kernel's `attend_fma`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend_fma(t: &Task<Q8Cells>, buf: &mut Q8Scratch, out: &mut [f32]) {
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
            total += f64::from(crate::attention::portable::tree16(
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
