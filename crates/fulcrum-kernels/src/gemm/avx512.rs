//! The AVX-512 VNNI kernel over packed weights.
//!
//! A tile of `R` weight rows × `C` tokens keeps `R·C` accumulators of 16 f32
//! lanes in registers. Per 128-weight group, each row's quants are unpacked
//! once (mask/shift, bit planes added with masked byte adds) and used for all
//! `C` tokens; each token's quantized activations are loaded once and used for
//! all `R` rows. Per (row, token) pair and group the work is two `vpdpbusd`
//! (u8 levels × i8 activations, i32 lanes of 4 products), one conversion and
//! one fused multiply-add with the product of the two per-lane scales.
//!
//! A weight offset (Q4_0's 8, Q8_0's 128, …) is subtracted exactly by starting
//! the integer accumulator at `−offset·Σx` (lane sums precomputed with the
//! activations), so it costs nothing per pair.
//!
//! The arithmetic per output is the same sequence of lane operations as the
//! portable kernel (`portable.rs`), which tests check bit for bit.

#![allow(clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::activations::RECORD;
use super::lanes::*;


#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn pattern(p: &[u32; 16]) -> __m512i {
    // SAFETY: reading 64 bytes from a 16-element u32 array.
    unsafe { _mm512_loadu_si512(p.as_ptr().cast()) }
}

/// Loads `count` (≤ 8) scales (f16 or f32) and spreads them over lanes by `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn scales<const F32S: bool>(at: *const u8, count: usize, p: __m512i) -> __m512 {
    // SAFETY (all branches): the caller guarantees `count` scales at `at`.
    let v = unsafe {
        if F32S {
            match count {
                8 => _mm512_castps256_ps512(_mm256_loadu_ps(at.cast())),
                4 => _mm512_castps128_ps512(_mm_loadu_ps(at.cast())),
                _ => _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(at.cast()))),
            }
        } else {
            match count {
                4 => _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(at.cast()))),
                _ => _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(at.cast::<i32>().read_unaligned()))),
            }
        }
    };
    _mm512_permutexvar_ps(p, v)
}

/// Adds bit planes (bit 4, bit 5) to a vector of nibbles.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn add_planes<const BITS: u32>(v: __m512i, planes: *const u8, vectors: usize, which: usize) -> __m512i {
    let mut v = v;
    if BITS >= 5 {
        // SAFETY: the record holds `vectors` u64 masks per plane at `planes`.
        let k = unsafe { planes.add(8 * which).cast::<u64>().read_unaligned() };
        v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(0x10));
    }
    if BITS >= 6 {
        // SAFETY: as above, second plane.
        let k = unsafe { planes.add(8 * (vectors + which)).cast::<u64>().read_unaligned() };
        v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(0x20));
    }
    v
}

/// The (low, high) level vectors of a full group record.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn unpack_full<const BITS: u32>(rec: *const u8) -> (__m512i, __m512i) {
    // SAFETY: a full record holds 64 (or 128 for 8-bit) quant bytes, then planes.
    unsafe {
        if BITS == 8 {
            return (_mm512_loadu_si512(rec.cast()), _mm512_loadu_si512(rec.add(64).cast()));
        }
        let v = _mm512_loadu_si512(rec.cast());
        let m = _mm512_set1_epi8(0x0F);
        let lo = _mm512_and_si512(v, m);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m);
        (add_planes::<BITS>(lo, rec.add(64), 2, 0), add_planes::<BITS>(hi, rec.add(64), 2, 1))
    }
}

/// The single level vector of a half group record.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn unpack_half<const BITS: u32>(rec: *const u8) -> __m512i {
    // SAFETY: a half record holds 32 (or 64 for 8-bit) quant bytes, then planes.
    unsafe {
        if BITS == 8 {
            return _mm512_loadu_si512(rec.cast());
        }
        let v = _mm256_loadu_si256(rec.cast());
        let m = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(v, m);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m);
        let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        add_planes::<BITS>(both, rec.add(32), 1, 0)
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn neg_shl<const SHIFT: u32>(v: __m512i) -> __m512i {
    if SHIFT == 0 {
        _mm512_setzero_si512()
    } else {
        _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_sllv_epi32(v, _mm512_set1_epi32(SHIFT as i32)))
    }
}

/// Horizontal sum; the portable kernel's `hsum` follows the same tree.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn hsum(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
}

/// Geometry of one packed matrix for the kernel.
#[derive(Clone, Copy)]
pub struct Geometry {
    pub row_stride: usize,
    pub full_groups: usize,
    pub has_half: bool,
    /// Record sizes and offsets (planes, scales, mins) for full and half groups.
    pub full: super::packed::RecordLayout,
    pub half: super::packed::RecordLayout,
    pub act_stride: usize,
}

