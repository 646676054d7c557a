//! AVX-512 attention over the 8-bit cache: `portable.rs`'s arithmetic, 16 slots
//! at a time. Rows are taken one by one (a prefill task's rows find its
//! blocks in cache after the first); up to 8 query heads of a group share
//! every load. A chunk of 16 keys against one query is `head_dim / 4`
//! `vpdpbusd` (keys are stored in its operand layout) plus three float
//! operations; the weighted values are `vpdpwssd` over bytes widened to 16
//! bits once per load for all heads, 32 multiply-adds an instruction.

use std::arch::x86_64::*;

use super::{weight_scales, Q8Cells, Q8Scratch, SEGMENT};
use crate::attention::avx512::{exp16, tree16};
use crate::attention::{head_passes, visible_lanes, Task};
use crate::const_width::const_width;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ/VNNI, FMA and F16C; `head_dim`
/// and `block_size` must be multiples of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn attend(t: &Task<Q8Cells>, buf: &mut Q8Scratch, out: &mut [f32]) {
    let group = t.p.num_heads / t.p.num_kv_heads;
    for r in t.rows.clone() {
        for (g0, n) in head_passes(group) {
            // SAFETY (every width): same contract.
            unsafe { const_width!(n, NQ => row::<NQ, { value_pairs(NQ) }>(t, r, g0, buf, out)) }
        }
    }
}

/// Pairs of output dimensions [`row`] accumulates together for `nq` query
/// heads (`G`): `nq · G ≤ 24` accumulators.
const fn value_pairs(nq: usize) -> usize {
    match nq {
        1..=3 => 8,
        4 | 5 => 4,
        _ => 2,
    }
}

