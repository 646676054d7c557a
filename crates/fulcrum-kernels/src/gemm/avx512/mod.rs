//! The AVX-512 VNNI kernels over packed weights: the arithmetic of
//! `portable.rs`, bit for bit.
//!
//! Q4_0…Q8_0 (`tile16`, the loops of `group_lanes.rs`): a register holds
//! one 4-weight slice of a group's 16 rows. Per 32-weight block the 8 slices
//! are unpacked once (nibble mask and shift, bit planes added with masked
//! byte adds) and used for all `C` tokens of the tile; per token, 8
//! `vpdpbusd` against the token's 4 activations of each slice broadcast to
//! every lane leave 16 exact integer block sums, then one conversion, one
//! scale product and one or two fused multiply-adds finish the block for
//! all 16 outputs. The outputs of a token are 16 consecutive floats of `y`:
//! stored directly.
//!
//! Q4_K/Q5_K in 16-row groups (`tile16_super`, also `group_lanes.rs`'s
//! loops): `tile16`'s unpacking and `vpdpbusd`s per block, then the block
//! sums times the block's integer scale (`vpmulld`) into a per-row
//! super-block sum, and the integer min times the token's block sum into
//! another; one float step each per super-block. Five times the pair
//! kernel's rate on 64 tokens.
//!
//! The kernels of four-row groups (llama.cpp's order and the K-quant
//! pairs) are in `pairs.rs`.

#![allow(clippy::too_many_arguments)]

mod pairs;

use std::arch::x86_64::*;

use super::activations::AT_SUM;
use super::group_lanes::{self, GroupLanes, Super16Lanes};
use super::layout::SuperOrder;
use super::tiles::{Geometry, TileKernels};

/// Bytes ahead of the current record to prefetch: weights stream from memory
/// once per step, and the hardware prefetcher alone leaves the kernel waiting.
pub(super) const PREFETCH_AHEAD: usize = 4096;

/// Asks for the record `PREFETCH_AHEAD` bytes past `rec`, every line of it:
/// weights stream from memory once per step, and the hardware prefetcher
/// alone leaves the kernel waiting.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
fn prefetch_ahead(rec: *const u8, total: usize) {
    let mut line = 0;
    while line < total {
        // A prefetch (a hint) tolerates any address.
        _mm_prefetch::<_MM_HINT_T0>(rec.wrapping_add(PREFETCH_AHEAD + line).cast());
        line += 64;
    }
}

/// The 8 slices of a 16-row group record's levels (see `layout.rs`): slice
/// `j` holds weights `4j..4j+4` of all 16 rows, 4/5-bit levels from the
/// nibbles of the 4 quant chunks plus the bit plane, 8-bit ones as stored.
///
/// # Safety
/// `rec` points at a group record with its bit planes at `planes_at`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
unsafe fn group16_slices<const BITS: u32>(rec: *const u8, planes_at: usize) -> [__m512i; 8] {
    let mut wv = [_mm512_setzero_si512(); 8];
    // SAFETY (block): the caller's contract.
    unsafe {
        if BITS == 8 {
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(rec.add(64 * j).cast());
            }
            return wv;
        }
        let nib = _mm512_set1_epi8(0x0F);
        for j in 0..4 {
            let v = _mm512_loadu_si512(rec.add(64 * j).cast());
            wv[j] = _mm512_and_si512(v, nib);
            wv[j + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
        }
        if BITS == 5 {
            for (j, v) in wv.iter_mut().enumerate() {
                let k = rec.add(planes_at + 8 * j).cast::<u64>().read_unaligned();
                *v = _mm512_mask_add_epi8(*v, k, *v, _mm512_set1_epi8(0x10));
            }
        }
    }
    wv
}

/// The AVX-512 VNNI kernel set; a value is proof that the CPU supports it.
#[derive(Clone, Copy)]
pub struct Avx512(());

impl Avx512 {
    /// # Safety
    /// The CPU supports AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA and F16C.
    #[inline(always)]
    unsafe fn assume_supported() -> Avx512 {
        Avx512(())
    }
}

// SAFETY (every `unsafe` block of the two impls below that only calls
// intrinsics): a value of `Avx512` exists only on CPUs with its features
// (`Avx512::assume_supported`).

