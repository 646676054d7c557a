//! The aarch64 NEON kernels (with the dot-product extension) over packed
//! weights: the arithmetic of `portable.rs`, bit for bit.
//!
//! `sdot` sums each 4 consecutive signed byte products into an i32 lane, the
//! same 4-weight sums `vpdpbusd` gives on x86. Levels below 64 are valid
//! signed bytes; 8-bit weights are flipped to their signed quant (level −
//! 128), which drops the offset correction without changing the integer.
//! Every integer block sum is therefore the one the portable kernel
//! computes, and the float steps that follow are its, in its order.
//! (`vdotq_s32` is not yet stable in Rust; `sdot` is issued with `asm!`.)
//!
//! The kernels' loops are `group_lanes.rs`'s and `row_lanes.rs`'s; this
//! file holds the vector operations they run on:
//! - `tile16` (Q4_0…Q8_0, fast order, [`GroupLanes`]): a register holds one
//!   4-weight slice of 4 rows (a quarter of a 16-row group).
//! - `tile_lanes8` (llama.cpp's order) and `tile_super` (K-quants)
//!   ([`RowLanes`]): two registers hold one row's 32 levels; two `sdot` per
//!   token give the 8 lane sums of llama.cpp's kernels directly.
//!
//! Q4_K/Q5_K keep their pair records here (no `tile16_super`).

#![allow(clippy::too_many_arguments)]

use std::arch::aarch64::*;

use super::activations::{AT_LANE_SUMS, AT_SUM};
use super::group_lanes::{self, GroupLanes};
use super::layout::SuperOrder;
use super::raw::{read_f16, read_i32, read_u16};
use super::row_lanes::{self, RowLanes};
use super::tiles::{Geometry, TileKernels};

/// `acc + Σ of each 4 consecutive a·b` (signed bytes).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    // SAFETY: `sdot` only reads and writes the named vector registers; the
    // enclosing function requires the dot-product extension.
    unsafe {
        std::arch::asm!(
            "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
            inout(vreg) r,
            in(vreg) a,
            in(vreg) b,
            options(pure, nomem, nostack)
        );
    }
    r
}

/// 0x10 (or `value`) in byte `i` where bit `i` of the 16-bit `m` is set.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn plane_bytes(m: u16, value: u8) -> uint8x16_t {
    let bytes = vcombine_u8(vdup_n_u8(m as u8), vdup_n_u8((m >> 8) as u8));
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    vandq_u8(vtstq_u8(bytes, bit), vdupq_n_u8(value))
}

/// 16 bytes of nibbles → levels 0..16 (low nibbles) and 16..32 (high ones).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn nibbles32(p: *const u8) -> [uint8x16_t; 2] {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { vld1q_u8(p) };
    [vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v)]
}

/// llama.cpp's `hsum_float_8` of lanes `lo` = 0..4, `hi` = 4..8.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn hsum8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let r = vaddq_f32(hi, lo);
    (vgetq_lane_f32::<0>(r) + vgetq_lane_f32::<2>(r))
        + (vgetq_lane_f32::<1>(r) + vgetq_lane_f32::<3>(r))
}

/// Four f16 at `p` as f32 lanes. (Always inlined, as it was into the
/// kernels when they called it directly; NEON is part of every aarch64
/// target, so it needs no `target_feature` of its own.)
#[inline(always)]
unsafe fn f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: the caller guarantees 8 readable bytes; 4 floats.
    unsafe {
        let v = [
            read_f16(p),
            read_f16(p.add(2)),
            read_f16(p.add(4)),
            read_f16(p.add(6)),
        ];
        vld1q_f32(v.as_ptr())
    }
}

/// The NEON (dot-product) kernel set; a value is proof that the CPU
/// supports it.
#[derive(Clone, Copy)]
pub struct Neon(());

impl Neon {
    /// # Safety
    /// The CPU supports NEON and the dot-product extension.
    #[inline(always)]
    unsafe fn assume_supported() -> Neon {
        Neon(())
    }
}

// SAFETY (every `unsafe` block of the two impls below that only calls
// intrinsics): a value of `Neon` exists only on CPUs with NEON and the
// dot-product extension (`Neon::assume_supported`).

/// A quarter of a 16-row group per register.
impl GroupLanes for Neon {
    type Slice = int8x16_t;
    type Ints = int32x4_t;
    type Floats = float32x4_t;
    /// The rows' bits.
    type RowMask = u32;

    /// The hardware prefetcher suffices.
    #[inline(always)]
    fn prefetch_record(self, _rec: *const u8, _total: usize) {}

