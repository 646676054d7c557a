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
//! - `tile16` (Q4_0…Q8_0, fast order): a register holds one 4-weight slice
//!   of 4 rows (a quarter of a 16-row group).
//! - `tile_lanes8` (llama.cpp's order) and `tile_super` (K-quants): two
//!   registers hold one row's 32 levels; two `sdot` per token give the 8 lane
//!   sums of llama.cpp's kernels directly.

#![allow(clippy::too_many_arguments)]

use std::arch::aarch64::*;

use super::activations::{AT_D, AT_LANE_SUMS, AT_SUM, AT_SUM_HI, AT_SUM_LO};
use super::raw::{read_f16, read_f32, read_i32, read_u16};
use super::{Geometry, SuperOrder};

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

/// Four f16 at `p` as f32 lanes.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: the caller guarantees 8 readable bytes.
    let v: [f32; 4] = std::array::from_fn(|i| unsafe { read_f16(p.add(2 * i)) });
    // SAFETY: 4 floats.
    unsafe { vld1q_f32(v.as_ptr()) }
}

/// The row's 32 levels as signed bytes, from two 16-byte halves.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn signed(v: [uint8x16_t; 2]) -> [int8x16_t; 2] {
    [vreinterpretq_s8_u8(v[0]), vreinterpretq_s8_u8(v[1])]
}

/// The NEON (dot-product) kernel set.
pub struct Neon;

