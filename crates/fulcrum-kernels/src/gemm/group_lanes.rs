//! The loops of the 16-row group kernels — Q4_0…Q8_0 in the fast order
//! ([`tile16`]) and Q4_K/Q5_K in 16-row groups ([`tile16_super`]) — once,
//! over the vector operations of an instruction set ([`GroupLanes`]).
//!
//! A register holds one 4-weight slice of `16 / PARTS` rows of the group:
//! all 16 with AVX-512, half with AVX2, a quarter with NEON. Per 32-weight
//! block, each part's 8 slices are unpacked once and serve all `C` tokens of
//! the tile; per token, the slices' dot products with the token's 32
//! activation bytes leave the part's exact integer block sums, then one
//! conversion, one scale product and one or two fused multiply-adds finish
//! the block for the part's rows (`portable.rs` states the arithmetic).
//!
//! The loops are `#[inline(always)]` and so are the operations: each
//! instruction set's `#[target_feature]` entry point ([`super::tiles::TileKernels`])
//! compiles them into one function with its intrinsics inline.

#![allow(clippy::too_many_arguments)]

use super::activations::{AT_D, AT_SUM};
use super::layout::SUPER16_TRAILER;
use super::raw::{read_f32, read_i32};
use super::tiles::Geometry;

/// One instruction set's vector operations for the 16-row group kernels.
/// A value of the implementing type is proof that the CPU supports the
/// instruction set, which makes the arithmetic safe to call; the loads
/// stay `unsafe` for their pointers.
pub(crate) trait GroupLanes: Copy {
    /// One 4-weight slice of a part's rows: its levels as bytes.
    type Slice: Copy;
    /// A part's rows as i32 lanes.
    type Ints: Copy;
    /// A part's rows as f32 lanes.
    type Floats: Copy;
    /// Which of a part's rows a store writes.
    type RowMask: Copy;

    /// Asks for the group record some distance ahead of `rec`, `total`
    /// bytes of it (or nothing, where the hardware prefetcher suffices);
    /// prefetches tolerate any address.
    fn prefetch_record(self, rec: *const u8, total: usize);

    /// The 8 slices of part `part` of a group record's levels: slice `j`
    /// holds weights `4j..4j+4` of the part's rows, as the kernel's dot
    /// product takes them.
    ///
    /// # Safety
    /// `rec` points at a group record with its bit planes at `planes_at`.
    unsafe fn slices<const BITS: u32>(
        self,
        rec: *const u8,
        planes_at: usize,
        part: usize,
    ) -> [Self::Slice; 8];

    /// The exact integer block sums `Σ level·q − offset·Σq` of the part's
    /// rows against the token record at `xr` (Q4_0…Q8_0; `SHIFT` gives the
    /// offset, 0 for none; `C` the tile's tokens, for the instruction set's
    /// scheduling).
    ///
    /// # Safety
    /// `xr` points at an activation block record.
    unsafe fn block_sums<const BITS: u32, const SHIFT: u32, const C: usize>(
        self,
        wv: &[Self::Slice; 8],
        xr: *const u8,
    ) -> Self::Ints;

    /// The part's rows' f16 values at `p`, widened.
    ///
    /// # Safety
    /// `p` points at one f16 per row of the part.
    unsafe fn load_f16(self, p: *const u8) -> Self::Floats;

    fn splat(self, x: f32) -> Self::Floats;
    fn mul(self, a: Self::Floats, b: Self::Floats) -> Self::Floats;
    /// `a·b + c`, rounded once.
    fn mul_add(self, a: Self::Floats, b: Self::Floats, c: Self::Floats) -> Self::Floats;
    fn to_floats(self, v: Self::Ints) -> Self::Floats;

    /// The mask of the part's rows whose bit is set in `bits`.
    fn row_mask(self, bits: u32) -> Self::RowMask;