    /// Quarter `part`: rows 4·part..4·part+4, bytes 16·part..16·part+16 of
    /// every 64-byte slice.
    #[inline(always)]
    unsafe fn slices<const BITS: u32>(
        self,
        rec: *const u8,
        planes_at: usize,
        part: usize,
    ) -> [int8x16_t; 8] {
        // SAFETY: the caller's record; see above.
        unsafe {
            let mut wv = [vdupq_n_s8(0); 8];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = if BITS == 8 {
                    // Stored level = q + 128: flip to the signed q.
                    vreinterpretq_s8_u8(veorq_u8(
                        vld1q_u8(rec.add(64 * j + 16 * part)),
                        vdupq_n_u8(0x80),
                    ))
                } else {
                    let raw = vld1q_u8(rec.add(64 * (j % 4) + 16 * part));
                    let mut lv = if j < 4 {
                        vandq_u8(raw, vdupq_n_u8(0x0F))
                    } else {
                        vshrq_n_u8::<4>(raw)
                    };
                    if BITS == 5 {
                        let m = read_u16(rec.add(planes_at + 8 * j + 2 * part));
                        lv = vaddq_u8(lv, plane_bytes(m, 0x10));
                    }
                    vreinterpretq_s8_u8(lv)
                };
            }
            wv
        }
    }

    /// 8-bit weights are signed here: no offset to subtract.
    #[inline(always)]
    unsafe fn block_sums<const BITS: u32, const SHIFT: u32, const C: usize>(
        self,
        wv: &[int8x16_t; 8],
        xr: *const u8,
    ) -> int32x4_t {
        // SAFETY: the caller's record; see above.
        unsafe {
            let mut isum = if SHIFT > 0 && BITS != 8 {
                vdupq_n_s32((read_i32(xr.add(AT_SUM)) << SHIFT).wrapping_neg())
            } else {
                vdupq_n_s32(0)
            };
            for (j, &wj) in wv.iter().enumerate() {
                let x = vreinterpretq_s8_s32(vdupq_n_s32(read_i32(xr.add(4 * j))));
                isum = sdot(isum, wj, x);
            }
            isum
        }
    }

    #[inline(always)]
    unsafe fn load_f16(self, p: *const u8) -> float32x4_t {
        // SAFETY: the caller's 4 f16; see above.
        unsafe { f16x4(p) }
    }

    #[inline(always)]
    fn splat(self, x: f32) -> float32x4_t {
        // SAFETY: see above.
        unsafe { vdupq_n_f32(x) }
    }

    #[inline(always)]
    fn mul(self, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // SAFETY: see above.
        unsafe { vmulq_f32(a, b) }
    }

    #[inline(always)]
    fn mul_add(self, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // SAFETY: see above.
        unsafe { vfmaq_f32(c, a, b) }
    }

    #[inline(always)]
    fn to_floats(self, v: int32x4_t) -> float32x4_t {
        // SAFETY: see above.
        unsafe { vcvtq_f32_s32(v) }
    }

    #[inline(always)]
    fn row_mask(self, bits: u32) -> u32 {
        bits
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32, mask: u32, v: float32x4_t) {
        let mut lanes = [0f32; 4];
        // SAFETY: 4 floats; see above.
        unsafe { vst1q_f32(lanes.as_mut_ptr(), v) };
        for (i, &x) in lanes.iter().enumerate() {
            if mask >> i & 1 == 1 {
                // SAFETY: the caller's room for the selected rows.
                unsafe { *p.add(i) = x };
            }
        }
    }
}

/// One row's 8 lanes in two registers.
impl RowLanes for Neon {
    type Levels = [uint8x16_t; 2];
    type Ints = [int32x4_t; 2];
    type Floats = [float32x4_t; 2];
    type Scales = [i32; 2];

    /// The hardware prefetcher suffices.
    #[inline(always)]
    fn prefetch_line(self, _rec: *const u8) {}

    #[inline(always)]
    unsafe fn nibbles(self, p: *const u8) -> [uint8x16_t; 2] {
        // SAFETY: the caller's 16 bytes; see above.
        unsafe { nibbles32(p) }
    }

    #[inline(always)]
    fn add_plane(self, lv: [uint8x16_t; 2], plane: u32, value: u8) -> [uint8x16_t; 2] {
        // SAFETY: see above.
        unsafe {
            [
                vaddq_u8(lv[0], plane_bytes(plane as u16, value)),
                vaddq_u8(lv[1], plane_bytes((plane >> 16) as u16, value)),
            ]
        }
    }

    #[inline(always)]
    unsafe fn signed_levels(self, lo: *const u8, hi: *const u8) -> [uint8x16_t; 2] {
        // SAFETY: the caller's 16 + 16 bytes; see above.
        unsafe { [vld1q_u8(lo), vld1q_u8(hi)] }
    }