/// Row `r`, query heads `g0..g0 + NQ` of the task's group; `2·G` output
/// dimensions at a time.
///
/// # Safety
/// As [`attend`]; `2·G` divides 16.
#[allow(clippy::needless_range_loop)] // gi indexes several queries' arrays
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn row<const NQ: usize, const G: usize>(
    t: &Task<Q8Cells>,
    r: usize,
    g0: usize,
    buf: &mut Q8Scratch,
    out: &mut [f32],
) {
    let (p, shape) = (t.p, t.shape);
    let (hd, bs) = (p.head_dim, shape.block_size);
    let stride = p.num_heads * hd;
    let group = p.num_heads / p.num_kv_heads;
    let head = |gi: usize| t.kv_head * group + g0 + gi;
    let (lo, hi) = (t.lo_of(r), t.pos_of(r));
    // Positions from a multiple of 16: lanes and softmax groups are absolute.
    let base = lo / 16 * 16;
    let span = (hi + 1 - base).div_ceil(16) * 16;
    if buf.scores.len() < NQ * span {
        buf.scores.resize(NQ * span, 0.0);
    }
    if buf.q_hi.len() < NQ * hd {
        buf.q_hi.resize(NQ * hd, 0);
        buf.q_lo.resize(NQ * hd, 0);
    }
    if buf.w16.len() < NQ * span {
        buf.w16.resize(NQ * span, 0);
    }
    let (scores, q_hi, q_lo, w16) = (
        &mut buf.scores[..NQ * span],
        &mut buf.q_hi[..NQ * hd],
        &mut buf.q_lo[..NQ * hd],
        &mut buf.w16[..NQ * span],
    );
    let mut cq = [0f32; NQ];
    let mut corr = [_mm512_setzero_si512(); NQ];
    for gi in 0..NQ {
        let src = &t.q[(t.s.first_row + r) * stride + head(gi) * hd..][..hd];
        let range = gi * hd..(gi + 1) * hd;
        // SAFETY: same contract; `hd` is a multiple of 16.
        let (qs, sum_hi) =
            unsafe { quantize_query16(src, &mut q_hi[range.clone()], &mut q_lo[range]) };
        cq[gi] = qs * p.scale;
        // Keys are stored plus 128: Σ(k+128)·hi = Σk·hi + 128·Σhi.
        corr[gi] = _mm512_set1_epi32(-128 * sum_hi);
    }
    scores.fill(f32::NEG_INFINITY);
    let mut max = [f32::NEG_INFINITY; NQ];
    // (byte offset of the chunk's (head, block) region, first slot).
    let region = |first: usize| {
        let block = t.s.block_table[first / bs] as usize;
        (shape.head_offset(block, t.kv_head), first % bs)
    };
    let visible = |first: usize| visible_lanes(lo, hi, first);
    let (kp, vp) = (t.kv.k.as_ptr(), t.kv.v.as_ptr());
    let chunks = span / 16;
    for c in 0..chunks {
        let first = base + 16 * c;
        let (at, s0) = region(first);
        let vis = visible(first);
        debug_assert!(at + hd * bs <= t.kv.k.len() && (at + s0) / hd + 16 <= t.kv.k_scales.len());
        // SAFETY: the region and its 16 slots' scales lie inside the layer
        // (the block table names blocks of this shape); prefetches are hints.
        unsafe {
            // Keys some chunks ahead (see `chunks_to_prefetch`), and this
            // chunk's values (read one dimension at a time in the second pass).
            for a in chunks_to_prefetch(c, chunks) {
                let (nat, ns0) = region(base + 16 * a);
                for j in 0..hd / 4 {
                    _mm_prefetch::<_MM_HINT_T0>(kp.add(nat + (j * bs + ns0) * 4).cast());
                }
                // The scales live in arrays of their own: a miss each too.
                let si = nat / hd + ns0;
                _mm_prefetch::<_MM_HINT_T0>(t.kv.k_scales.as_ptr().wrapping_add(si).cast());
                _mm_prefetch::<_MM_HINT_T0>(t.kv.v_scales.as_ptr().wrapping_add(si).cast());
            }
            for d in (0..hd).step_by((64 / bs).max(1)) {
                _mm_prefetch::<_MM_HINT_T0>(vp.add(at + d * bs + s0).cast());
            }
            let ks = _mm512_loadu_ps(t.kv.k_scales.as_ptr().add(at / hd + s0));
            // Per query: Σ (k+128)·hi (offset corrected) and Σ k·lo, the
            // low bytes unsigned against the keys as signed bytes.
            let mut acc = [[_mm512_setzero_si512(); 2]; NQ];
            for gi in 0..NQ {
                acc[gi][0] = corr[gi];
            }
            let (hp, lp) = (q_hi.as_ptr(), q_lo.as_ptr());
            let flip = _mm512_set1_epi8(-128);
            for j in 0..hd / 4 {
                let ku = _mm512_loadu_si512(kp.add(at + (j * bs + s0) * 4).cast());
                let ks8 = _mm512_xor_si512(ku, flip);
                for gi in 0..NQ {
                    let h4 = hp.add(gi * hd + 4 * j).cast::<i32>().read_unaligned();
                    let l4 = lp.add(gi * hd + 4 * j).cast::<i32>().read_unaligned();
                    acc[gi][0] = _mm512_dpbusd_epi32(acc[gi][0], ku, _mm512_set1_epi32(h4));
                    acc[gi][1] = _mm512_dpbusd_epi32(acc[gi][1], _mm512_set1_epi32(l4), ks8);
                }
            }
            for gi in 0..NQ {
                let raw = _mm512_add_epi32(_mm512_slli_epi32::<8>(acc[gi][0]), acc[gi][1]);
                let sc = _mm512_mul_ps(
                    _mm512_mul_ps(_mm512_cvtepi32_ps(raw), ks),
                    _mm512_set1_ps(cq[gi]),
                );
                _mm512_mask_storeu_ps(scores.as_mut_ptr().add(gi * span + 16 * c), vis, sc);
                max[gi] = max[gi].max(_mm512_mask_reduce_max_ps(vis, sc));
            }
        }
    }
    // Softmax numerators times each slot's value scale (zero outside the
    // visible positions, whose bytes may be another sequence's), their
    // totals, and the largest product.
    let mut total = [0f64; NQ];
    let mut umax = [_mm512_setzero_ps(); NQ];
    for c in 0..chunks {
        let first = base + 16 * c;
        let (at, s0) = region(first);
        // SAFETY: chunk c of every score row lies inside it; the slots'
        // scales inside the layer.
        unsafe {
            let vsc =
                _mm512_maskz_loadu_ps(visible(first), t.kv.v_scales.as_ptr().add(at / hd + s0));
            for gi in 0..NQ {
                let at_s = scores.as_mut_ptr().add(gi * span + 16 * c);
                let e = exp16(_mm512_sub_ps(
                    _mm512_loadu_ps(at_s),
                    _mm512_set1_ps(max[gi]),
                ));
                total[gi] += f64::from(tree16(e));
                let u = _mm512_mul_ps(e, vsc);
                _mm512_storeu_ps(at_s, u);
                umax[gi] = _mm512_max_ps(umax[gi], u);
            }
        }
    }
    // The weights in 16 bits, and the factor that turns sums into outputs.
    let mut out_scale = [0f32; NQ];
    for gi in 0..NQ {
        let (inv, r) = weight_scales(_mm512_reduce_max_ps(umax[gi]), total[gi]);
        out_scale[gi] = r;
        let inv = _mm512_set1_ps(inv);
        let (zero, top) = (_mm512_setzero_si512(), _mm512_set1_epi32(32767));
        for c in 0..chunks {
            // SAFETY: chunk c of the row, and of the row's 16-bit weights.
            unsafe {
                let u = _mm512_loadu_ps(scores.as_ptr().add(gi * span + 16 * c));
                let w = _mm512_min_epi32(
                    _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(u, inv)), zero),
                    top,
                );
                _mm256_storeu_si256(
                    w16.as_mut_ptr().add(gi * span + 16 * c).cast(),
                    _mm512_cvtepi32_epi16(w),
                );
            }
        }
    }
    // Σ w·v8 by `vpdpwssd`: a register holds two dimensions of 16 slots
    // (lanes 0-7 the first, 8-15 the second, two slots per lane); sums
    // leave for f32 at the end of every 256 positions.
    let seg_chunks = SEGMENT / 16;
    for d0 in (0..hd).step_by(2 * G) {
        let mut acc = [[_mm512_setzero_si512(); G]; NQ];
        // Lane j: output dimension d0 + j (j < 2·G).
        let mut accf = [_mm512_setzero_ps(); NQ];
        for c in 0..chunks {
            let first = base + 16 * c;
            let (at, s0) = region(first);
            // SAFETY: chunk c of the weights; the region holds `hd` dimensions of `bs` slots.
            unsafe {
                let w: [__m512i; NQ] = std::array::from_fn(|gi| {
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        w16.as_ptr().add(gi * span + 16 * c).cast(),
                    ))
                });
                for k in 0..G {
                    let d = d0 + 2 * k;
                    let bytes = if bs == 16 {
                        _mm256_loadu_si256(vp.add(at + d * 16).cast())
                    } else {
                        _mm256_inserti128_si256::<1>(
                            _mm256_castsi128_si256(_mm_loadu_si128(
                                vp.add(at + d * bs + s0).cast(),
                            )),
                            _mm_loadu_si128(vp.add(at + (d + 1) * bs + s0).cast()),
                        )
                    };
                    let v = _mm512_cvtepi8_epi16(bytes);
                    for gi in 0..NQ {
                        acc[gi][k] = _mm512_dpwssd_epi32(acc[gi][k], v, w[gi]);
                    }
                }
            }
            if (first / 16) % seg_chunks == seg_chunks - 1 || c + 1 == chunks {
                for gi in 0..NQ {
                    let sums = half_sums(&acc[gi]);
                    accf[gi] = _mm512_add_ps(accf[gi], _mm512_cvtepi32_ps(sums));
                    acc[gi] = [_mm512_setzero_si512(); G];
                }
            }
        }
        for gi in 0..NQ {
            let dst = &mut out[(t.s.first_row + r) * stride + head(gi) * hd + d0..][..2 * G];
            let o = _mm512_mul_ps(accf[gi], _mm512_set1_ps(out_scale[gi]));
            // SAFETY: `dst` holds 2·G floats; the mask writes only those.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << (2 * G)) - 1) as u16, o) };
        }
    }
}

