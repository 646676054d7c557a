//! The batched matrix product every linear layer runs, `Y[m×n] = X[m×k]·Wᵀ`,
//! over *all* tokens of a step at once: [`matmul`] (and, for activations
//! already quantized, [`matmul_quantized_many`]) is the entry point.
//!
//! - [`WeightMatrix`] (`weight_matrix.rs`): a weight tensor as the GGUF file
//!   stores it, the input of packing.
//! - [`matmul_reference`] (`reference.rs`): the plain scalar product over
//!   the GGUF blocks, which no layer runs: every fast kernel is tested
//!   against it.
//! - [`PackedMatrix`] (`packed.rs`): weights repacked at load time, rows in
//!   groups of 16 (K-quants: pairs), blocks of 32 the SIMD kernels consume
//!   directly.
//! - [`QuantizedActivations`] (`activations.rs`): each activation row quantized
//!   to 8 bits once per product (and reused for q/k/v, gate/up), rounded as
//!   llama.cpp rounds.
//! - Kernels: `portable.rs` states the arithmetic of each [`Numerics`] (fast:
//!   exact integer sums per block, blocks accumulated in sequence; llama.cpp's:
//!   8 float lanes per output) and is the kernel of CPUs without SIMD
//!   support; `avx512.rs` (AVX-512 VNNI, tiles of 16 rows — or, in
//!   llama.cpp's order, 4 rows — by up to 8 tokens) and `avx2.rs` (AVX2 +
//!   FMA, the same tiles by up to 4 tokens) and `neon.rs` (aarch64 NEON with
//!   `sdot`) reproduce it bit for bit. Each implements [`TileKernels`];
//!   [`simd_block`] drives any of them.
//!
//! Work is split into tasks of (row block × token block) claimed by the
//! worker pool. Every output element is computed entirely inside one tile by
//! the same sequence of operations whatever the tile shape, the task split or
//! the thread count: results are bit-identical for a token whether it is
//! alone or batched, and across thread counts.

mod activations;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
mod packed;
mod portable;
mod raw;
mod reference;
mod weight_matrix;

pub use activations::{ActScheme, QuantizedActivations};
pub use packed::{
    AlignedBytes, Bits, Numerics, PackedData, PackedMatrix, QuantLayout, RecordLayout, SuperK,
    SuperOrder,
};
pub use reference::{dequantize_matrix_f32, matmul_reference};
pub use weight_matrix::{MatrixError, WeightMatrix};

use crate::isa::Isa;
use crate::pool::{SendPtr, WorkerPool};

/// Buffers reused across products so the hot path does not allocate.
#[derive(Default)]
pub struct MatmulScratch {
    pub acts: QuantizedActivations,
}

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

/// `y = x·wᵀ`: quantizes `x` (`[m, w.cols]`) into `scratch` and multiplies.
pub fn matmul(
    pool: &WorkerPool,
    x: &[f32],
    m: usize,
    w: &PackedMatrix,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    matmul_with(Isa::active(), pool, x, m, w, y, scratch);
}

/// [`matmul`] with the quantized kernels of `isa`, which this CPU must
/// support (tests compare every supported kernel with the portable one).
pub fn matmul_on(
    isa: Isa,
    pool: &WorkerPool,
    x: &[f32],
    m: usize,
    w: &PackedMatrix,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    assert!(isa.is_supported(), "{isa} kernels on a CPU without {isa}");
    matmul_with(isa, pool, x, m, w, y, scratch);
}

fn matmul_with(
    isa: Isa,
    pool: &WorkerPool,
    x: &[f32],
    m: usize,
    w: &PackedMatrix,
    y: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    assert_eq!(x.len(), m * w.cols, "x must be [m, k]");
    assert_eq!(y.len(), m * w.rows, "y must be [m, n]");
    match &w.data {
        PackedData::F32(wf) => matmul_f32(pool, x, m, w, wf, y),
        PackedData::Quant { .. } => {
            scratch
                .acts
                .quantize(pool, x, m, w.cols, ActScheme::for_matrix(w));
            matmul_quantized_many_on(isa, pool, &scratch.acts, &mut [(w, y)]);
        }
    }
}

/// `y = acts·wᵀ` with activations already quantized (for the same `cols`).
pub fn matmul_quantized(
    pool: &WorkerPool,
    acts: &QuantizedActivations,
    w: &PackedMatrix,
    y: &mut [f32],
) {
    matmul_quantized_many(pool, acts, &mut [(w, y)]);
}