/// `out[r][c] = row r · token c` for `R` consecutive rows starting at `w` and
/// `C` consecutive tokens starting at `a`.
///
/// # Safety
/// `w` must point at `R` packed rows of the geometry `g` (stride `g.row_stride`),
/// `a` at `C` token records of stride `g.act_stride`, for a format matching
/// the const parameters, and the CPU must support the enabled features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
pub unsafe fn tile<const BITS: u32, const F32S: bool, const PER16: bool, const SHIFT: u32, const FMIN: bool, const R: usize, const C: usize>(
    g: &Geometry,
    w: *const u8,
    a: *const u8,
    out: &mut [[f32; C]; R],
) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let (p32, p16lo, p16hi) = (pattern(&FULL_PER32), pattern(&FULL_PER16_LO), pattern(&FULL_PER16_HI));
    let nscales = if PER16 { 8 } else { 4 };
    for grp in 0..g.full_groups {
        let mut wlo = [_mm512_setzero_si512(); R];
        let mut whi = [_mm512_setzero_si512(); R];
        let mut wsl = [_mm512_setzero_ps(); R];
        let mut wsh = [_mm512_setzero_ps(); R];
        let mut wm = [_mm512_setzero_ps(); R];
        for r in 0..R {
            // SAFETY: row r's record `grp` lies inside the packed matrix.
            unsafe {
                let rec = w.add(r * g.row_stride + grp * g.full.total);
                (wlo[r], whi[r]) = unpack_full::<BITS>(rec);
                if PER16 {
                    wsl[r] = scales::<F32S>(rec.add(g.full.scales), nscales, p16lo);
                    wsh[r] = scales::<F32S>(rec.add(g.full.scales), nscales, p16hi);
                } else {
                    wsl[r] = scales::<F32S>(rec.add(g.full.scales), nscales, p32);
                }
                if FMIN {
                    wm[r] = scales::<F32S>(rec.add(g.full.mins), 4, p32);
                }
            }
        }
        for c in 0..C {
            // SAFETY: token c's record `grp` lies inside the activations.
            let (xlo, xhi, dx, xs_lo, xs_hi, sx) = unsafe {
                let x = a.add(c * g.act_stride + grp * RECORD);
                (
                    _mm512_loadu_si512(x.cast()),
                    _mm512_loadu_si512(x.add(64).cast()),
                    _mm512_loadu_ps(x.add(128).cast()),
                    _mm512_loadu_si512(x.add(192).cast()),
                    _mm512_loadu_si512(x.add(256).cast()),
                    _mm512_loadu_ps(x.add(320).cast()),
                )
            };
            if !PER16 {
                let xs = _mm512_add_epi32(xs_lo, xs_hi);
                let init = neg_shl::<SHIFT>(xs);
                for r in 0..R {
                    let isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, wlo[r], xlo), whi[r], xhi);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wsl[r], dx), acc[r][c]);
                    if FMIN {
                        acc[r][c] = _mm512_fmadd_ps(wm[r], sx, acc[r][c]);
                    }
                }
            } else {
                let (init_lo, init_hi) = (neg_shl::<SHIFT>(xs_lo), neg_shl::<SHIFT>(xs_hi));
                for r in 0..R {
                    let isl = _mm512_dpbusd_epi32(init_lo, wlo[r], xlo);
                    let ish = _mm512_dpbusd_epi32(init_hi, whi[r], xhi);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isl), _mm512_mul_ps(wsl[r], dx), acc[r][c]);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ish), _mm512_mul_ps(wsh[r], dx), acc[r][c]);
                }
                if FMIN {
                    for r in 0..R {
                        acc[r][c] = _mm512_fmadd_ps(wm[r], sx, acc[r][c]);
                    }
                }
            }
        }
    }
    if g.has_half {
        let (ph32, ph16) = (pattern(&HALF_PER32), pattern(&HALF_PER16));
        let grp = g.full_groups;
        let mut wv = [_mm512_setzero_si512(); R];
        let mut ws = [_mm512_setzero_ps(); R];
        let mut wm = [_mm512_setzero_ps(); R];
        for r in 0..R {
            // SAFETY: the half record follows the full ones in row r.
            unsafe {
                let rec = w.add(r * g.row_stride + grp * g.full.total);
                wv[r] = unpack_half::<BITS>(rec);
                ws[r] = if PER16 { scales::<F32S>(rec.add(g.half.scales), 4, ph16) } else { scales::<F32S>(rec.add(g.half.scales), 2, ph32) };
                if FMIN {
                    wm[r] = scales::<F32S>(rec.add(g.half.mins), 2, ph32);
                }
            }
        }
        for c in 0..C {
            // SAFETY: token c's half record.
            let (xv, dx, xs, sx) = unsafe {
                let x = a.add(c * g.act_stride + grp * RECORD);
                (
                    _mm512_loadu_si512(x.cast()),
                    _mm512_loadu_ps(x.add(128).cast()),
                    _mm512_loadu_si512(x.add(192).cast()),
                    _mm512_loadu_ps(x.add(320).cast()),
                )
            };
            let init = neg_shl::<SHIFT>(xs);
            for r in 0..R {
                let isum = _mm512_dpbusd_epi32(init, wv[r], xv);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(ws[r], dx), acc[r][c]);
                if FMIN {
                    acc[r][c] = _mm512_fmadd_ps(wm[r], sx, acc[r][c]);
                }
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            out[r][c] = hsum(acc[r][c]);
        }
    }
}
