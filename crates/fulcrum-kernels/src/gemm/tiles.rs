//! The tile kernels' interface ([`TileKernels`]) and the driver that runs
//! one task's rows × tokens through an instruction set's kernels
//! ([`simd_block`]): token tiles of up to `MAX_TOKENS`, the tile's width and
//! the packed layout's parameters passed as const parameters, so that every
//! kernel instance is specialized for them.

use std::ops::Range;

use super::activations::QuantizedActivations;
use super::layout::{Bits, QuantLayout, RecordLayout, SuperK, SuperOrder};
use super::packed::PackedMatrix;
use super::portable;
use crate::const_width::const_width;

/// Geometry of one packed matrix for the SIMD kernels.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    /// Bytes from one block's records of a group to the next's.
    pub step: usize,
    pub blocks: usize,
    pub rec: RecordLayout,
    pub act_stride: usize,
    /// Bytes per activation block record.
    pub act_rec: usize,
    /// Tokens in the activation buffer (stride of the `s` array).
    pub m: usize,
}

/// The tile kernels one instruction set provides (the 16-row K-quant one
/// optional: [`TileKernels::SUPER16`]); [`simd_block`]
/// drives any of them over a task's rows × tokens. Each reproduces the
/// portable kernel's arithmetic bit for bit (see `portable.rs`).
///
/// Implementations are `#[target_feature]` entry points that instantiate
/// the loops of `group_lanes.rs` and `row_lanes.rs` (or the instruction
/// set's own) with its vector operations, so that all of it compiles into
/// one function for the instruction set.
///
/// # Safety
/// Every method requires a CPU with the implementing instruction set, a
/// packed format matching the const parameters, `w` pointing at a group's
/// (or pair's) records of geometry `g`, `a` at `C` token records, `s` at the
/// activations' `s` array, and room in `y` / `out` for what is written.
#[allow(clippy::too_many_arguments)]
pub(crate) trait TileKernels {
    /// Most tokens one call handles (register pressure).
    const MAX_TOKENS: usize;

    /// Q4_0…Q8_0, fast order: `y[(tok0 + c)·n + i]` = row i · token
    /// (tok0 + c) for the 16-row group whose records start at `w` (`y`
    /// points at the group's first row); rows whose bit in `valid` is clear
    /// are not written.
    unsafe fn tile16<const BITS: u32, const SHIFT: u32, const FMIN: bool, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        s: *const f32,
        tok0: usize,
        y: *mut f32,
        n: usize,
        valid: u16,
    );

    /// Q4_0…Q8_0, llama.cpp's order: `out[i][c]` = row (first + i) · token
    /// (tok0 + c) for the four-row group whose records start at `w`.
    unsafe fn tile_lanes8<const BITS: u32, const SHIFT: u32, const FMIN: bool, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        s: *const f32,
        tok0: usize,
        out: &mut [[f32; C]; 8],
    );

    /// Whether this set has [`TileKernels::tile16_super`]; without it the
    /// portable kernel computes those layouts.
    const SUPER16: bool = false;

    /// Q4_K (`BITS` 4) and Q5_K (5) in 16-row groups
    /// ([`QuantLayout::super16`]): writes what [`TileKernels::tile16`] writes.
    unsafe fn tile16_super<const BITS: u32, const C: usize>(
        _g: &Geometry,
        _w: *const u8,
        _a: *const u8,
        _tok0: usize,
        _y: *mut f32,
        _n: usize,
        _valid: u16,
    ) {
        unreachable!("kernel sets without SUPER16 leave these layouts to the portable kernel")
    }

    /// K-quants (`KIND` 0: Q4_K/Q5_K, 1: Q6_K): `out[2p + ri][c]` for `P`
    /// pairs of rows and `C` tokens, in the float order `order` (`Gemm4`
    /// only for `KIND` 0, `Tiled` only for `KIND` 1).
    unsafe fn tile_super<const BITS: u32, const KIND: u32, const P: usize, const C: usize>(
        g: &Geometry,
        w: *const u8,
        a: *const u8,
        order: SuperOrder,
        out: &mut [[f32; C]; 8],
    );
}