impl super::TileKernels for Neon {
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
        // acc[q][c]: rows 4q..4q+4 of token c.
        let mut acc = [[vdupq_n_f32(0.0); C]; 4];
        for b in 0..g.blocks {
            // SAFETY: record b of the group lies inside the packed matrix.
            let rec = unsafe { w.add(b * g.rec.total) };
            for (q, acc_q) in acc.iter_mut().enumerate() {
                // Quarter q: rows 4q..4q+4, bytes 16q..16q+16 of every 64-byte slice.
                // SAFETY: the record holds the slices, planes, scales and mins.
                let (wv, ws, mins) = unsafe {
                    let mut wv = [vdupq_n_s8(0); 8];
                    for (j, v) in wv.iter_mut().enumerate() {
                        *v = if BITS == 8 {
                            // Stored level = q + 128: flip to the signed q.
                            vreinterpretq_s8_u8(veorq_u8(
                                vld1q_u8(rec.add(64 * j + 16 * q)),
                                vdupq_n_u8(0x80),
                            ))
                        } else {
                            let raw = vld1q_u8(rec.add(64 * (j % 4) + 16 * q));
                            let mut lv = if j < 4 {
                                vandq_u8(raw, vdupq_n_u8(0x0F))
                            } else {
                                vshrq_n_u8::<4>(raw)
                            };
                            if BITS == 5 {
                                let m = read_u16(rec.add(g.rec.planes + 8 * j + 2 * q));
                                lv = vaddq_u8(lv, plane_bytes(m, 0x10));
                            }
                            vreinterpretq_s8_u8(lv)
                        };
                    }
                    let ws = f16x4(rec.add(g.rec.scales + 8 * q));
                    let mins = if FMIN {
                        f16x4(rec.add(g.rec.mins + 8 * q))
                    } else {
                        vdupq_n_f32(0.0)
                    };
                    (wv, ws, mins)
                };
                for (c, acc_c) in acc_q.iter_mut().enumerate() {
                    // SAFETY: token c's record b lies inside the activations, and
                    // its `s` inside the `s` array.
                    let (isum, dx, sx) = unsafe {
                        let xr = a.add(c * g.act_stride + b * g.act_rec);
                        // 8-bit weights are signed here: no offset to subtract.
                        let mut isum = if SHIFT > 0 && BITS != 8 {
                            vdupq_n_s32((read_i32(xr.add(AT_SUM)) << SHIFT).wrapping_neg())
                        } else {
                            vdupq_n_s32(0)
                        };
                        for (j, &wj) in wv.iter().enumerate() {
                            let x = vreinterpretq_s8_s32(vdupq_n_s32(read_i32(xr.add(4 * j))));
                            isum = sdot(isum, wj, x);
                        }
                        let sx = if FMIN {
                            *s.add(b * g.m + tok0 + c)
                        } else {
                            0.0
                        };
                        (isum, read_f32(xr.add(AT_D)), sx)
                    };
                    *acc_c = vfmaq_f32(*acc_c, vmulq_n_f32(ws, dx), vcvtq_f32_s32(isum));
                    if FMIN {
                        *acc_c = vfmaq_f32(*acc_c, mins, vdupq_n_f32(sx));
                    }
                }
            }
        }
        for (q, acc_q) in acc.iter().enumerate() {
            for (c, acc_c) in acc_q.iter().enumerate() {
                let mut v = [0f32; 4];
                // SAFETY: 4 floats.
                unsafe { vst1q_f32(v.as_mut_ptr(), *acc_c) };
                for (i, &vi) in v.iter().enumerate() {
                    let row = 4 * q + i;
                    if valid >> row & 1 == 1 {
                        // SAFETY: the caller guarantees room for the valid rows of C tokens.
                        unsafe { *y.add((tok0 + c) * n + row) = vi };
                    }
                }
            }
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
        // Lanes 0..4 and 4..8 of each (row, token).
        let mut acc = [[[vdupq_n_f32(0.0); 2]; C]; 4];
        let mut summs = [[0f32; C]; 4];
        let shift = vdupq_n_s32(SHIFT as i32);
        for b in 0..g.blocks {
            // SAFETY: record b of the group lies inside the packed matrix.
            let rec = unsafe { w.add(b * g.rec.total) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let (p, ri) = (r / 2, r % 2);
                // Row r's 32 levels (8-bit: the signed quants, stored at
                // [A 0-15 | B 0-15 | A 16-31 | B 16-31] of pair p).
                // SAFETY: the record holds the pairs' bytes, planes and scales.
                let (lv, ws) = unsafe {
                    let lv = if BITS == 8 {
                        let at = rec.add(64 * p + 16 * ri);
                        [vld1q_s8(at.cast()), vld1q_s8(at.add(32).cast())]
                    } else {
                        let mut v = nibbles32(rec.add(16 * r));
                        if BITS == 5 {
                            let plane =
                                rec.add(g.rec.planes + 8 * p).cast::<u64>().read_unaligned();
                            v[0] = vaddq_u8(v[0], plane_bytes((plane >> (16 * ri)) as u16, 0x10));
                            v[1] =
                                vaddq_u8(v[1], plane_bytes((plane >> (32 + 16 * ri)) as u16, 0x10));
                        }
                        signed(v)
                    };
                    (lv, read_f16(rec.add(g.rec.scales + 2 * r)))
                };
                for (c, acc_c) in acc_r.iter_mut().enumerate() {
                    // SAFETY: token c's record b lies inside the activations.
                    let (isum, dx) = unsafe {
                        let xr = a.add(c * g.act_stride + b * g.act_rec);
                        let x = [vld1q_s8(xr.cast()), vld1q_s8(xr.add(16).cast())];
                        let isum: [int32x4_t; 2] = std::array::from_fn(|h| {
                            let init = if SHIFT > 0 && BITS != 8 {
                                let ls = vld1q_s32(xr.add(AT_LANE_SUMS + 16 * h).cast());
                                vnegq_s32(vshlq_s32(ls, shift))
                            } else {
                                vdupq_n_s32(0)
                            };
                            sdot(init, lv[h], x[h])
                        });
                        (isum, read_f32(xr.add(AT_D)))
                    };
                    let scale = vdupq_n_f32(ws * dx);
                    for h in 0..2 {
                        acc_c[h] = vfmaq_f32(acc_c[h], scale, vcvtq_f32_s32(isum[h]));
                    }
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
                out[r][c] = hsum8(acc[r][c][0], acc[r][c][1]) + summs[r][c];
            }
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
        let span = if order == SuperOrder::Gemm4 { 2 } else { 8 };
        let tiled = order == SuperOrder::Tiled;
        let sc_at = g.rec.scales;
        let mut acc = [[0f32; C]; 8];
        let mut acc_min = [[0f32; C]; 8];
        let mut lanes = [[[vdupq_n_f32(0.0); 2]; C]; 8];
        debug_assert!(span == 8 || KIND == 0, "only Q4_K has a 64-weight step");
        debug_assert!(
            !tiled || KIND == 1,
            "the tiled order is reproduced for Q6_K"
        );
        for b0 in (0..g.blocks).step_by(span) {
            let sb = b0 / 8;
            let mut iacc = [[[vdupq_n_s32(0); 2]; C]; 8];
            let mut imin = [[0i32; C]; 8];
            for b in b0..b0 + span {
                for p in 0..P {
                    // SAFETY: pair p's record b lies inside the packed matrix.
                    let rec = unsafe { w.add(b * g.step + p * g.rec.total) };
                    for ri in 0..2 {
                        let row = 2 * p + ri;
                        // SAFETY: the record holds both rows' nibbles, planes, scales.
                        let (lv, sc, mn) = unsafe {
                            let mut v = nibbles32(rec.add(16 * ri));
                            for plane in 0..(BITS as usize).saturating_sub(4) {
                                let at = rec.add(g.rec.planes + 8 * plane + 4 * ri);
                                let add = 0x10 << plane;
                                v[0] = vaddq_u8(v[0], plane_bytes(read_u16(at), add));
                                v[1] = vaddq_u8(v[1], plane_bytes(read_u16(at.add(2)), add));
                            }
                            if KIND == 0 {
                                let sc = i32::from(*rec.add(sc_at + ri));
                                (signed(v), [sc, sc], i32::from(*rec.add(sc_at + 2 + ri)))
                            } else {
                                let sc = |h: usize| i32::from(*rec.add(sc_at + 2 * ri + h) as i8);
                                (signed(v), [sc(0), sc(1)], 0)
                            }
                        };
                        for c in 0..C {
                            // SAFETY: token c's record b lies inside the activations.
                            let (x, bsum) = unsafe {
                                let xr = a.add(c * g.act_stride + b * g.act_rec);
                                (
                                    [vld1q_s8(xr.cast()), vld1q_s8(xr.add(16).cast())],
                                    read_i32(xr.add(AT_SUM)),
                                )
                            };
                            for h in 0..2 {
                                let v = sdot(vdupq_n_s32(0), lv[h], x[h]);
                                iacc[row][c][h] = vmlaq_n_s32(iacc[row][c][h], v, sc[h]);
                            }
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
                            let i_sum = vaddvq_s32(vaddq_s32(iacc[row][c][0], iacc[row][c][1]));
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
                            // SAFETY: the record holds d A, d B (f32).
                            let d = unsafe { read_f32(rec.add(sc_at + 36 + 4 * ri)) };
                            let scale = vdupq_n_f32(dx * d);
                            let mut total = 0;
                            for h in 0..2 {
                                // SAFETY: 4 of the 8 i32s.
                                let ch = unsafe { vld1q_s32(corr.as_ptr().add(4 * h)) };
                                let sv = vsubq_s32(iacc[row][c][h], ch);
                                total += vaddvq_s32(sv);
                                lanes[row][c][h] =
                                    vfmaq_f32(lanes[row][c][h], scale, vcvtq_f32_s32(sv));
                            }
                            if tiled {
                                acc[row][c] = (total as f32 * d).mul_add(dx, acc[row][c]);
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
                    hsum8(lanes[row][c][0], lanes[row][c][1])
                };
            }
        }
    }
}
