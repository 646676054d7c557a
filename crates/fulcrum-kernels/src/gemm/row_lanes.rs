//! The loops of the kernels that keep llama.cpp's 8 float lanes per output
//! — Q4_0…Q8_0 in its order ([`tile_lanes8`]) and the K-quant pairs
//! ([`tile_super`]) — once, over the vector operations of an instruction
//! set whose registers hold one row's 8 lanes ([`RowLanes`]: AVX2, NEON).
//!
//! Per 32-weight block, a row's 32 levels are unpacked once and serve all
//! `C` tokens of the tile; per token, one dot product against the token's
//! 32 activation bytes gives the 8 lane sums of llama.cpp's kernels
//! directly (`portable.rs` states the arithmetic). The AVX-512 kernels hold
//! a pair's two rows in one register instead and keep their own loops
//! (`avx512/pairs.rs`).
//!
//! The loops are `#[inline(always)]` and so are the operations: each
//! instruction set's `#[target_feature]` entry point ([`super::tiles::TileKernels`])
//! compiles them into one function with its intrinsics inline.

#![allow(clippy::too_many_arguments)]

use super::activations::{AT_D, AT_SUM, AT_SUM_HI, AT_SUM_LO};
use super::layout::SuperOrder;
use super::raw::{read_f16, read_f32, read_i32, read_u32};
use super::tiles::Geometry;

/// One instruction set's vector operations on one row's 8 lanes. A value
/// of the implementing type is proof that the CPU supports the instruction
/// set, which makes the arithmetic safe to call; the loads stay `unsafe`
/// for their pointers.
pub(crate) trait RowLanes: Copy {
    /// A row's 32 levels of a block, as bytes, lane `l` holding weights
    /// `4l..4l+4`.
    type Levels: Copy;
    /// 8 i32 lanes.
    type Ints: Copy;
    /// 8 f32 lanes.
    type Floats: Copy;
    /// Integer scales of lanes 0..4 and 4..8 (the two 16-weight halves).
    type Scales: Copy;

    /// Asks for the line some distance ahead of `rec` (or nothing, where
    /// the hardware prefetcher suffices); prefetches tolerate any address.
    fn prefetch_line(self, rec: *const u8);

    /// 16 bytes of nibbles at `p` as 32 levels: low nibbles first.
    ///
    /// # Safety
    /// 16 readable bytes at `p`.
    unsafe fn nibbles(self, p: *const u8) -> Self::Levels;

    /// Adds `value` to the levels whose bit is set in `plane` (a bit plane).
    fn add_plane(self, lv: Self::Levels, plane: u32, value: u8) -> Self::Levels;

    /// 8-bit levels, stored signed: levels 0..16 at `lo`, 16..32 at `hi`.
    ///
    /// # Safety
    /// 16 readable bytes at each.
    unsafe fn signed_levels(self, lo: *const u8, hi: *const u8) -> Self::Levels;

    /// Lane sums `Σ level·q − offset·Σq` over each lane's 4 weights against
    /// the token record at `xr` (Q4_0…Q8_0: 8-bit levels are signed,
    /// others offset by `1 << SHIFT` unless `SHIFT` is 0).
    ///
    /// # Safety
    /// `xr` points at an activation record with lane sums.
    unsafe fn lane_sums<const BITS: u32, const SHIFT: u32>(
        self,
        lv: Self::Levels,
        xr: *const u8,
    ) -> Self::Ints;

    /// Lane sums `Σ level·q` (levels below 64, no offset) against the
    /// token's 32 quants at `xr`.
    ///
    /// # Safety
    /// 32 readable bytes at `xr`.
    unsafe fn level_sums(self, lv: Self::Levels, xr: *const u8) -> Self::Ints;

    fn splat_scale(self, s: i32) -> Self::Scales;
    fn half_scales(self, lo: i32, hi: i32) -> Self::Scales;
    /// `acc + v·sc`, lane-wise in i32.
    fn add_scaled(self, acc: Self::Ints, v: Self::Ints, sc: Self::Scales) -> Self::Ints;
    fn sub_ints(self, a: Self::Ints, b: Self::Ints) -> Self::Ints;
    /// Σ of the 8 lanes (exact).
    fn sum_ints(self, v: Self::Ints) -> i32;
    fn load_ints(self, v: &[i32; 8]) -> Self::Ints;
    fn zero_ints(self) -> Self::Ints;

    fn zero_floats(self) -> Self::Floats;
    /// `acc + x·f32(v)`, lane-wise, each rounded once.
    fn mul_add_splat(self, acc: Self::Floats, x: f32, v: Self::Ints) -> Self::Floats;
    /// llama.cpp's `hsum_float_8` (= `portable::hsum8`).
    fn hsum(self, v: Self::Floats) -> f32;
}

/// [`super::tiles::TileKernels::tile_lanes8`]: the four rows of a group one after
/// the other within each block.
///
/// # Safety
/// As [`super::tiles::TileKernels::tile_lanes8`].
#[inline(always)]
pub(crate) unsafe fn tile_lanes8<
    V: RowLanes,
    const BITS: u32,
    const SHIFT: u32,
    const FMIN: bool,
    const C: usize,