/// Lane j (j < 2·G) = the sum of the 8 lanes of half `j % 2` of `acc[j / 2]`
/// (a value register's two dimensions): the segment sums of output
/// dimensions d0 + j, by a transposing network of 3 operations per
/// register instead of two horizontal reductions (~16 operations) each.
/// Integer sums are exact in any order (they stay under 2³⁰, see
/// `SEGMENT`), so these are the same sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn half_sums<const G: usize>(acc: &[__m512i; G]) -> __m512i {
    let r: [__m512i; 8] = std::array::from_fn(|k| {
        if k < G {
            acc[k]
        } else {
            _mm512_setzero_si512()
        }
    });
    // Register pairs: 128-bit block t of s[m] = dimension 4m + t (4 partials).
    let s: [__m512i; 4] = std::array::from_fn(|m| {
        let (a, b) = (r[2 * m], r[2 * m + 1]);
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(a, b),
            _mm512_shuffle_i32x4::<0xDD>(a, b),
        )
    });
    // Block t of w[n]: dimensions 8n + t and 8n + 4 + t, 2 partials each.
    let w: [__m512i; 2] = std::array::from_fn(|n| {
        let (p, q) = (s[2 * n], s[2 * n + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(p, q), _mm512_unpackhi_epi64(p, q))
    });
    let lo = _mm512_unpacklo_epi32(w[0], w[1]);
    let hi = _mm512_unpackhi_epi32(w[0], w[1]);
    // Block t: dimensions t, 8 + t, 4 + t, 12 + t.
    let z = _mm512_add_epi32(_mm512_unpacklo_epi64(lo, hi), _mm512_unpackhi_epi64(lo, hi));
    let idx = _mm512_set_epi32(15, 11, 7, 3, 13, 9, 5, 1, 14, 10, 6, 2, 12, 8, 4, 0);
    _mm512_permutexvar_epi32(idx, z)
}