    /// Stores the rows of `v` that `mask` selects at `p` (row i at `p + i`).
    ///
    /// # Safety
    /// Room at `p` for the selected rows.
    unsafe fn store(self, p: *mut f32, mask: Self::RowMask, v: Self::Floats);
}

/// The operations [`tile16_super`] needs beyond [`GroupLanes`]'.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // NEON has no 16-row K-quant kernel
pub(crate) trait Super16Lanes: GroupLanes {
    /// The exact integer sums `Σ level·q` of the part's rows against the
    /// token record at `xr` (levels 0..32, no offset).
    ///
    /// # Safety
    /// `xr` points at an activation block record.
    unsafe fn level_sums<const BITS: u32>(self, wv: &[Self::Slice; 8], xr: *const u8)
        -> Self::Ints;

    /// The part's rows' u8 values at `p`, widened to i32.
    ///
    /// # Safety
    /// `p` points at one byte per row of the part.
    unsafe fn load_u8(self, p: *const u8) -> Self::Ints;

    fn splat_int(self, x: i32) -> Self::Ints;
    fn add_ints(self, a: Self::Ints, b: Self::Ints) -> Self::Ints;
    /// Lane-wise product, low 32 bits (exact for the kernels' magnitudes).
    fn mul_ints(self, a: Self::Ints, b: Self::Ints) -> Self::Ints;
    fn sub(self, a: Self::Floats, b: Self::Floats) -> Self::Floats;
}

/// [`super::tiles::TileKernels::tile16`] with `PARTS` parts per group.
///
/// # Safety
/// As [`super::tiles::TileKernels::tile16`]; `v`'s registers hold `16 / PARTS` rows.
#[inline(always)]
pub(crate) unsafe fn tile16<
    V: GroupLanes,
    const PARTS: usize,
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
    y: *mut f32,
    n: usize,
    valid: u16,
) {
    let rows = 16 / PARTS;
    let mut acc = [[v.splat(0.0); C]; PARTS];
    for b in 0..g.blocks {
        // SAFETY: record b of the group lies inside the packed matrix; the
        // prefetch addresses may run past it, which prefetches tolerate.
        let rec = unsafe { w.add(b * g.rec.total) };
        v.prefetch_record(rec, g.rec.total);
        for (h, acc_h) in acc.iter_mut().enumerate() {
            // SAFETY: the record holds the slices, planes, scales and mins.
            let (wv, ws, mins) = unsafe {
                let wv = v.slices::<BITS>(rec, g.rec.planes, h);
                let ws = v.load_f16(rec.add(g.rec.scales + 2 * rows * h));
                let mins = if FMIN {
                    v.load_f16(rec.add(g.rec.mins + 2 * rows * h))
                } else {
                    v.splat(0.0)
                };
                (wv, ws, mins)
            };
            for (c, acc_c) in acc_h.iter_mut().enumerate() {
                // SAFETY: token c's record b lies inside the activations, and
                // its `s` inside the `s` array.
                let (isum, dx, sx) = unsafe {
                    let xr = a.add(c * g.act_stride + b * g.act_rec);
                    let isum = v.block_sums::<BITS, SHIFT, C>(&wv, xr);
                    let dx = v.splat(read_f32(xr.add(AT_D)));
                    let sx = if FMIN {
                        v.splat(*s.add(b * g.m + tok0 + c))
                    } else {
                        v.splat(0.0)
                    };
                    (isum, dx, sx)
                };
                *acc_c = v.mul_add(v.mul(ws, dx), v.to_floats(isum), *acc_c);
                if FMIN {
                    *acc_c = v.mul_add(mins, sx, *acc_c);
                }
            }
        }
    }
    for (h, acc_h) in acc.iter().enumerate() {
        let bits = (u32::from(valid) >> (rows * h)) & (u32::MAX >> (32 - rows));
        if bits == 0 {
            continue;
        }
        let mask = v.row_mask(bits);
        for (c, acc_c) in acc_h.iter().enumerate() {
            // SAFETY: the caller guarantees room for the valid rows of C tokens.
            unsafe { v.store(y.add((tok0 + c) * n + rows * h), mask, *acc_c) };
        }
    }
}

