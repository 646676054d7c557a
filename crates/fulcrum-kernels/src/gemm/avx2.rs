//! The AVX2 + FMA kernels over packed weights: the arithmetic of
//! `portable.rs`, bit for bit, for x86-64 CPUs without AVX-512 VNNI.
//!
//! AVX2 has no `vpdpbusd`; its 4-byte dot product is `vpmaddubsw` (unsigned
//! byte × signed byte, adjacent pairs summed into saturating i16) followed by
//! `vpmaddwd` against ones (pairs of i16 into i32). The i16 step cannot
//! saturate for levels below 64 (2·63·127 < 2¹⁵); 8-bit weights go through
//! the sign trick instead (|q| as unsigned times x carrying q's sign, at most
//! 2·128·127), which needs activations in −127…127 — what both activation
//! schemes produce. Every integer block sum is therefore exact, the same
//! integer the portable kernel computes, and the float steps that follow are
//! the portable kernel's, in its order.
//!
//! - `tile16` (Q4_0…Q8_0, fast order): a register holds one 4-weight slice
//!   of 8 rows (half a 16-row group); per block and token, 8 dot products
//!   leave 8 rows' exact block sums, then one conversion, one scale product
//!   and one or two fused multiply-adds for all 8 outputs.
//! - `tile_lanes8` (Q4_0…Q8_0, llama.cpp's order): a register holds one
//!   row's 32 levels; one dot product per token gives the 8 lane sums of
//!   llama.cpp's kernel directly.
//! - `tile_super` (K-quants): as `tile_lanes8`, integer sums per 256-weight
//!   super-block, one float step per super-block.

#![allow(clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::activations::{AT_D, AT_LANE_SUMS, AT_SUM, AT_SUM_HI, AT_SUM_LO};
use super::packed::SUPER16_TRAILER;
use super::raw::{read_f16, read_f32, read_i32, read_u32};
use super::{Geometry, SuperOrder};

/// Bytes ahead of the current record to prefetch (see `avx512.rs`).
const PREFETCH_AHEAD: usize = 4096;

/// Σ of each 4 consecutive `w[i]·x[i]` as i32 lanes; `w` unsigned below 64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot4(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

/// As [`dot4`] for signed weights `q` (any i8) and activations in −127…127.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot4_signed(q: __m256i, x: __m256i) -> __m256i {
    dot4(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q))
}

/// 0xFF in byte `i` where bit `i` of `m` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn expand_bits(m: u32) -> __m256i {
    let v = _mm256_set1_epi32(m as i32);
    // Byte i takes byte i / 8 of m (shuffles stay inside 128-bit lanes,
    // and every 4 bytes of `v` are m).
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, spread), bit), bit)
}

/// Adds 16 to the levels whose bit is set in `m` (the fifth bit plane).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_plane(v: __m256i, m: u32, value: i8) -> __m256i {
    _mm256_add_epi8(v, _mm256_and_si256(expand_bits(m), _mm256_set1_epi8(value)))
}

/// Asks for the record `PREFETCH_AHEAD` bytes past `rec`, every line of it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_ahead(rec: *const u8, total: usize) {
    let mut line = 0;
    while line < total {
        // A prefetch (a hint) tolerates any address.
        _mm_prefetch::<_MM_HINT_T0>(rec.wrapping_add(PREFETCH_AHEAD + line).cast());
        line += 64;
    }
}

/// Half `h` (rows 8h..8h+8: bytes 32h..32h+32 of every 64-byte slice) of
/// the 8 slices of a 16-row group record's levels: 4/5-bit levels from the
/// nibbles plus the bit plane; 8-bit ones as the signed quants.
///
/// # Safety
/// `rec` points at a group record with its bit planes at `planes_at`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group16_half_slices<const BITS: u32>(
    rec: *const u8,
    planes_at: usize,
    h: usize,
) -> [__m256i; 8] {
    let mut wv = [_mm256_setzero_si256(); 8];
    // SAFETY (block): the caller's contract.
    unsafe {
        if BITS == 8 {
            // Stored level = q + 128: flip to the signed q.
            for (j, v) in wv.iter_mut().enumerate() {
                let raw = _mm256_loadu_si256(rec.add(64 * j + 32 * h).cast());
                *v = _mm256_xor_si256(raw, _mm256_set1_epi8(-128));
            }
            return wv;
        }
        let nib = _mm256_set1_epi8(0x0F);
        for j in 0..4 {
            let v = _mm256_loadu_si256(rec.add(64 * j + 32 * h).cast());
            wv[j] = _mm256_and_si256(v, nib);
            wv[j + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
        }
        if BITS == 5 {
            for (j, v) in wv.iter_mut().enumerate() {
                *v = add_plane(*v, read_u32(rec.add(planes_at + 8 * j + 4 * h)), 0x10);
            }
        }
    }
    wv
}

/// llama.cpp's `hsum_float_8` (= `portable::hsum8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum8(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// Σ of 8 i32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let r = _mm_add_epi32(_mm256_extracti128_si256::<1>(v), _mm256_castsi256_si128(v));
    let r = _mm_add_epi32(r, _mm_shuffle_epi32::<0b0100_1110>(r));
    _mm_cvtsi128_si32(_mm_add_epi32(r, _mm_shuffle_epi32::<0b1011_0001>(r)))
}

