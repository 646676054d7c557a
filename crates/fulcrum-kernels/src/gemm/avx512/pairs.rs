//! The AVX-512 VNNI kernels of four-row groups: the arithmetic of
//! `portable.rs`, bit for bit.
//!
//! Q4_0…Q8_0 in llama.cpp's order (`tile_lanes8`): a register holds the 8
//! lanes of two outputs (rows A and B of a pair, same token). Per block, the
//! pair's levels are unpacked once and used for all `C` tokens; each token's
//! 32 activation bytes are loaded once, broadcast to both halves, and used for
//! both pairs. Per (pair, token, block): one `vpdpbusd` (starting from the
//! offset correction), one conversion, one scale product and one fused
//! multiply-add — llama.cpp's order, so results match its.
//!
//! Other K-quants (`tile_super`): a register holds the 8 lanes of two outputs
//! (rows A and B of a pair), integer sums per 256-weight super-block.
//!
//! The two pair kernels keep their own loops: with two rows a register,
//! each token's activations are loaded once for both pairs of the group,
//! and the offset correction of llama.cpp's order comes from the weights
//! (once per block), not from the activations' lane sums as on AVX2.

#![allow(clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::PREFETCH_AHEAD;
use crate::gemm::activations::{AT_D, AT_SUM, AT_SUM_LO, DUP_Q, DUP_QB};
use crate::gemm::avx2::hsum8;
use crate::gemm::layout::SuperOrder;
use crate::gemm::tiles::Geometry;

/// For a tile of `C` tokens, lane `i·C + c` of the min-term register holds
/// row `i`, token `c`.
const ROW_OF_LANE: [[u32; 16]; 5] = lane_tables(true);
const TOKEN_OF_LANE: [[u32; 16]; 5] = lane_tables(false);

const fn lane_tables(rows: bool) -> [[u32; 16]; 5] {
    let mut t = [[0u32; 16]; 5];
    let mut c = 1;
    while c <= 4 {
        let mut l = 0;
        while l < 16 {
            t[c][l] = if rows {
                (l / c) as u32 % 4
            } else {
                (l % c) as u32
            };
            l += 1;
        }
        c += 1;
    }
    t
}

/// The pair's levels: bytes [A w0..32 | B w0..32].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn unpack<const BITS: u32>(rec: *const u8, planes_at: usize) -> __m512i {
    // SAFETY (block): the record holds 32 (64 for 8-bit) quant bytes, then planes.
    unsafe {
        if BITS == 8 {
            return _mm512_loadu_si512(rec.cast());
        }
        let q = _mm512_castsi256_si512(_mm256_loadu_si256(rec.cast()));
        // 128-bit lanes [A, A, B, B], then shift the odd ones by a nibble.
        let t = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), q);
        let u = _mm512_srli_epi16::<4>(t);
        let mut v = _mm512_and_si512(
            _mm512_mask_blend_epi64(0b1100_1100, t, u),
            _mm512_set1_epi8(0x0F),
        );
        if BITS >= 5 {
            let k = rec.add(planes_at).cast::<u64>().read_unaligned();
            v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(0x10));
        }
        if BITS >= 6 {
            let k = rec.add(planes_at + 8).cast::<u64>().read_unaligned();
            v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(0x20));
        }
        v
    }
}

/// Lanes 0 and 8 = the sums of lanes 0..8 and 8..16 (integers, exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn sum_halves(v: __m512i) -> __m512i {
    let t = _mm512_add_epi32(v, _mm512_shuffle_epi32::<0x4E>(v));
    let t = _mm512_add_epi32(t, _mm512_shuffle_epi32::<0xB1>(t));
    _mm512_add_epi32(t, _mm512_shuffle_i32x4::<0b1011_0001>(t, t))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn lane0(v: __m512) -> f32 {
    _mm512_cvtss_f32(v)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn lane8(v: __m512) -> f32 {
    _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(v))
}

/// Q4_0…Q8_0 in llama.cpp's order, as [`crate::gemm::tiles::TileKernels::tile_lanes8`].
///
/// # Safety
/// As [`crate::gemm::tiles::TileKernels::tile_lanes8`].
#[allow(clippy::needless_range_loop)]
// c indexes the accumulators of both pairs
// Out of line: compiled on its own, as when it was the trait method itself
// (inlined into the entry point, LLVM unrolled its loops differently).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
pub(super) unsafe fn tile_lanes8<
    const BITS: u32,
    const SHIFT: u32,
    const FMIN: bool,
    const C: usize,