/// A whole 16-row group per register.
impl GroupLanes for Avx512 {
    type Slice = __m512i;
    type Ints = __m512i;
    type Floats = __m512;
    type RowMask = __mmask16;

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
        _part: usize,
    ) -> [__m512i; 8] {
        // SAFETY: the caller's record; see above.
        unsafe { group16_slices::<BITS>(rec, planes_at) }
    }

    /// Few tokens: two dependency chains keep the multiplier busy.
    #[inline(always)]
    unsafe fn block_sums<const BITS: u32, const SHIFT: u32, const C: usize>(
        self,
        wv: &[__m512i; 8],
        xr: *const u8,
    ) -> __m512i {
        // SAFETY: the caller's record; see above.
        unsafe {
            let x = |j: usize| _mm512_set1_epi32(xr.add(4 * j).cast::<i32>().read_unaligned());
            let init = if SHIFT > 0 {
                _mm512_set1_epi32(
                    (xr.add(AT_SUM).cast::<i32>().read_unaligned() << SHIFT).wrapping_neg(),
                )
            } else {
                _mm512_setzero_si512()
            };
            if C < 4 {
                let mut i0 = init;
                let mut i1 = _mm512_setzero_si512();
                for j in 0..4 {
                    i0 = _mm512_dpbusd_epi32(i0, wv[j], x(j));
                    i1 = _mm512_dpbusd_epi32(i1, wv[j + 4], x(j + 4));
                }
                _mm512_add_epi32(i0, i1)
            } else {
                let mut i0 = init;
                for (j, &wj) in wv.iter().enumerate() {
                    i0 = _mm512_dpbusd_epi32(i0, wj, x(j));
                }
                i0
            }
        }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u8) -> __m512 {
        // SAFETY: the caller's 16 f16; see above.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_set1_ps(x) }
    }

    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_mul_ps(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn to_floats(self, v: __m512i) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_cvtepi32_ps(v) }
    }

    #[inline(always)]
    fn row_mask(self, bits: u32) -> __mmask16 {
        bits as __mmask16
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, mask: __mmask16, v: __m512) {
        // SAFETY: the caller's room; see above.
        unsafe { _mm512_mask_storeu_ps(p, mask, v) }
    }
}

impl Super16Lanes for Avx512 {
    /// Two dependency chains, whatever the tile's width.
    #[inline(always)]
    unsafe fn level_sums<const BITS: u32>(self, wv: &[__m512i; 8], xr: *const u8) -> __m512i {
        // SAFETY: the caller's record; see above.
        unsafe {
            let x = |j: usize| _mm512_set1_epi32(xr.add(4 * j).cast::<i32>().read_unaligned());
            let mut i0 = _mm512_setzero_si512();
            let mut i1 = _mm512_setzero_si512();
            for j in 0..4 {
                i0 = _mm512_dpbusd_epi32(i0, wv[j], x(j));
                i1 = _mm512_dpbusd_epi32(i1, wv[j + 4], x(j + 4));
            }
            _mm512_add_epi32(i0, i1)
        }
    }

    #[inline(always)]
    unsafe fn load_u8(self, p: *const u8) -> __m512i {
        // SAFETY: the caller's 16 bytes; see above.
        unsafe { _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast())) }
    }

    #[inline(always)]
    fn splat_int(self, x: i32) -> __m512i {
        // SAFETY: see above.
        unsafe { _mm512_set1_epi32(x) }
    }

    #[inline(always)]
    fn add_ints(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see above.
        unsafe { _mm512_add_epi32(a, b) }
    }

    #[inline(always)]
    fn mul_ints(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: see above.
        unsafe { _mm512_mullo_epi32(a, b) }
    }

    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: see above.
        unsafe { _mm512_sub_ps(a, b) }
    }
}

/// The entry points: `group_lanes.rs`'s loops compiled for AVX-512, and
/// the pair kernels.
impl TileKernels for Avx512 {
    const MAX_TOKENS: usize = 8;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
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
        // (`TileKernels`' contract); a register holds the whole group.
        unsafe {
            group_lanes::tile16::<_, 1, BITS, SHIFT, FMIN, C>(
                Avx512::assume_supported(),
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

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
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
            group_lanes::tile16_super::<_, 1, BITS, C>(
                Avx512::assume_supported(),
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

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
    unsafe fn tile_lanes8<const BITS: u32, const SHIFT: u32, const FMIN: bool, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        s: *const f32,
        tok0: usize,
        out: &mut [[f32; C]; 8],
    ) {
        // SAFETY: the same contract.
        unsafe { pairs::tile_lanes8::<BITS, SHIFT, FMIN, C>(g, w, a, s, tok0, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
    unsafe fn tile_super<const BITS: u32, const KIND: u32, const P: usize, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        order: SuperOrder,
        out: &mut [[f32; C]; 8],
    ) {
        // SAFETY: the same contract.
        unsafe { pairs::tile_super::<BITS, KIND, P, C>(g, w, a, order, out) }
    }
}