/// 16 bytes of nibbles → 32 levels: low nibbles first, then high ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    let nib = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16::<4>(v), nib),
        _mm_and_si128(v, nib),
    )
}

/// The AVX2 + FMA kernel set.
pub struct Avx2;

impl super::TileKernels for Avx2 {
    const MAX_TOKENS: usize = 4;

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile16<const BITS: u32, const SHIFT: u32, const FMIN: bool, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        s: *const f32,
        tok0: usize,
        y: *mut f32,
        n: usize,
        valid: u16,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; 2];
        for b in 0..g.blocks {
            // SAFETY: record b of the group lies inside the packed matrix; the
            // prefetch addresses may run past it, which prefetches tolerate.
            let rec = unsafe { w.add(b * g.rec.total) };
            prefetch_ahead(rec, g.rec.total);
            for (h, acc_h) in acc.iter_mut().enumerate() {
                // Half h: rows 8h..8h+8, bytes 32h..32h+32 of every 64-byte slice.
                // SAFETY: the record holds the slices, planes, scales and mins.
                let (wv, ws, mins) = unsafe {
                    let wv = group16_half_slices::<BITS>(rec, g.rec.planes, h);
                    let ws =
                        _mm256_cvtph_ps(_mm_loadu_si128(rec.add(g.rec.scales + 16 * h).cast()));
                    let mins = if FMIN {
                        _mm256_cvtph_ps(_mm_loadu_si128(rec.add(g.rec.mins + 16 * h).cast()))
                    } else {
                        _mm256_setzero_ps()
                    };
                    (wv, ws, mins)
                };
                for (c, acc_c) in acc_h.iter_mut().enumerate() {
                    // SAFETY: token c's record b lies inside the activations, and
                    // its `s` inside the `s` array.
                    let (isum, dx, sx) = unsafe {
                        let xr = a.add(c * g.act_stride + b * g.act_rec);
                        let x = |j: usize| _mm256_set1_epi32(read_i32(xr.add(4 * j)));
                        // 8-bit weights are signed here: no offset to subtract.
                        let mut isum = if SHIFT > 0 && BITS != 8 {
                            _mm256_set1_epi32((read_i32(xr.add(AT_SUM)) << SHIFT).wrapping_neg())
                        } else {
                            _mm256_setzero_si256()
                        };
                        for (j, &wj) in wv.iter().enumerate() {
                            let d = if BITS == 8 {
                                dot4_signed(wj, x(j))
                            } else {
                                dot4(wj, x(j))
                            };
                            isum = _mm256_add_epi32(isum, d);
                        }
                        let dx = _mm256_set1_ps(read_f32(xr.add(AT_D)));
                        let sx = if FMIN {
                            _mm256_set1_ps(*s.add(b * g.m + tok0 + c))
                        } else {
                            _mm256_setzero_ps()
                        };
                        (isum, dx, sx)
                    };
                    *acc_c =
                        _mm256_fmadd_ps(_mm256_mul_ps(ws, dx), _mm256_cvtepi32_ps(isum), *acc_c);
                    if FMIN {
                        *acc_c = _mm256_fmadd_ps(mins, sx, *acc_c);
                    }
                }
            }
        }
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        for (h, acc_h) in acc.iter().enumerate() {
            let bits = i32::from(valid >> (8 * h) & 0xFF);
            if bits == 0 {
                continue;
            }
            let mask = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits), bit), bit);
            for (c, acc_c) in acc_h.iter().enumerate() {
                // SAFETY: the caller guarantees room for the valid rows of C tokens.
                unsafe { _mm256_maskstore_ps(y.add((tok0 + c) * n + 8 * h), mask, *acc_c) };
            }
        }
    }

    const SUPER16: bool = true;

    /// The AVX-512 kernel's arithmetic ([`super::avx512`]'s `tile16_super`)
    /// on 8-lane registers: each half of the group (rows 8h..8h+8) in turn,
    /// its levels unpacked once per block for the tile's tokens; exact block
    /// sums times the integer scale into the super-block sum, the integer
    /// min times the token's block sum into the min sum, one float step each
    /// per super-block.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile16_super<const BITS: u32, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        tok0: usize,
        y: *mut f32,
        n: usize,
        valid: u16,
    ) {
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        for h in 0..2 {
            let bits = i32::from(valid >> (8 * h) & 0xFF);
            if bits == 0 {
                continue;
            }
            let mut acc = [_mm256_setzero_ps(); C];
            let mut acc_min = [_mm256_setzero_ps(); C];
            for sb in 0..g.blocks / 8 {
                let mut isum = [_mm256_setzero_si256(); C];
                let mut imin = [_mm256_setzero_si256(); C];
                for b in 8 * sb..8 * sb + 8 {
                    // SAFETY: record b of the group lies inside the packed
                    // matrix (records, then a trailer after every eighth);
                    // prefetches tolerate addresses past it.
                    let (wv, sc, mn) = unsafe {
                        let rec = w.add(b * g.rec.total + sb * SUPER16_TRAILER);
                        if h == 0 {
                            prefetch_ahead(rec, g.rec.total);
                        }
                        let wv = group16_half_slices::<BITS>(rec, g.rec.planes, h);
                        let byte8 = |at: usize| _mm_loadl_epi64(rec.add(at + 8 * h).cast());
                        (
                            wv,
                            _mm256_cvtepu8_epi32(byte8(g.rec.scales)),
                            _mm256_cvtepu8_epi32(byte8(g.rec.mins)),
                        )
                    };
                    for c in 0..C {
                        // SAFETY: token c's record b lies inside the activations.
                        let (q, bsum) = unsafe {
                            let xr = a.add(c * g.act_stride + b * g.act_rec);
                            let x = |j: usize| _mm256_set1_epi32(read_i32(xr.add(4 * j)));
                            let mut q = _mm256_setzero_si256();
                            for (j, &wj) in wv.iter().enumerate() {
                                q = _mm256_add_epi32(q, dot4(wj, x(j)));
                            }
                            (q, _mm256_set1_epi32(read_i32(xr.add(AT_SUM))))
                        };
                        isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(q, sc));
                        imin[c] = _mm256_add_epi32(imin[c], _mm256_mullo_epi32(mn, bsum));
                    }
                }
                // SAFETY: the super-block's trailer follows its eighth record;
                // token c's last record of the super-block holds its `d`.
                unsafe {
                    let tr = w.add((8 * sb + 8) * g.rec.total + sb * SUPER16_TRAILER);
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(tr.add(16 * h).cast()));
                    let dmin = _mm256_cvtph_ps(_mm_loadu_si128(tr.add(32 + 16 * h).cast()));
                    for c in 0..C {
                        let dx = _mm256_set1_ps(read_f32(
                            a.add(c * g.act_stride + (8 * sb + 7) * g.act_rec + AT_D),
                        ));
                        acc[c] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(isum[c]),
                            _mm256_mul_ps(d, dx),
                            acc[c],
                        );
                        acc_min[c] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(imin[c]),
                            _mm256_mul_ps(dmin, dx),
                            acc_min[c],
                        );
                    }
                }
            }
            let mask = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits), bit), bit);
            for c in 0..C {
                // SAFETY: the caller guarantees room for the valid rows of C tokens.
                unsafe {
                    _mm256_maskstore_ps(
                        y.add((tok0 + c) * n + 8 * h),
                        mask,
                        _mm256_sub_ps(acc[c], acc_min[c]),
                    )
                };
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_lanes8<const BITS: u32, const SHIFT: u32, const FMIN: bool, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        s: *const f32,
        tok0: usize,
        out: &mut [[f32; C]; 8],
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; 4];
        let mut summs = [[0f32; C]; 4];
        let shift = _mm_cvtsi32_si128(SHIFT as i32);
        for b in 0..g.blocks {
            // SAFETY: record b of the group lies inside the packed matrix.
            let rec = unsafe { w.add(b * g.rec.total) };
            _mm_prefetch::<_MM_HINT_T0>(rec.wrapping_add(PREFETCH_AHEAD).cast());
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let (p, ri) = (r / 2, r % 2);
                // Row r's 32 levels in weight order (8-bit: the signed quants,
                // stored at [A 0-15 | B 0-15 | A 16-31 | B 16-31] of pair p).
                // SAFETY: the record holds the pairs' bytes, planes and scales.
                let (lv, ws) = unsafe {
                    let lv = if BITS == 8 {
                        let at = rec.add(64 * p + 16 * ri);
                        _mm256_loadu2_m128i(at.add(32).cast(), at.cast())
                    } else {
                        let v = nibbles32(rec.add(16 * r));
                        if BITS == 5 {
                            let plane =
                                rec.add(g.rec.planes + 8 * p).cast::<u64>().read_unaligned();
                            let lo = (plane >> (16 * ri)) & 0xFFFF;
                            let hi = (plane >> (32 + 16 * ri)) & 0xFFFF;
                            add_plane(v, (lo | hi << 16) as u32, 0x10)
                        } else {
                            v
                        }
                    };
                    (lv, read_f16(rec.add(g.rec.scales + 2 * r)))
                };
                for (c, acc_c) in acc_r.iter_mut().enumerate() {
                    // SAFETY: token c's record b lies inside the activations.
                    let (isum, dx) = unsafe {
                        let xr = a.add(c * g.act_stride + b * g.act_rec);
                        let x = _mm256_loadu_si256(xr.cast());
                        let isum = if BITS == 8 {
                            dot4_signed(lv, x)
                        } else if SHIFT > 0 {
                            let lane_sums = _mm256_loadu_si256(xr.add(AT_LANE_SUMS).cast());
                            _mm256_sub_epi32(dot4(lv, x), _mm256_sll_epi32(lane_sums, shift))
                        } else {
                            dot4(lv, x)
                        };
                        (isum, read_f32(xr.add(AT_D)))
                    };
                    *acc_c =
                        _mm256_fmadd_ps(_mm256_set1_ps(ws * dx), _mm256_cvtepi32_ps(isum), *acc_c);
                }
                if FMIN {
                    // SAFETY: the record holds four f16 mins; the s array `m` per block.
                    let mn = unsafe { read_f16(rec.add(g.rec.mins + 2 * r)) };
                    for (c, sm) in summs[r].iter_mut().enumerate() {
                        // SAFETY: as above.
                        let sx = unsafe { *s.add(b * g.m + tok0 + c) };
                        *sm = mn.mul_add(sx, *sm);
                    }
                }
            }
        }
        for r in 0..4 {
            for c in 0..C {
                out[r][c] = hsum8(acc[r][c]) + summs[r][c];
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_super<const BITS: u32, const KIND: u32, const P: usize, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        order: SuperOrder,
        out: &mut [[f32; C]; 8],
    ) {
        let span = if order == SuperOrder::Gemm4 { 2 } else { 8 };
        let tiled = order == SuperOrder::Tiled;
        let sc_at = g.rec.scales;
        // Per row (2p + ri) and token.
        let mut acc = [[0f32; C]; 8];
        let mut acc_min = [[0f32; C]; 8];
        let mut lanes = [[_mm256_setzero_ps(); C]; 8];
        debug_assert!(span == 8 || KIND == 0, "only Q4_K has a 64-weight step");
        debug_assert!(
            !tiled || KIND == 1,
            "the tiled order is reproduced for Q6_K"
        );
        for b0 in (0..g.blocks).step_by(span) {
            let sb = b0 / 8;
            let mut iacc = [[_mm256_setzero_si256(); C]; 8];
            let mut imin = [[0i32; C]; 8];
            for b in b0..b0 + span {
                for p in 0..P {
                    // SAFETY: pair p's record b lies inside the packed matrix.
                    let rec = unsafe { w.add(b * g.step + p * g.rec.total) };
                    for ri in 0..2 {
                        let row = 2 * p + ri;
                        // SAFETY: the record holds both rows' nibbles, planes, scales.
                        let (lv, scv, mn) = unsafe {
                            let mut lv = nibbles32(rec.add(16 * ri));
                            if BITS >= 5 {
                                let plane = read_u32(rec.add(g.rec.planes + 4 * ri));
                                lv = add_plane(lv, plane, 0x10);
                            }
                            if BITS >= 6 {
                                let plane = read_u32(rec.add(g.rec.planes + 8 + 4 * ri));
                                lv = add_plane(lv, plane, 0x20);
                            }
                            if KIND == 0 {
                                (
                                    lv,
                                    _mm256_set1_epi32(i32::from(*rec.add(sc_at + ri))),
                                    i32::from(*rec.add(sc_at + 2 + ri)),
                                )
                            } else {
                                let sc = |h: usize| i32::from(*rec.add(sc_at + 2 * ri + h) as i8);
                                let (s0, s1) = (sc(0), sc(1));
                                (lv, _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1), 0)
                            }
                        };
                        for c in 0..C {
                            // SAFETY: token c's record b lies inside the activations.
                            let (x, bsum) = unsafe {
                                let xr = a.add(c * g.act_stride + b * g.act_rec);
                                (_mm256_loadu_si256(xr.cast()), read_i32(xr.add(AT_SUM)))
                            };
                            let v = _mm256_mullo_epi32(dot4(lv, x), scv);
                            iacc[row][c] = _mm256_add_epi32(iacc[row][c], v);
                            if KIND == 0 {
                                imin[row][c] += mn * bsum;
                            }
                        }
                    }
                }
            }
            // One float step per super-block (per `span` blocks).
            let last = 8 * sb + 7;
            for c in 0..C {
                let xc = |blk: usize, at: usize| {
                    // SAFETY: token c's records of this super-block.
                    unsafe { read_i32(a.add(c * g.act_stride + blk * g.act_rec + at)) }
                };
                // SAFETY: as above.
                let dx = unsafe { read_f32(a.add(c * g.act_stride + last * g.act_rec + AT_D)) };
                for p in 0..P {
                    // SAFETY: pair p's last record of the super-block.
                    let rec = unsafe { w.add(last * g.step + p * g.rec.total) };
                    for ri in 0..2 {
                        let row = 2 * p + ri;
                        if KIND == 0 {
                            // SAFETY: the record holds d A, d B, dmin A, dmin B (f32).
                            let (d, dmin) = unsafe {
                                (
                                    read_f32(rec.add(sc_at + 4 + 4 * ri)),
                                    read_f32(rec.add(sc_at + 12 + 4 * ri)),
                                )
                            };
                            let i_sum = hsum_i32(iacc[row][c]);
                            acc[row][c] = (i_sum as f32).mul_add(d * dx, acc[row][c]);
                            acc_min[row][c] =
                                (imin[row][c] as f32).mul_add(dmin * dx, acc_min[row][c]);
                        } else {
                            // The offset correction of block l, all in lane l.
                            let corr: [i32; 8] = std::array::from_fn(|l| {
                                // SAFETY: the record holds the row's 16 scales.
                                let sc = |h: usize| unsafe {
                                    i32::from(*rec.add(sc_at + 4 + 16 * ri + 2 * l + h) as i8)
                                };
                                (sc(0) * xc(8 * sb + l, AT_SUM_LO)
                                    + sc(1) * xc(8 * sb + l, AT_SUM_HI))
                                    << 5
                            });
                            // SAFETY: the record holds d A, d B (f32); 8 i32s.
                            let (d, corr) = unsafe {
                                (
                                    read_f32(rec.add(sc_at + 36 + 4 * ri)),
                                    _mm256_loadu_si256(corr.as_ptr().cast()),
                                )
                            };
                            let sv = _mm256_sub_epi32(iacc[row][c], corr);
                            if tiled {
                                acc[row][c] = (hsum_i32(sv) as f32 * d).mul_add(dx, acc[row][c]);
                            } else {
                                lanes[row][c] = _mm256_fmadd_ps(
                                    _mm256_set1_ps(dx * d),
                                    _mm256_cvtepi32_ps(sv),
                                    lanes[row][c],
                                );
                            }
                        }
                    }
                }
            }
        }
        for row in 0..2 * P {
            for c in 0..C {
                out[row][c] = if KIND == 0 {
                    acc[row][c] - acc_min[row][c]
                } else if tiled {
                    acc[row][c]
                } else {
                    hsum8(lanes[row][c])
                };
            }
        }
    }
}