>(
    g: &Geometry,
    w: *const u8,
    a: *const u8,
    s: *const f32,
    tok0: usize,
    out: &mut [[f32; C]; 8],
) {
    debug_assert!(
        C <= 8,
        "tiles are one group of four rows by up to eight tokens"
    );
    let mut acc = [[_mm512_setzero_ps(); C]; 2];
    // Min terms: register h holds tokens 4h..4h+4, lane 4·row + token % 4.
    let mut summs = [_mm512_setzero_ps(); 2];
    let row_idx = _mm512_loadu_si512(ROW_OF_LANE[4].as_ptr().cast());
    let tok_idx = _mm512_loadu_si512(TOKEN_OF_LANE[4].as_ptr().cast());
    // Register lanes [A 0-3 | B 0-3 | A 4-7 | B 4-7]: scale index per lane.
    let pair0 = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    let pair1 = _mm512_add_epi32(pair0, _mm512_set1_epi32(2));
    let nib = _mm512_set1_epi8(0x0F);
    for b in 0..g.blocks {
        // SAFETY: record b of the group lies inside the packed matrix; the
        // prefetch address may run past it, which prefetches tolerate.
        let (mut w0, mut w1, ws0, ws1, rec) = unsafe {
            let rec = w.add(b * g.rec.total);
            _mm_prefetch::<_MM_HINT_T0>(rec.wrapping_add(PREFETCH_AHEAD).cast());
            let (w0, w1) = if BITS == 8 {
                (
                    _mm512_loadu_si512(rec.cast()),
                    _mm512_loadu_si512(rec.add(64).cast()),
                )
            } else {
                // 128-bit lanes [A0, B0, A1, B1] of nibbles → both pairs' registers.
                let v = _mm512_loadu_si512(rec.cast());
                let lo = _mm512_and_si512(v, nib);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
                let mut w0 = _mm512_shuffle_i64x2::<0b0100_0100>(lo, hi);
                let mut w1 = _mm512_shuffle_i64x2::<0b1110_1110>(lo, hi);
                if BITS == 5 {
                    let k0 = rec.add(g.rec.planes).cast::<u64>().read_unaligned();
                    let k1 = rec.add(g.rec.planes + 8).cast::<u64>().read_unaligned();
                    w0 = _mm512_mask_add_epi8(w0, k0, w0, _mm512_set1_epi8(0x10));
                    w1 = _mm512_mask_add_epi8(w1, k1, w1, _mm512_set1_epi8(0x10));
                }
                (w0, w1)
            };
            let sc =
                _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(rec.add(g.rec.scales).cast())));
            (
                w0,
                w1,
                _mm512_permutexvar_ps(pair0, sc),
                _mm512_permutexvar_ps(pair1, sc),
                rec,
            )
        };
        // Formats with an integer offset: signed weights (level − offset, 8-bit
        // ones are stored signed) times activations offset by 128 as unsigned
        // bytes; Σ(x+128)·w = Σx·w + 128·Σw, so the integer sum starts at
        // −128·Σw per lane — computed once per block, not per token.
        let (mut init0, mut init1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        if SHIFT > 0 {
            if BITS != 8 {
                let off = _mm512_set1_epi8(1 << SHIFT);
                w0 = _mm512_sub_epi8(w0, off);
                w1 = _mm512_sub_epi8(w1, off);
            }
            let ones = _mm512_set1_epi8(1);
            let neg128 = |w: __m512i| {
                _mm512_sub_epi32(
                    _mm512_setzero_si512(),
                    _mm512_slli_epi32::<7>(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w)),
                )
            };
            init0 = neg128(w0);
            init1 = neg128(w1);
        }
        for c in 0..C {
            // SAFETY: token c's record b lies inside the activations.
            let (x, dx) = unsafe {
                let xr = a.add(c * g.act_stride + b * g.act_rec);
                let x = _mm512_loadu_si512(xr.add(if SHIFT > 0 { DUP_QB } else { DUP_Q }).cast());
                (
                    x,
                    _mm512_set1_ps(xr.add(AT_D).cast::<f32>().read_unaligned()),
                )
            };
            let (i0, i1) = if SHIFT > 0 {
                (
                    _mm512_dpbusd_epi32(init0, x, w0),
                    _mm512_dpbusd_epi32(init1, x, w1),
                )
            } else {
                (
                    _mm512_dpbusd_epi32(init0, w0, x),
                    _mm512_dpbusd_epi32(init1, w1, x),
                )
            };
            acc[0][c] = _mm512_fmadd_ps(_mm512_mul_ps(ws0, dx), _mm512_cvtepi32_ps(i0), acc[0][c]);
            acc[1][c] = _mm512_fmadd_ps(_mm512_mul_ps(ws1, dx), _mm512_cvtepi32_ps(i1), acc[1][c]);
        }
        if FMIN {
            // The min terms of all (row, token) pairs of the tile in one register,
            // lane i·C + c for row i and token c.
            // SAFETY: the record holds four f16 mins; the s array holds `m`
            // values per block and lanes past C are masked off.
            unsafe {
                let mins = _mm_cvtph_ps(_mm_loadl_epi64(rec.add(g.rec.mins).cast()));
                let mrow = _mm512_permutexvar_ps(row_idx, _mm512_castps128_ps512(mins));
                for (h, sm) in summs.iter_mut().enumerate().take(C.div_ceil(4)) {
                    let n = (C - 4 * h).min(4);
                    let sv = _mm_maskz_loadu_ps((1u8 << n) - 1, s.add(b * g.m + tok0 + 4 * h));
                    let stok = _mm512_permutexvar_ps(tok_idx, _mm512_castps128_ps512(sv));
                    *sm = _mm512_fmadd_ps(mrow, stok, *sm);
                }
            }
        }
    }
    let mut sm = [[0f32; 16]; 2];
    if FMIN {
        for (h, v) in summs.iter().enumerate() {
            // SAFETY: 16 floats.
            unsafe { _mm512_storeu_ps(sm[h].as_mut_ptr(), *v) };
        }
    }
    for p in 0..2 {
        for c in 0..C {
            // Lanes i and i+8 are one row's partial sums i and i+4.
            let v = acc[p][c];
            let s8 = _mm256_add_ps(_mm512_extractf32x8_ps::<1>(v), _mm512_castps512_ps256(v));
            for ri in 0..2 {
                let r4 = if ri == 0 {
                    _mm256_castps256_ps128(s8)
                } else {
                    _mm256_extractf128_ps::<1>(s8)
                };
                let r = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
                let h = _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
                out[2 * p + ri][c] = h + sm[c / 4][4 * (2 * p + ri) + c % 4];
            }
        }
    }
}