/// [`super::tiles::TileKernels::tile16_super`] with `PARTS` parts per group: the
/// parts one after the other, each over the whole row. Per block, the
/// part's slices are unpacked once and serve all `C` tokens: their exact
/// block sums times the block's integer scale go into the super-block sum
/// `I`, the integer min times the token's block sum into the min sum `M`;
/// per super-block and token, one float step each — the portable kernel's
/// order.
///
/// # Safety
/// As [`super::tiles::TileKernels::tile16_super`]; `v`'s registers hold
/// `16 / PARTS` rows.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // NEON has no 16-row K-quant kernel
pub(crate) unsafe fn tile16_super<
    V: Super16Lanes,
    const PARTS: usize,
    const BITS: u32,
    const C: usize,
>(
    v: V,
    g: &Geometry,
    w: *const u8,
    a: *const u8,
    tok0: usize,
    y: *mut f32,
    n: usize,
    valid: u16,
) {
    let rows = 16 / PARTS;
    for h in 0..PARTS {
        let bits = (u32::from(valid) >> (rows * h)) & (u32::MAX >> (32 - rows));
        if bits == 0 {
            continue;
        }
        let mut acc = [v.splat(0.0); C];
        let mut acc_min = [v.splat(0.0); C];
        for sb in 0..g.blocks / 8 {
            let mut isum = [v.splat_int(0); C];
            let mut imin = [v.splat_int(0); C];
            for b in 8 * sb..8 * sb + 8 {
                // SAFETY: record b of the group lies inside the packed
                // matrix (records, then a trailer after every eighth);
                // prefetches tolerate addresses past it.
                let (wv, sc, mn) = unsafe {
                    let rec = w.add(b * g.rec.total + sb * SUPER16_TRAILER);
                    if h == 0 {
                        v.prefetch_record(rec, g.rec.total);
                    }
                    (
                        v.slices::<BITS>(rec, g.rec.planes, h),
                        v.load_u8(rec.add(g.rec.scales + rows * h)),
                        v.load_u8(rec.add(g.rec.mins + rows * h)),
                    )
                };
                for c in 0..C {
                    // SAFETY: token c's record b lies inside the activations.
                    let (q, bsum) = unsafe {
                        let xr = a.add(c * g.act_stride + b * g.act_rec);
                        (
                            v.level_sums::<BITS>(&wv, xr),
                            v.splat_int(read_i32(xr.add(AT_SUM))),
                        )
                    };
                    isum[c] = v.add_ints(isum[c], v.mul_ints(q, sc));
                    imin[c] = v.add_ints(imin[c], v.mul_ints(mn, bsum));
                }
            }
            // SAFETY: the super-block's trailer follows its eighth record;
            // token c's last record of the super-block holds its `d`.
            unsafe {
                let tr = w.add((8 * sb + 8) * g.rec.total + sb * SUPER16_TRAILER);
                let d = v.load_f16(tr.add(2 * rows * h));
                let dmin = v.load_f16(tr.add(32 + 2 * rows * h));
                for c in 0..C {
                    let dx = v.splat(read_f32(
                        a.add(c * g.act_stride + (8 * sb + 7) * g.act_rec + AT_D),
                    ));
                    acc[c] = v.mul_add(v.to_floats(isum[c]), v.mul(d, dx), acc[c]);
                    acc_min[c] = v.mul_add(v.to_floats(imin[c]), v.mul(dmin, dx), acc_min[c]);
                }
            }
        }
        let mask = v.row_mask(bits);
        for c in 0..C {
            // SAFETY: the caller guarantees room for the valid rows of C tokens.
            unsafe {
                v.store(
                    y.add((tok0 + c) * n + rows * h),
                    mask,
                    v.sub(acc[c], acc_min[c]),
                )
            };
        }
    }
}