    #[inline(always)]
    unsafe fn lane_sums<const BITS: u32, const SHIFT: u32>(
        self,
        lv: [uint8x16_t; 2],
        xr: *const u8,
    ) -> [int32x4_t; 2] {
        // SAFETY: the caller's record; see above.
        unsafe {
            let x = [vld1q_s8(xr.cast()), vld1q_s8(xr.add(16).cast())];
            std::array::from_fn(|h| {
                let init = if SHIFT > 0 && BITS != 8 {
                    let ls = vld1q_s32(xr.add(AT_LANE_SUMS + 16 * h).cast());
                    vnegq_s32(vshlq_s32(ls, vdupq_n_s32(SHIFT as i32)))
                } else {
                    vdupq_n_s32(0)
                };
                sdot(init, vreinterpretq_s8_u8(lv[h]), x[h])
            })
        }
    }

    #[inline(always)]
    unsafe fn level_sums(self, lv: [uint8x16_t; 2], xr: *const u8) -> [int32x4_t; 2] {
        // SAFETY: the caller's 32 bytes; see above.
        unsafe {
            let x = [vld1q_s8(xr.cast()), vld1q_s8(xr.add(16).cast())];
            std::array::from_fn(|h| sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(lv[h]), x[h]))
        }
    }

    #[inline(always)]
    fn splat_scale(self, s: i32) -> [i32; 2] {
        [s, s]
    }

    #[inline(always)]
    fn half_scales(self, lo: i32, hi: i32) -> [i32; 2] {
        [lo, hi]
    }

    #[inline(always)]
    fn add_scaled(self, acc: [int32x4_t; 2], v: [int32x4_t; 2], sc: [i32; 2]) -> [int32x4_t; 2] {
        // SAFETY: see above.
        unsafe { std::array::from_fn(|h| vmlaq_n_s32(acc[h], v[h], sc[h])) }
    }

    #[inline(always)]
    fn sub_ints(self, a: [int32x4_t; 2], b: [int32x4_t; 2]) -> [int32x4_t; 2] {
        // SAFETY: see above.
        unsafe { std::array::from_fn(|h| vsubq_s32(a[h], b[h])) }
    }

    #[inline(always)]
    fn sum_ints(self, v: [int32x4_t; 2]) -> i32 {
        // SAFETY: see above.
        unsafe { vaddvq_s32(vaddq_s32(v[0], v[1])) }
    }

    #[inline(always)]
    fn load_ints(self, v: &[i32; 8]) -> [int32x4_t; 2] {
        // SAFETY: 8 i32s; see above.
        unsafe { [vld1q_s32(v.as_ptr()), vld1q_s32(v.as_ptr().add(4))] }
    }

    #[inline(always)]
    fn zero_ints(self) -> [int32x4_t; 2] {
        // SAFETY: see above.
        unsafe { [vdupq_n_s32(0); 2] }
    }

    #[inline(always)]
    fn zero_floats(self) -> [float32x4_t; 2] {
        // SAFETY: see above.
        unsafe { [vdupq_n_f32(0.0); 2] }
    }

    #[inline(always)]
    fn mul_add_splat(self, acc: [float32x4_t; 2], x: f32, v: [int32x4_t; 2]) -> [float32x4_t; 2] {
        // SAFETY: see above.
        unsafe {
            let scale = vdupq_n_f32(x);
            std::array::from_fn(|h| vfmaq_f32(acc[h], scale, vcvtq_f32_s32(v[h])))
        }
    }

    #[inline(always)]
    fn hsum(self, v: [float32x4_t; 2]) -> f32 {
        // SAFETY: see above.
        unsafe { hsum8(v[0], v[1]) }
    }
}

/// The entry points: `group_lanes.rs`'s and `row_lanes.rs`'s loops compiled
/// for NEON.
impl TileKernels for Neon {
    const MAX_TOKENS: usize = 4;

    #[target_feature(enable = "neon,dotprod")]
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
        // (`TileKernels`' contract); a register holds a quarter group.
        unsafe {
            group_lanes::tile16::<_, 4, BITS, SHIFT, FMIN, C>(
                Neon::assume_supported(),
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

    #[target_feature(enable = "neon,dotprod")]
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
                Neon::assume_supported(),
                g,
                w,
                a,
                s,
                tok0,
                out,
            )
        }
    }

    #[target_feature(enable = "neon,dotprod")]
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
                Neon::assume_supported(),
                g,
                w,
                a,
                order,
                out,
            )
        }
    }
}