/// Several products of the same activations (q/k/v, gate/up) in one parallel
/// region: one hand-off to the workers instead of one per matrix, which
/// matters for single-token decode where each product takes microseconds.
pub fn matmul_quantized_many(
    pool: &WorkerPool,
    acts: &QuantizedActivations,
    outs: &mut [(&PackedMatrix, &mut [f32])],
) {
    matmul_quantized_many_on(Isa::active(), pool, acts, outs);
}

fn matmul_quantized_many_on(
    isa: Isa,
    pool: &WorkerPool,
    acts: &QuantizedActivations,
    outs: &mut [(&PackedMatrix, &mut [f32])],
) {
    struct Job<'a> {
        w: &'a PackedMatrix,
        layout: &'a QuantLayout,
        bytes: &'a [u8],
        y: SendPtr<f32>,
        rb: usize,
        row_blocks: usize,
        first_task: usize,
    }
    let m = acts.m;
    let tb = m.min(64);
    let token_blocks = m.div_ceil(tb);
    let mut jobs = Vec::with_capacity(outs.len());
    let mut num_tasks = 0;
    let total_rows: usize = outs.iter().map(|(w, _)| w.rows).sum();
    for (w, y) in outs.iter_mut() {
        let PackedData::Quant { layout, bytes } = &w.data else {
            panic!("matmul_quantized needs a quantized matrix; use matmul for float weights");
        };
        assert_eq!(
            acts.cols, w.cols,
            "activations quantized for {} columns, matrix has {}",
            acts.cols, w.cols
        );
        assert_eq!(
            acts.scheme,
            Some(ActScheme::for_matrix(w)),
            "activations quantized with the wrong scheme for {}",
            w.ty
        );
        assert_eq!(y.len(), m * w.rows, "y must be [m, n]");
        if m == 0 || w.rows == 0 {
            continue;
        }
        // Row blocks (whole groups: groups never straddle tasks) sized so
        // all matrices together give about 8 tasks per thread.
        let gr = layout.group_rows();
        let per_block = (pool.num_threads() * 8 * w.rows)
            .div_ceil(total_rows * token_blocks)
            .max(1);
        let rb = w.rows.div_ceil(per_block).clamp(16, 256).div_ceil(gr) * gr;
        let row_blocks = w.rows.div_ceil(rb);
        jobs.push(Job {
            w,
            layout,
            bytes: bytes.as_slice(),
            y: SendPtr(y.as_mut_ptr()),
            rb,
            row_blocks,
            first_task: num_tasks,
        });
        num_tasks += row_blocks * token_blocks;
    }
    pool.run(num_tasks, |task| {
        let j = jobs
            .iter()
            .rev()
            .find(|j| j.first_task <= task)
            .expect("task belongs to a job");
        let local = task - j.first_task;
        let (rbi, tbi) = (local % j.row_blocks, local / j.row_blocks);
        let n = j.w.rows;
        let rows = rbi * j.rb..((rbi + 1) * j.rb).min(n);
        let toks = tbi * tb..((tbi + 1) * tb).min(m);
        // SAFETY: each task writes only y[t, r] for its own rows × tokens of its own matrix.
        let y = unsafe { std::slice::from_raw_parts_mut(j.y.get(), m * n) };
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                simd_block::<avx512::Avx512>(j.layout, j.w, j.bytes, acts, rows, toks, y)
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => simd_block::<avx2::Avx2>(j.layout, j.w, j.bytes, acts, rows, toks, y),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => simd_block::<neon::Neon>(j.layout, j.w, j.bytes, acts, rows, toks, y),
            _ => {
                for t in toks {
                    for r in rows.clone() {
                        y[t * n + r] = portable::dot(j.layout, j.bytes, j.w, acts, r, t);
                    }
                }
            }
        }
    });
}

