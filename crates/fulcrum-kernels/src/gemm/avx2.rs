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
//! The kernels' loops are `group_lanes.rs`'s and `row_lanes.rs`'s; this
//! file holds the vector operations they run on:
//! - `tile16` and `tile16_super` (16-row groups, [`GroupLanes`]): a register
//!   holds one 4-weight slice of 8 rows (half a group); per block and token,
//!   8 dot products leave 8 rows' exact block sums.
//! - `tile_lanes8` (Q4_0…Q8_0, llama.cpp's order) and `tile_super`
//!   (K-quants) ([`RowLanes`]): a register holds one row's 32 levels; one
//!   dot product per token gives the 8 lane sums of llama.cpp's kernels
//!   directly.

#![allow(clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::activations::{AT_LANE_SUMS, AT_SUM};
use super::group_lanes::{self, GroupLanes, Super16Lanes};
use super::layout::SuperOrder;
use super::raw::{read_i32, read_u32};
use super::row_lanes::{self, RowLanes};
use super::tiles::{Geometry, TileKernels};

/// Bytes ahead of the current record to prefetch (see `avx512/mod.rs`).
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

/// The AVX2 + FMA kernel set; a value is proof that the CPU supports it.
#[derive(Clone, Copy)]
pub struct Avx2(());

impl Avx2 {
    /// # Safety
    /// The CPU supports AVX2, FMA and F16C.
    #[inline(always)]
    unsafe fn assume_supported() -> Avx2 {
        Avx2(())
    }
}

// SAFETY (every `unsafe` block of the three impls below that only calls
// intrinsics): a value of `Avx2` exists only on CPUs with AVX2, FMA and
// F16C (`Avx2::assume_supported`).

/// Half a 16-row group per register.
impl GroupLanes for Avx2 {
    type Slice = __m256i;
    type Ints = __m256i;
    type Floats = __m256;
    type RowMask = __m256i;

    #[inline(always)]
    fn prefetch_record(self, rec: *const u8, total: usize) {
        // SAFETY: see above.
        unsafe { prefetch_ahead(rec, total) }
    }

    #[inline(always)]
    unsafe fn slices<const BITS: u32>(
        self,
        rec: *const u8,
        planes_at: usize,
        part: usize,
    ) -> [__m256i; 8] {
        // SAFETY: the caller's record; see above.
        unsafe { group16_half_slices::<BITS>(rec, planes_at, part) }
    }

    /// 8-bit weights are signed here: no offset to subtract.
    #[inline(always)]
    unsafe fn block_sums<const BITS: u32, const SHIFT: u32, const C: usize>(
        self,
        wv: &[__m256i; 8],
        xr: *const u8,
    ) -> __m256i {
        // SAFETY: the caller's record; see above.
        unsafe {
            let x = |j: usize| _mm256_set1_epi32(read_i32(xr.add(4 * j)));
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
            isum
        }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u8) -> __m256 {
        // SAFETY: the caller's 8 f16; see above.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_set1_ps(x) }
    }

    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_mul_ps(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn to_floats(self, v: __m256i) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_cvtepi32_ps(v) }
    }

    #[inline(always)]
    fn row_mask(self, bits: u32) -> __m256i {
        // SAFETY: see above.
        unsafe {
            let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits as i32), bit), bit)
        }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, mask: __m256i, v: __m256) {
        // SAFETY: the caller's room; see above.
        unsafe { _mm256_maskstore_ps(p, mask, v) }
    }
}

impl Super16Lanes for Avx2 {
    #[inline(always)]
    unsafe fn level_sums<const BITS: u32>(self, wv: &[__m256i; 8], xr: *const u8) -> __m256i {
        // SAFETY: the caller's record; see above.
        unsafe {
            let x = |j: usize| _mm256_set1_epi32(read_i32(xr.add(4 * j)));
            let mut q = _mm256_setzero_si256();
            for (j, &wj) in wv.iter().enumerate() {
                q = _mm256_add_epi32(q, dot4(wj, x(j)));
            }
            q
        }
    }

    #[inline(always)]
    unsafe fn load_u8(self, p: *const u8) -> __m256i {
        // SAFETY: the caller's 8 bytes; see above.
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast())) }
    }

    #[inline(always)]
    fn splat_int(self, x: i32) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_set1_epi32(x) }
    }

    #[inline(always)]
    fn add_ints(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_add_epi32(a, b) }
    }

    #[inline(always)]
    fn mul_ints(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_mullo_epi32(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_sub_ps(a, b) }
    }
}

/// One row's 8 lanes per register.
impl RowLanes for Avx2 {
    type Levels = __m256i;
    type Ints = __m256i;
    type Floats = __m256;
    type Scales = __m256i;

