//! The AVX-512 VNNI kernel over packed weights: the arithmetic of
//! `portable.rs`, two weight rows per register.
//!
//! A register holds the 8 lanes of two outputs (rows A and B of a pair, same
//! token). Per 32-weight block, the pair's levels are unpacked once (nibble
//! mask and shift, bit planes added with masked byte adds) and used for all
//! `C` tokens of the tile; each token's 32 activation bytes are loaded once,
//! broadcast to both halves, and used for all `P` pairs. Per (pair, token,
//! block): one `vpdpbusd` (u8 levels × i8 activations, starting from the
//! offset correction), one conversion, one scale product and one fused
//! multiply-add — the order llama.cpp's kernels use, so results match them.

#![allow(clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::activations::RECORD;
use super::packed::RecordLayout;

/// Geometry of one packed matrix for the kernel.
#[derive(Clone, Copy)]
pub struct Geometry {
    pub pair_stride: usize,
    pub blocks: usize,
    pub rec: RecordLayout,
    pub act_stride: usize,
    /// Tokens in the activation buffer (stride of the `s` array).
    pub m: usize,
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
        let mut v = _mm512_and_si512(_mm512_mask_blend_epi64(0b1100_1100, t, u), _mm512_set1_epi8(0x0F));
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

/// Scales spread over lanes: per 32 weights [A×8 | B×8], per 16 [Alo×4, Ahi×4, Blo×4, Bhi×4].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn scales<const F32S: bool, const PER16: bool>(at: *const u8) -> __m512 {
    // SAFETY (block): the record holds 2 (4 per-16) scales at `at`.
    unsafe {
        let v = match (F32S, PER16) {
            (true, true) => _mm_loadu_ps(at.cast()),
            (true, false) => _mm_castpd_ps(_mm_load_sd(at.cast())),
            (false, true) => _mm_cvtph_ps(_mm_loadl_epi64(at.cast())),
            (false, false) => _mm_cvtph_ps(_mm_cvtsi32_si128(at.cast::<i32>().read_unaligned())),
        };
        let idx = if PER16 {
            _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
        } else {
            _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
        };
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn min_of<const F32S: bool>(at: *const u8, ri: usize) -> f32 {
    // SAFETY: the record holds 2 mins at `at`.
    unsafe {
        if F32S {
            at.add(4 * ri).cast::<f32>().read_unaligned()
        } else {
            half::f16::from_bits(at.add(2 * ri).cast::<u16>().read_unaligned()).to_f32()
        }
    }
}

/// `llama.cpp`'s `hsum_float_8` of one 256-bit half.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn hsum8(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// `out[2p + i][c]` = row (2·pair0 + 2p + i) · token (tok0 + c), for `P` pairs
/// starting at `w` and `C` tokens starting at `a` (token index `tok0`).
///
/// # Safety
/// `w` must point at `P` packed pairs of geometry `g`, `a` at `C` token
/// records, `s` at the activations' `s` array, for a format matching the const
/// parameters, and the CPU must support the enabled features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
pub unsafe fn tile<const BITS: u32, const F32S: bool, const PER16: bool, const SHIFT: u32, const FMIN: bool, const P: usize, const C: usize>(
    g: &Geometry,
    w: *const u8,
    a: *const u8,
    s: *const f32,
    tok0: usize,
    out: &mut [[f32; C]; 8],
) {
    let mut acc = [[_mm512_setzero_ps(); C]; P];
    let mut summs = [_mm256_setzero_ps(); 8]; // per row (2P), lanes = tokens
    let cmask: __mmask8 = if C >= 8 { 0xFF } else { (1u8 << C) - 1 };
    for b in 0..g.blocks {
        let mut wv = [_mm512_setzero_si512(); P];
        let mut ws = [_mm512_setzero_ps(); P];
        for p in 0..P {
            // SAFETY: pair p's record b lies inside the packed matrix.
            unsafe {
                let rec = w.add(p * g.pair_stride + b * g.rec.total);
                wv[p] = unpack::<BITS>(rec, g.rec.planes);
                ws[p] = scales::<F32S, PER16>(rec.add(g.rec.scales));
            }
        }
        for c in 0..C {
            // SAFETY: token c's record b lies inside the activations.
            let (x, init, dx) = unsafe {
                let rec = a.add(c * g.act_stride + b * RECORD);
                let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(rec.cast()));
                let init = if SHIFT == 0 {
                    _mm512_setzero_si512()
                } else {
                    let ls = _mm512_broadcast_i64x4(_mm256_loadu_si256(rec.add(32).cast()));
                    _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_sllv_epi32(ls, _mm512_set1_epi32(SHIFT as i32)))
                };
                (x, init, _mm512_set1_ps(rec.add(64).cast::<f32>().read_unaligned()))
            };
            for p in 0..P {
                let isum = _mm512_dpbusd_epi32(init, wv[p], x);
                acc[p][c] = _mm512_fmadd_ps(_mm512_mul_ps(ws[p], dx), _mm512_cvtepi32_ps(isum), acc[p][c]);
            }
        }
        if FMIN {
            // SAFETY: the s array holds `m` values per block; lanes past C are masked.
            let sv = unsafe { _mm256_maskz_loadu_ps(cmask, s.add(b * g.m + tok0)) };
            for p in 0..P {
                for ri in 0..2 {
                    // SAFETY: pair p's record b holds two mins.
                    let m = unsafe { min_of::<F32S>(w.add(p * g.pair_stride + b * g.rec.total + g.rec.mins), ri) };
                    summs[2 * p + ri] = _mm256_fmadd_ps(_mm256_set1_ps(m), sv, summs[2 * p + ri]);
                }
            }
        }
    }
    for p in 0..P {
        let mut sm = [[0f32; 8]; 2];
        if FMIN {
            for (ri, row) in sm.iter_mut().enumerate() {
                // SAFETY: 8 floats.
                unsafe { _mm256_storeu_ps(row.as_mut_ptr(), summs[2 * p + ri]) };
            }
        }
        for c in 0..C {
            let v = acc[p][c];
            out[2 * p][c] = hsum8(_mm512_castps512_ps256(v)) + sm[0][c];
            out[2 * p + 1][c] = hsum8(_mm512_extractf32x8_ps::<1>(v)) + sm[1][c];
        }
    }
}