/// Evaluates `$body` with `$bits`, `$shift` and `$fmin` the const
/// parameters (`BITS`, `SHIFT`, `FMIN`) of `$layout`'s 32-weight block
/// format, Q4_0 … Q8_0.
macro_rules! block_format {
    ($layout:expr, $bits:ident, $shift:ident, $fmin:ident => $body:expr) => {
        match ($layout.bits, $layout.offset_shift, $layout.float_min) {
            (Bits::B4, Some(3), false) => {
                const $bits: u32 = 4;
                const $shift: u32 = 3;
                const $fmin: bool = false;
                $body
            }
            (Bits::B4, None, true) => {
                const $bits: u32 = 4;
                const $shift: u32 = 0;
                const $fmin: bool = true;
                $body
            }
            (Bits::B5, Some(4), false) => {
                const $bits: u32 = 5;
                const $shift: u32 = 4;
                const $fmin: bool = false;
                $body
            }
            (Bits::B5, None, true) => {
                const $bits: u32 = 5;
                const $shift: u32 = 0;
                const $fmin: bool = true;
                $body
            }
            (Bits::B8, Some(7), false) => {
                const $bits: u32 = 8;
                const $shift: u32 = 7;
                const $fmin: bool = false;
                $body
            }
            other => unreachable!("no kernel for packed layout {other:?}"),
        }
    };
}

/// One task's rows × tokens through kernel set `K`, whose instruction set
/// the caller has checked this CPU supports.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(super) fn simd_block<K: TileKernels>(
    layout: &QuantLayout,
    w: &PackedMatrix,
    bytes: &[u8],
    acts: &QuantizedActivations,
    rows: Range<usize>,
    toks: Range<usize>,
    y: &mut [f32],
) {
    debug_assert!(
        !layout.f32_scales || layout.super_k.is_some(),
        "group records hold f16 scales"
    );
    assert!(y.len() >= acts.m * w.rows);
    let rec = layout.record();
    let mut task = TileTask {
        g: Geometry {
            step: 2 * rec.total,
            blocks: w.blocks,
            rec,
            act_stride: acts.token_stride(),
            act_rec: acts.record,
            m: acts.m,
        },
        // Token tiles must not straddle the end of the 4-token groups that
        // `LlamaCppBatch` computes in another order (`SuperOrder::Gemm4`).
        grouped_end: if layout.super_order(0, acts.m) == SuperOrder::Gemm4 {
            acts.m / 4 * 4
        } else {
            0
        },
        layout,
        w,
        bytes,
        acts,
        rows,
        toks,
        y,
    };
    if layout.super16() {
        task.groups16_super::<K>();
    } else if layout.lanes16() {
        task.groups16::<K>();
    } else {
        task.groups4::<K>();
    }
}

/// What [`simd_block`] works on: one task of one matrix.
struct TileTask<'a> {
    layout: &'a QuantLayout,
    w: &'a PackedMatrix,
    bytes: &'a [u8],
    acts: &'a QuantizedActivations,
    rows: Range<usize>,
    toks: Range<usize>,
    /// `[m, n]`: the task writes its rows of its tokens.
    y: &'a mut [f32],
    g: Geometry,
    /// Tokens before this one come in 4-token groups (`SuperOrder::Gemm4`).
    grouped_end: usize,
}

/// Calls `tile(t, c)` for consecutive tiles of `c` tokens from `t` covering
/// `toks`: `max` tokens (at most 8) but the last, and none straddling
/// `grouped_end`.
fn for_each_tile(
    toks: Range<usize>,
    max: usize,
    grouped_end: usize,
    mut tile: impl FnMut(usize, usize),
) {
    let mut t = toks.start;
    while t < toks.end {
        let mut c = (toks.end - t).min(max);
        if t < grouped_end {
            c = c.min(grouped_end - t);
        }
        tile(t, c);
        t += c;
    }
}

/// Bit i set for the first `rows` rows of a 16-row group.
fn valid_rows(rows: usize) -> u16 {
    if rows >= 16 {
        u16::MAX
    } else {
        (1u16 << rows) - 1
    }
}