    #[inline(always)]
    fn prefetch_line(self, rec: *const u8) {
        // SAFETY: see above; a prefetch (a hint) tolerates any address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(rec.wrapping_add(PREFETCH_AHEAD).cast()) }
    }

    #[inline(always)]
    unsafe fn nibbles(self, p: *const u8) -> __m256i {
        // SAFETY: the caller's 16 bytes; see above.
        unsafe { nibbles32(p) }
    }

    #[inline(always)]
    fn add_plane(self, lv: __m256i, plane: u32, value: u8) -> __m256i {
        // SAFETY: see above.
        unsafe { add_plane(lv, plane, value as i8) }
    }

    #[inline(always)]
    unsafe fn signed_levels(self, lo: *const u8, hi: *const u8) -> __m256i {
        // SAFETY: the caller's 16 + 16 bytes; see above.
        unsafe { _mm256_loadu2_m128i(hi.cast(), lo.cast()) }
    }

    #[inline(always)]
    unsafe fn lane_sums<const BITS: u32, const SHIFT: u32>(
        self,
        lv: __m256i,
        xr: *const u8,
    ) -> __m256i {
        // SAFETY: the caller's record; see above.
        unsafe {
            let x = _mm256_loadu_si256(xr.cast());
            if BITS == 8 {
                dot4_signed(lv, x)
            } else if SHIFT > 0 {
                let lane_sums = _mm256_loadu_si256(xr.add(AT_LANE_SUMS).cast());
                let shift = _mm_cvtsi32_si128(SHIFT as i32);
                _mm256_sub_epi32(dot4(lv, x), _mm256_sll_epi32(lane_sums, shift))
            } else {
                dot4(lv, x)
            }
        }
    }

    #[inline(always)]
    unsafe fn level_sums(self, lv: __m256i, xr: *const u8) -> __m256i {
        // SAFETY: the caller's 32 bytes; see above.
        unsafe { dot4(lv, _mm256_loadu_si256(xr.cast())) }
    }

    #[inline(always)]
    fn splat_scale(self, s: i32) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_set1_epi32(s) }
    }

    #[inline(always)]
    fn half_scales(self, lo: i32, hi: i32) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_setr_epi32(lo, lo, lo, lo, hi, hi, hi, hi) }
    }

    #[inline(always)]
    fn add_scaled(self, acc: __m256i, v: __m256i, sc: __m256i) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_add_epi32(acc, _mm256_mullo_epi32(v, sc)) }
    }

    #[inline(always)]
    fn sub_ints(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_sub_epi32(a, b) }
    }

    #[inline(always)]
    fn sum_ints(self, v: __m256i) -> i32 {
        // SAFETY: see above.
        unsafe { hsum_i32(v) }
    }

    #[inline(always)]
    fn load_ints(self, v: &[i32; 8]) -> __m256i {
        // SAFETY: 8 i32s; see above.
        unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
    }

    #[inline(always)]
    fn zero_ints(self) -> __m256i {
        // SAFETY: see above.
        unsafe { _mm256_setzero_si256() }
    }

    #[inline(always)]
    fn zero_floats(self) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_setzero_ps() }
    }

    #[inline(always)]
    fn mul_add_splat(self, acc: __m256, x: f32, v: __m256i) -> __m256 {
        // SAFETY: see above.
        unsafe { _mm256_fmadd_ps(_mm256_set1_ps(x), _mm256_cvtepi32_ps(v), acc) }
    }

    #[inline(always)]
    fn hsum(self, v: __m256) -> f32 {
        // SAFETY: see above.
        unsafe { hsum8(v) }
    }
}

/// The entry points: `group_lanes.rs`'s and `row_lanes.rs`'s loops compiled
/// for AVX2.
impl TileKernels for Avx2 {
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
        // SAFETY: the caller checked the CPU and vouches for the rest
        // (`TileKernels`' contract); a register holds half a group.
        unsafe {
            group_lanes::tile16::<_, 2, BITS, SHIFT, FMIN, C>(
                Avx2::assume_supported(),
                g,
                w,
                a,
                s,
                tok0,
                y,
                n,
                valid,
            )
        }
    }

    const SUPER16: bool = true;

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
        // SAFETY: as in `tile16`.
        unsafe {
            group_lanes::tile16_super::<_, 2, BITS, C>(
                Avx2::assume_supported(),
                g,
                w,
                a,
                tok0,
                y,
                n,
                valid,
            )
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
        // SAFETY: as in `tile16`.
        unsafe {
            row_lanes::tile_lanes8::<_, BITS, SHIFT, FMIN, C>(
                Avx2::assume_supported(),
                g,
                w,
                a,
                s,
                tok0,
                out,
            )
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
        // SAFETY: as in `tile16`.
        unsafe {
            row_lanes::tile_super::<_, BITS, KIND, P, C>(
                Avx2::assume_supported(),
                g,
                w,
                a,
                order,
                out,
            )
        }
    }
}