/// One task's rows × tokens through kernel set `K`, whose instruction set
/// the caller has checked this CPU supports.
#[allow(dead_code)]
fn simd_block<K: TileKernels>(
    layout: &QuantLayout,
    w: &PackedMatrix,
    bytes: &[u8],
    acts: &QuantizedActivations,
    rows: std::ops::Range<usize>,
    toks: std::ops::Range<usize>,
    y: &mut [f32],
) {
    let rec = layout.record();
    let g = Geometry {
        step: 2 * rec.total,
        blocks: w.blocks,
        rec,
        act_stride: acts.token_stride(),
        act_rec: acts.record,
        m: acts.m,
    };
    debug_assert!(
        !layout.f32_scales || layout.super_k.is_some(),
        "group records hold f16 scales"
    );
    let n = w.rows;
    assert!(y.len() >= acts.m * n);
    // Token tiles of up to K::MAX_TOKENS (at most 8), the last one shorter;
    // a tile never straddles the end of the 4-token groups that
    // `LlamaCppBatch` computes in another order (`SuperOrder::Gemm4`).
    let grouped_end = if layout.super_order(0, acts.m) == SuperOrder::Gemm4 {
        acts.m / 4 * 4
    } else {
        0
    };
    let tiles = |f: &mut dyn FnMut(usize, usize)| {
        let mut t = toks.start;
        while t < toks.end {
            let mut c = (toks.end - t).min(K::MAX_TOKENS);
            if t < grouped_end {
                c = c.min(grouped_end - t);
            }
            f(t, c);
            t += c;
        }
    };
    if layout.super16() {
        // `rows.start` is a multiple of 16 (row blocks are whole groups).
        for r in rows.clone().step_by(16) {
            let last = (r + 16).min(rows.end);
            if !K::SUPER16 {
                for t in toks.clone() {
                    for row in r..last {
                        y[t * n + row] = portable::dot(layout, bytes, w, acts, row, t);
                    }
                }
                continue;
            }
            let valid: u16 = if last - r == 16 {
                u16::MAX
            } else {
                (1u16 << (last - r)) - 1
            };
            let wp = bytes[w.record_offset(layout, r, 0)..].as_ptr();
            let yp = y[r..].as_mut_ptr();
            tiles(&mut |t, c| {
                let ap = acts.token(t).as_ptr();
                macro_rules! run {
                    ($bits:literal) => {
                        match c {
                            8 => K::tile16_super::<$bits, 8>(&g, wp, ap, t, yp, n, valid),
                            7 => K::tile16_super::<$bits, 7>(&g, wp, ap, t, yp, n, valid),
                            6 => K::tile16_super::<$bits, 6>(&g, wp, ap, t, yp, n, valid),
                            5 => K::tile16_super::<$bits, 5>(&g, wp, ap, t, yp, n, valid),
                            4 => K::tile16_super::<$bits, 4>(&g, wp, ap, t, yp, n, valid),
                            3 => K::tile16_super::<$bits, 3>(&g, wp, ap, t, yp, n, valid),
                            2 => K::tile16_super::<$bits, 2>(&g, wp, ap, t, yp, n, valid),
                            _ => K::tile16_super::<$bits, 1>(&g, wp, ap, t, yp, n, valid),
                        }
                    };
                }
                // SAFETY: as for `tile16` below; the layout is a 16-row
                // K-quant one of these widths.
                unsafe {
                    match layout.bits {
                        Bits::B4 => run!(4),
                        Bits::B5 => run!(5),
                        other => unreachable!("no 16-row K-quant kernel for {other:?}"),
                    }
                }
            });
        }
        return;
    }
    if layout.lanes16() {
        // `rows.start` is a multiple of 16 (row blocks are whole groups).
        let sp = acts.sums.as_ptr();
        for r in rows.clone().step_by(16) {
            let valid: u16 = if rows.end - r >= 16 {
                u16::MAX
            } else {
                (1u16 << (rows.end - r)) - 1
            };
            let wp = bytes[w.record_offset(layout, r, 0)..].as_ptr();
            let yp = y[r..].as_mut_ptr();
            tiles(&mut |t, c| {
                let ap = acts.token(t).as_ptr();
                macro_rules! run {
                    ($bits:literal, $shift:literal, $fmin:literal) => {
                        match c {
                            8 => K::tile16::<$bits, $shift, $fmin, 8>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            7 => K::tile16::<$bits, $shift, $fmin, 7>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            6 => K::tile16::<$bits, $shift, $fmin, 6>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            5 => K::tile16::<$bits, $shift, $fmin, 5>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            4 => K::tile16::<$bits, $shift, $fmin, 4>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            3 => K::tile16::<$bits, $shift, $fmin, 3>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            2 => K::tile16::<$bits, $shift, $fmin, 2>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                            _ => K::tile16::<$bits, $shift, $fmin, 1>(
                                &g, wp, ap, sp, t, yp, n, valid,
                            ),
                        }
                    };
                }
                // SAFETY: the caller checked the CPU has K's instruction
                // set; the group and tokens exist; `y` holds m × n floats
                // and only rows r..rows.end of tokens t..t+c are written; the
                // layout matches the const parameters (dispatch below).
                unsafe {
                    match (layout.bits, layout.offset_shift, layout.float_min) {
                        (Bits::B4, Some(3), false) => run!(4, 3, false),
                        (Bits::B4, None, true) => run!(4, 0, true),
                        (Bits::B5, Some(4), false) => run!(5, 4, false),
                        (Bits::B5, None, true) => run!(5, 0, true),
                        (Bits::B8, Some(7), false) => run!(8, 7, false),
                        other => unreachable!("no kernel for packed layout {other:?}"),
                    }
                }
            });
        }
        return;
    }
    macro_rules! run_tile {
        ($c:literal, $row:expr, $tok:expr) => {{
            let mut out = [[0f32; $c]; 8];
            let wp = bytes[w.record_offset(layout, $row, 0)..].as_ptr();
            let ap = acts.token($tok).as_ptr();
            let sp = acts.sums.as_ptr();
            let order = layout.super_order($tok, acts.m);
            // SAFETY: the caller checked the CPU has K's instruction set;
            // the pairs and tokens of the tile exist (checked by the loops
            // below); the layout matches the const parameters (dispatch below).
            unsafe {
                match (layout.super_k, layout.bits) {
                    (Some(SuperK::Mins), Bits::B4) => {
                        K::tile_super::<4, 0, 2, $c>(&g, wp, ap, order, &mut out)
                    }
                    (Some(SuperK::Mins), Bits::B5) => {
                        K::tile_super::<5, 0, 2, $c>(&g, wp, ap, order, &mut out)
                    }
                    (Some(SuperK::Signed16), Bits::B6) => {
                        K::tile_super::<6, 1, 2, $c>(&g, wp, ap, order, &mut out)
                    }
                    (Some(k), b) => unreachable!("no kernel for {k:?} with {b:?}"),
                    (None, _) => match (layout.bits, layout.offset_shift, layout.float_min) {
                        (Bits::B4, Some(3), false) => {
                            K::tile_lanes8::<4, 3, false, $c>(&g, wp, ap, sp, $tok, &mut out)
                        }
                        (Bits::B4, None, true) => {
                            K::tile_lanes8::<4, 0, true, $c>(&g, wp, ap, sp, $tok, &mut out)
                        }
                        (Bits::B5, Some(4), false) => {
                            K::tile_lanes8::<5, 4, false, $c>(&g, wp, ap, sp, $tok, &mut out)
                        }
                        (Bits::B5, None, true) => {
                            K::tile_lanes8::<5, 0, true, $c>(&g, wp, ap, sp, $tok, &mut out)
                        }
                        (Bits::B8, Some(7), false) => {
                            K::tile_lanes8::<8, 7, false, $c>(&g, wp, ap, sp, $tok, &mut out)
                        }
                        other => unreachable!("no kernel for packed layout {other:?}"),
                    },
                }
            }
            for (i, row_out) in out.iter().enumerate().take(4) {
                if $row + i < rows.end {
                    for (j, &v) in row_out.iter().enumerate() {
                        y[($tok + j) * n + $row + i] = v;
                    }
                }
            }
        }};
    }
    // One group (two pairs, four rows; the last one zero-padded) per tile.
    // `rows.start` is a multiple of 4 (row blocks are).
    for r in rows.clone().step_by(4) {
        tiles(&mut |t, c| match c {
            8 => run_tile!(8, r, t),
            7 => run_tile!(7, r, t),
            6 => run_tile!(6, r, t),
            5 => run_tile!(5, r, t),
            4 => run_tile!(4, r, t),
            3 => run_tile!(3, r, t),
            2 => run_tile!(2, r, t),
            _ => run_tile!(1, r, t),
        });
    }
}

/// Float weights (F32/F16/BF16 files: tests and tiny models): plain f32 dots.
fn matmul_f32(pool: &WorkerPool, x: &[f32], m: usize, w: &PackedMatrix, wf: &[f32], y: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    let yp = SendPtr(y.as_mut_ptr());
    let rb = 16;
    pool.run(n.div_ceil(rb), |t| {
        for r in t * rb..((t + 1) * rb).min(n) {
            let wr = &wf[r * k..(r + 1) * k];
            for i in 0..m {
                let s: f32 = x[i * k..(i + 1) * k]
                    .iter()
                    .zip(wr)
                    .map(|(a, b)| a * b)
                    .sum();
                // SAFETY: task t writes only column block t of y.
                unsafe { *yp.get().add(i * n + r) = s };
            }
        }
    });
}

#[cfg(test)]
mod tests;