>(
    v: V,
    g: &Geometry,
    w: *const u8,
    a: *const u8,
    s: *const f32,
    tok0: usize,
    out: &mut [[f32; C]; 8],
) {
    let mut acc = [[v.zero_floats(); C]; 4];
    let mut summs = [[0f32; C]; 4];
    for b in 0..g.blocks {
        // SAFETY: record b of the group lies inside the packed matrix.
        let rec = unsafe { w.add(b * g.rec.total) };
        v.prefetch_line(rec);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let (p, ri) = (r / 2, r % 2);
            // Row r's 32 levels in weight order (8-bit: the signed quants,
            // stored at [A 0-15 | B 0-15 | A 16-31 | B 16-31] of pair p).
            // SAFETY: the record holds the pairs' bytes, planes and scales.
            let (lv, ws) = unsafe {
                let lv = if BITS == 8 {
                    let at = rec.add(64 * p + 16 * ri);
                    v.signed_levels(at, at.add(32))
                } else {
                    let lv = v.nibbles(rec.add(16 * r));
                    if BITS == 5 {
                        let plane = rec.add(g.rec.planes + 8 * p).cast::<u64>().read_unaligned();
                        let lo = (plane >> (16 * ri)) & 0xFFFF;
                        let hi = (plane >> (32 + 16 * ri)) & 0xFFFF;
                        v.add_plane(lv, (lo | hi << 16) as u32, 0x10)
                    } else {
                        lv
                    }
                };
                (lv, read_f16(rec.add(g.rec.scales + 2 * r)))
            };
            for (c, acc_c) in acc_r.iter_mut().enumerate() {
                // SAFETY: token c's record b lies inside the activations.
                let (isum, dx) = unsafe {
                    let xr = a.add(c * g.act_stride + b * g.act_rec);
                    (v.lane_sums::<BITS, SHIFT>(lv, xr), read_f32(xr.add(AT_D)))
                };
                *acc_c = v.mul_add_splat(*acc_c, ws * dx, isum);
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
            out[r][c] = v.hsum(acc[r][c]) + summs[r][c];
        }
    }
}

/// [`super::tiles::TileKernels::tile_super`]: integer sums per row and token over
/// each super-block (or 64-weight step, `Gemm4`), then one float step.
///
/// # Safety
/// As [`super::tiles::TileKernels::tile_super`].
#[inline(always)]
pub(crate) unsafe fn tile_super<
    V: RowLanes,
    const BITS: u32,
    const KIND: u32,
    const P: usize,
    const C: usize,
>(
    v: V,
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
    let mut lanes = [[v.zero_floats(); C]; 8];
    debug_assert!(span == 8 || KIND == 0, "only Q4_K has a 64-weight step");
    debug_assert!(
        !tiled || KIND == 1,
        "the tiled order is reproduced for Q6_K"
    );
    for b0 in (0..g.blocks).step_by(span) {
        let sb = b0 / 8;
        let mut iacc = [[v.zero_ints(); C]; 8];
        let mut imin = [[0i32; C]; 8];
        for b in b0..b0 + span {
            for p in 0..P {
                // SAFETY: pair p's record b lies inside the packed matrix.
                let rec = unsafe { w.add(b * g.step + p * g.rec.total) };
                for ri in 0..2 {
                    let row = 2 * p + ri;
                    // SAFETY: the record holds both rows' nibbles, planes, scales.
                    let (lv, scv, mn) = unsafe {
                        let mut lv = v.nibbles(rec.add(16 * ri));
                        if BITS >= 5 {
                            let plane = read_u32(rec.add(g.rec.planes + 4 * ri));
                            lv = v.add_plane(lv, plane, 0x10);
                        }
                        if BITS >= 6 {
                            let plane = read_u32(rec.add(g.rec.planes + 8 + 4 * ri));
                            lv = v.add_plane(lv, plane, 0x20);
                        }
                        if KIND == 0 {
                            (
                                lv,
                                v.splat_scale(i32::from(*rec.add(sc_at + ri))),
                                i32::from(*rec.add(sc_at + 2 + ri)),
                            )
                        } else {
                            let sc = |h: usize| i32::from(*rec.add(sc_at + 2 * ri + h) as i8);
                            (lv, v.half_scales(sc(0), sc(1)), 0)
                        }
                    };
                    for c in 0..C {
                        // SAFETY: token c's record b lies inside the activations.
                        let (q, bsum) = unsafe {
                            let xr = a.add(c * g.act_stride + b * g.act_rec);
                            (v.level_sums(lv, xr), read_i32(xr.add(AT_SUM)))
                        };
                        iacc[row][c] = v.add_scaled(iacc[row][c], q, scv);
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
                        let i_sum = v.sum_ints(iacc[row][c]);
                        acc[row][c] = (i_sum as f32).mul_add(d * dx, acc[row][c]);
                        acc_min[row][c] = (imin[row][c] as f32).mul_add(dmin * dx, acc_min[row][c]);
                    } else {
                        // The offset correction of block l, all in lane l.
                        let corr: [i32; 8] = std::array::from_fn(|l| {
                            // SAFETY: the record holds the row's 16 scales.
                            let sc = |h: usize| unsafe {
                                i32::from(*rec.add(sc_at + 4 + 16 * ri + 2 * l + h) as i8)
                            };
                            (sc(0) * xc(8 * sb + l, AT_SUM_LO) + sc(1) * xc(8 * sb + l, AT_SUM_HI))
                                << 5
                        });
                        // SAFETY: the record holds d A, d B (f32).
                        let d = unsafe { read_f32(rec.add(sc_at + 36 + 4 * ri)) };
                        let sv = v.sub_ints(iacc[row][c], v.load_ints(&corr));
                        if tiled {
                            acc[row][c] = (v.sum_ints(sv) as f32 * d).mul_add(dx, acc[row][c]);
                        } else {
                            lanes[row][c] = v.mul_add_splat(lanes[row][c], dx * d, sv);
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
                v.hsum(lanes[row][c])
            };
        }
    }
}