/// How many 16-slot chunks ahead a row asks for its keys. Its blocks are
/// scattered over the pool, out of the hardware prefetcher's sight, and one
/// chunk of compute hides less than a memory access: on a Zen 5 core, 4
/// chunks ahead took a 64-sequence decode layer from 0.42–0.46 to
/// 0.36–0.40 ms (1 chunk was the distance before; 2 to 8 were within noise
/// of 4). The f16 kernel keeps 1: more was slower there.
const KEY_PREFETCH_CHUNKS: usize = 4;

/// The chunks whose keys a row prefetches while at chunk `c` of `0..chunks`:
/// the one [`KEY_PREFETCH_CHUNKS`] ahead, and at the row's first chunk all
/// of those before it too.
fn chunks_to_prefetch(c: usize, chunks: usize) -> std::ops::Range<usize> {
    let end = (c + KEY_PREFETCH_CHUNKS + 1).min(chunks);
    let start = if c == 0 { 1 } else { c + KEY_PREFETCH_CHUNKS };
    start.min(end)..end
}

/// `q8`'s `quantize_query`, 16 values at a time (the same maximum,
/// exact in any order; the same scalar scale and reciprocal; the same
/// rounding, to nearest even, and clamp — for finite queries), each value
/// split into its high byte (signed) and low byte (unsigned):
/// `q16 = 256·hi + lo`. Returns the scale and `Σ hi`.
///
/// # Safety
/// As [`attend`]; the three slices have the same length, a multiple of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn quantize_query16(x: &[f32], hi: &mut [i8], lo: &mut [u8]) -> (f32, i32) {
    // SAFETY: 16-element chunks of each slice.
    unsafe {
        let mut m = _mm512_setzero_ps();
        for c in x.chunks_exact(16) {
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())));
        }
        let amax = _mm512_reduce_max_ps(m);
        let scale = amax / 32767.0;
        let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let (lo_lim, hi_lim) = (_mm512_set1_epi32(-32767), _mm512_set1_epi32(32767));
        let mut sum = _mm512_setzero_si512();
        for ((c, h), l) in x
            .chunks_exact(16)
            .zip(hi.chunks_exact_mut(16))
            .zip(lo.chunks_exact_mut(16))
        {
            let v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), inv));
            let v = _mm512_min_epi32(_mm512_max_epi32(v, lo_lim), hi_lim);
            let vh = _mm512_srai_epi32::<8>(v);
            sum = _mm512_add_epi32(sum, vh);
            _mm_storeu_si128(h.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(vh));
            _mm_storeu_si128(l.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(v));
        }
        (scale, _mm512_reduce_add_epi32(sum))
    }
}

/// [`super::quantize_i8`] of one row, 16 values at a time: the same
/// maximum (exact in any order), the same scalar scale and reciprocal, the
/// same rounding (adding and removing 1.5·2²³) and the same saturation
/// (±∞ to ±127, NaN to 0), so the same bytes and scale. The scalar loop's
/// maximum was a chain of 64 dependent operations per row: the KV writes
/// took ~3% of a 64-sequence run.
///
/// # Safety
/// AVX-512 F/BW/VL/DQ; `x` and `q` have the same length, a multiple of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) unsafe fn quantize_row_i8(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == q.len() && x.len().is_multiple_of(16));
    // SAFETY: 16-element chunks of both slices.
    unsafe {
        let mut m = _mm512_setzero_ps();
        for c in x.chunks_exact(16) {
            // `max(v, m)` keeps m where v is NaN, as `f32::max` ignores NaN.
            m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())), m);
        }
        let amax = _mm512_reduce_max_ps(m);
        let scale = amax / 127.0;
        let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let magic = _mm512_set1_ps(12_582_912.0);
        let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
        for (c, out) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
            let v = _mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), inv);
            let r = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
            let ok = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(r, r);
            let clamped = _mm512_maskz_mov_ps(ok, _mm512_min_ps(_mm512_max_ps(r, lo), hi));
            let levels = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(clamped));
            _mm_storeu_si128(out.as_mut_ptr().cast(), levels);
        }
        scale
    }
}