/// K-quant pairs, as [`crate::gemm::tiles::TileKernels::tile_super`].
///
/// # Safety
/// As [`crate::gemm::tiles::TileKernels::tile_super`].
// Out of line: compiled on its own, as when it was the trait method itself
// (inlined into the entry point, LLVM unrolled its loops differently).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
pub(super) unsafe fn tile_super<
    const BITS: u32,
    const KIND: u32,
    const P: usize,
    const C: usize,
>(
    g: &Geometry,
    w: *const u8,
    a: *const u8,
    order: SuperOrder,
    out: &mut [[f32; C]; 8],
) {
    let span = if order == SuperOrder::Gemm4 { 2 } else { 8 };
    let tiled = order == SuperOrder::Tiled;
    let sc_at = g.rec.scales;
    let mut acc = [[_mm512_setzero_ps(); C]; P];
    let mut acc_min = [[_mm512_setzero_ps(); C]; P];
    let halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let quarters = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    debug_assert!(span == 8 || KIND == 0, "only Q4_K has a 64-weight step");
    debug_assert!(
        !tiled || KIND == 1,
        "the tiled order is reproduced for Q6_K"
    );
    for b0 in (0..g.blocks).step_by(span) {
        let sb = b0 / 8;
        let mut iacc = [[_mm512_setzero_si512(); C]; P];
        let mut imin = [[_mm512_setzero_si512(); C]; P];
        for b in b0..b0 + span {
            let mut wv = [_mm512_setzero_si512(); P];
            let mut scv = [_mm512_setzero_si512(); P];
            let mut mnv = [_mm512_setzero_si512(); P];
            for p in 0..P {
                // SAFETY: pair p's record b lies inside the packed matrix.
                unsafe {
                    let rec = w.add(b * g.step + p * g.rec.total);
                    wv[p] = unpack::<BITS>(rec, g.rec.planes);
                    if KIND == 0 {
                        let sm = _mm_cvtsi32_si128(rec.add(sc_at).cast::<i32>().read_unaligned());
                        scv[p] = _mm512_permutexvar_epi32(halves, _mm512_cvtepu8_epi32(sm));
                        mnv[p] = _mm512_permutexvar_epi32(
                            halves,
                            _mm512_cvtepu8_epi32(_mm_srli_si128::<2>(sm)),
                        );
                    } else {
                        let sm = _mm_cvtsi32_si128(rec.add(sc_at).cast::<i32>().read_unaligned());
                        scv[p] = _mm512_permutexvar_epi32(quarters, _mm512_cvtepi8_epi32(sm));
                    }
                }
            }
            for c in 0..C {
                // SAFETY: token c's record b lies inside the activations.
                let (x, bsum) = unsafe {
                    let rec = a.add(c * g.act_stride + b * g.act_rec);
                    let bs = rec.add(AT_SUM).cast::<i32>().read_unaligned();
                    (_mm512_broadcast_i64x4(_mm256_loadu_si256(rec.cast())), bs)
                };
                for p in 0..P {
                    let isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[p], x);
                    iacc[p][c] = _mm512_add_epi32(iacc[p][c], _mm512_mullo_epi32(isum, scv[p]));
                    if KIND == 0 {
                        imin[p][c] = _mm512_add_epi32(
                            imin[p][c],
                            _mm512_mullo_epi32(mnv[p], _mm512_set1_epi32(bsum)),
                        );
                    }
                }
            }
        }
        // One float step per super-block (per `span` blocks).
        let last = 8 * sb + 7;
        for c in 0..C {
            // SAFETY: token c's records of this super-block.
            let (dx, halfsums) = unsafe {
                let dx = _mm512_set1_ps(
                    a.add(c * g.act_stride + last * g.act_rec + AT_D)
                        .cast::<f32>()
                        .read_unaligned(),
                );
                // [Σ block0 low, Σ block0 high, Σ block1 low, …]: 16 lanes.
                let mut hs = [0i64; 8];
                for (l, h) in hs.iter_mut().enumerate() {
                    *h = a
                        .add(c * g.act_stride + (8 * sb + l) * g.act_rec + AT_SUM_LO)
                        .cast::<i64>()
                        .read_unaligned();
                }
                (dx, _mm512_loadu_si512(hs.as_ptr().cast()))
            };
            for p in 0..P {
                // SAFETY: pair p's last record of the super-block.
                let rec = unsafe { w.add(last * g.step + p * g.rec.total) };
                if KIND == 0 {
                    // SAFETY: the record holds d A, d B, dmin A, dmin B (f32).
                    let (dv, dminv) = unsafe {
                        let f = _mm512_castps128_ps512(_mm_loadu_ps(rec.add(sc_at + 4).cast()));
                        (
                            _mm512_permutexvar_ps(halves, f),
                            _mm512_permutexvar_ps(
                                _mm512_add_epi32(halves, _mm512_set1_epi32(2)),
                                f,
                            ),
                        )
                    };
                    let red = sum_halves(iacc[p][c]);
                    acc[p][c] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(red), _mm512_mul_ps(dv, dx), acc[p][c]);
                    acc_min[p][c] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(imin[p][c]),
                        _mm512_mul_ps(dminv, dx),
                        acc_min[p][c],
                    );
                } else {
                    // SAFETY: the record holds A's and B's 16 scales, then d A, d B.
                    let (sca, scb, dv) = unsafe {
                        (
                            _mm512_cvtepi8_epi32(_mm_loadu_si128(rec.add(sc_at + 4).cast())),
                            _mm512_cvtepi8_epi32(_mm_loadu_si128(rec.add(sc_at + 20).cast())),
                            _mm512_permutexvar_ps(
                                halves,
                                _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(
                                    rec.add(sc_at + 36).cast(),
                                ))),
                            ),
                        )
                    };
                    // Lane 2l (+1): block l's halves; pair sums in even lanes, then compacted.
                    let pa = _mm512_mullo_epi32(sca, halfsums);
                    let pb = _mm512_mullo_epi32(scb, halfsums);
                    let pa = _mm512_add_epi32(pa, _mm512_shuffle_epi32::<0xB1>(pa));
                    let pb = _mm512_add_epi32(pb, _mm512_shuffle_epi32::<0xB1>(pb));
                    let idx =
                        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
                    let corr = _mm512_slli_epi32::<5>(_mm512_permutex2var_epi32(pa, idx, pb));
                    let s = _mm512_sub_epi32(iacc[p][c], corr);
                    acc[p][c] = if tiled {
                        // Lanes 0 and 8: the rows' whole sums, fma(S·d, dx, acc).
                        let f = _mm512_cvtepi32_ps(sum_halves(s));
                        _mm512_fmadd_ps(_mm512_mul_ps(f, dv), dx, acc[p][c])
                    } else {
                        _mm512_fmadd_ps(_mm512_mul_ps(dx, dv), _mm512_cvtepi32_ps(s), acc[p][c])
                    };
                }
            }
        }
    }
    for p in 0..P {
        for c in 0..C {
            if KIND == 0 {
                out[2 * p][c] = lane0(acc[p][c]) - lane0(acc_min[p][c]);
                out[2 * p + 1][c] = lane8(acc[p][c]) - lane8(acc_min[p][c]);
            } else if tiled {
                out[2 * p][c] = lane0(acc[p][c]);
                out[2 * p + 1][c] = lane8(acc[p][c]);
            } else {
                out[2 * p][c] = hsum8(_mm512_castps512_ps256(acc[p][c]));
                out[2 * p + 1][c] = hsum8(_mm512_extractf32x8_ps::<1>(acc[p][c]));
            }
        }
    }
}