impl TileTask<'_> {
    /// Q4_K/Q5_K in 16-row groups ([`QuantLayout::super16`]).
    fn groups16_super<K: TileKernels>(&mut self) {
        let (layout, acts, g) = (self.layout, self.acts, &self.g);
        let n = self.w.rows;
        // `rows.start` is a multiple of 16 (row blocks are whole groups).
        for r in self.rows.clone().step_by(16) {
            let last = (r + 16).min(self.rows.end);
            if !K::SUPER16 {
                for t in self.toks.clone() {
                    for row in r..last {
                        self.y[t * n + row] =
                            portable::dot(layout, self.bytes, self.w, acts, row, t);
                    }
                }
                continue;
            }
            let valid = valid_rows(last - r);
            let wp = self.bytes[self.w.record_offset(layout, r, 0)..].as_ptr();
            let yp = self.y[r..].as_mut_ptr();
            for_each_tile(
                self.toks.clone(),
                K::MAX_TOKENS,
                self.grouped_end,
                |t, c| {
                    let ap = acts.token(t).as_ptr();
                    // SAFETY: as for `tile16` in `groups16`; the layout is a
                    // 16-row K-quant one of these widths.
                    unsafe {
                        const_width!(c, C => match layout.bits {
                            Bits::B4 => K::tile16_super::<4, C>(g, wp, ap, t, yp, n, valid),
                            Bits::B5 => K::tile16_super::<5, C>(g, wp, ap, t, yp, n, valid),
                            other => unreachable!("no 16-row K-quant kernel for {other:?}"),
                        })
                    }
                },
            );
        }
    }

    /// Q4_0…Q8_0 in the fast order ([`QuantLayout::lanes16`]).
    fn groups16<K: TileKernels>(&mut self) {
        let (layout, acts, g) = (self.layout, self.acts, &self.g);
        let n = self.w.rows;
        let sp = acts.sums.as_ptr();
        // `rows.start` is a multiple of 16 (row blocks are whole groups).
        for r in self.rows.clone().step_by(16) {
            let valid = valid_rows(self.rows.end - r);
            let wp = self.bytes[self.w.record_offset(layout, r, 0)..].as_ptr();
            let yp = self.y[r..].as_mut_ptr();
            for_each_tile(
                self.toks.clone(),
                K::MAX_TOKENS,
                self.grouped_end,
                |t, c| {
                    let ap = acts.token(t).as_ptr();
                    // SAFETY: the caller checked the CPU has K's instruction
                    // set; the group and tokens exist; `y` holds m × n floats
                    // and only rows r..rows.end of tokens t..t+c are written; the
                    // layout matches the const parameters (`block_format!`).
                    unsafe {
                        const_width!(c, C => block_format!(layout, BITS, SHIFT, FMIN => {
                            K::tile16::<BITS, SHIFT, FMIN, C>(g, wp, ap, sp, t, yp, n, valid)
                        }))
                    }
                },
            );
        }
    }

    /// Four-row groups (llama.cpp's order, and K-quant pairs): one group
    /// (two pairs, the last one zero-padded) per tile. `rows.start` is a
    /// multiple of 4 (row blocks are).
    fn groups4<K: TileKernels>(&mut self) {
        for r in self.rows.clone().step_by(4) {
            for_each_tile(
                self.toks.clone(),
                K::MAX_TOKENS,
                self.grouped_end,
                |t, c| const_width!(c, C => self.group4_tile::<K, C>(r, t)),
            );
        }
    }

    /// The four-row group from row `r` for tokens `t..t + C`.
    fn group4_tile<K: TileKernels, const C: usize>(&mut self, r: usize, t: usize) {
        let (layout, acts, g) = (self.layout, self.acts, &self.g);
        let mut out = [[0f32; C]; 8];
        let wp = self.bytes[self.w.record_offset(layout, r, 0)..].as_ptr();
        let ap = acts.token(t).as_ptr();
        let sp = acts.sums.as_ptr();
        let order = layout.super_order(t, acts.m);
        // SAFETY: the caller checked the CPU has K's instruction set; the
        // pairs and tokens of the tile exist (the callers' loops); the
        // layout matches the const parameters (dispatch below).
        unsafe {
            match (layout.super_k, layout.bits) {
                (Some(SuperK::Mins), Bits::B4) => {
                    K::tile_super::<4, 0, 2, C>(g, wp, ap, order, &mut out)
                }
                (Some(SuperK::Mins), Bits::B5) => {
                    K::tile_super::<5, 0, 2, C>(g, wp, ap, order, &mut out)
                }
                (Some(SuperK::Signed16), Bits::B6) => {
                    K::tile_super::<6, 1, 2, C>(g, wp, ap, order, &mut out)
                }
                (Some(k), b) => unreachable!("no kernel for {k:?} with {b:?}"),
                (None, _) => block_format!(layout, BITS, SHIFT, FMIN => {
                    K::tile_lanes8::<BITS, SHIFT, FMIN, C>(g, wp, ap, sp, t, &mut out)
                }),
            }
        }
        let n = self.w.rows;
        for (i, row_out) in out.iter().enumerate().take(4) {
            if r + i < self.rows.end {
                for (j, &v) in row_out.iter().enumerate() {
                    self.y[(t + j) * n + r + i] = v;
                }
            }
        }
    }
}
