//! The batched matrix product every linear layer runs, `Y[m×n] = X[m×k]·Wᵀ`,
//! over *all* tokens of a step at once: [`matmul`] (and, for activations
//! already quantized, [`matmul_quantized_many`]) is the entry point.
//!
//! - [`WeightMatrix`] (`weight_matrix.rs`): a weight tensor as the GGUF file
//!   stores it, the input of packing.
//! - [`matmul_reference`] (`reference.rs`): the plain scalar product over
//!   the GGUF blocks, which no layer runs: every fast kernel is tested
//!   against it.
//! - [`PackedMatrix`] (`packed.rs`): weights repacked at load time into the
//!   records of `layout.rs` ([`QuantLayout`]), rows in groups of 16
//!   (K-quants: pairs), blocks of 32 the SIMD kernels consume directly.
//! - [`QuantizedActivations`] (`activations.rs`): each activation row quantized
//!   to 8 bits once per product (and reused for q/k/v, gate/up), rounded as
//!   llama.cpp rounds.
//! - Kernels: `portable.rs` states the arithmetic of each [`Numerics`] (fast:
//!   exact integer sums per block, blocks accumulated in sequence; llama.cpp's:
//!   8 float lanes per output) and is the kernel of CPUs without SIMD
//!   support. The SIMD kernels reproduce it bit for bit: `avx512/` (AVX-512
//!   VNNI, tiles of 16 rows — or, in llama.cpp's order and for K-quant
//!   pairs, 4 rows, `avx512/pairs.rs` — by up to 8 tokens), `avx2.rs` (AVX2
//!   and FMA, the same tiles by up to 4 tokens) and `neon.rs` (aarch64 NEON
//!   with `sdot`). Each implements `tiles.rs`'s `TileKernels`, whose driver
//!   `simd_block` runs a task's rows × tokens through any of them; the
//!   kernels' loops are written once, in `group_lanes.rs` (16-row groups)
//!   and `row_lanes.rs` (8 lanes per row), over a small trait of vector
//!   operations each instruction set implements, so its file holds only its
//!   intrinsics (AVX-512's pair kernels, which hold two rows per register,
//!   keep loops of their own).
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
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod group_lanes;
mod layout;
#[cfg(target_arch = "aarch64")]
mod neon;
mod packed;
mod portable;
mod raw;
mod reference;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod row_lanes;
mod same_input;
mod tiles;
mod weight_matrix;

pub use activations::{ActScheme, QuantizedActivations};
pub use layout::{Bits, Numerics, QuantLayout, RecordLayout, SuperK, SuperOrder};
pub use packed::{AlignedBytes, PackedData, PackedMatrix};
pub use reference::{dequantize_matrix_f32, matmul_reference};
pub use same_input::matmul_same_input;
pub use weight_matrix::{MatrixError, WeightMatrix};

use crate::isa::Isa;
use crate::pool::{SendPtr, WorkerPool};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use tiles::simd_block;

/// Buffers reused across products so the hot path does not allocate.
#[derive(Default)]
pub struct MatmulScratch {
    pub acts: QuantizedActivations,
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
    let m = acts.m;
    let tb = m.min(64);
    let (jobs, num_tasks) = plan_jobs(pool, acts, outs, m.div_ceil(tb));
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
        run_block(isa, j, acts, rows, toks, y);
    });
}

/// One matrix of a [`matmul_quantized_many`] call, split into `row_blocks`
/// blocks of `rb` rows (whole groups) × the token blocks: its tasks are
/// numbered from `first_task`, row block fastest.
struct Job<'a> {
    w: &'a PackedMatrix,
    layout: &'a QuantLayout,
    bytes: &'a [u8],
    /// `[m, w.rows]`.
    y: SendPtr<f32>,
    rb: usize,
    row_blocks: usize,
    first_task: usize,
}

/// The jobs of the products `outs` (checked against `acts`), and the
/// number of tasks of all of them.
fn plan_jobs<'a>(
    pool: &WorkerPool,
    acts: &QuantizedActivations,
    outs: &'a mut [(&PackedMatrix, &mut [f32])],
    token_blocks: usize,
) -> (Vec<Job<'a>>, usize) {
    let m = acts.m;
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
    (jobs, num_tasks)
}

/// Rows × tokens of one job through the kernels of `isa` (supported by this
/// CPU: the callers check).
fn run_block(
    isa: Isa,
    j: &Job,
    acts: &QuantizedActivations,
    rows: std::ops::Range<usize>,
    toks: std::ops::Range<usize>,
    y: &mut [f32],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => simd_block::<avx512::Avx512>(j.layout, j.w, j.bytes, acts, rows, toks, y),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => simd_block::<avx2::Avx2>(j.layout, j.w, j.bytes, acts, rows, toks, y),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => simd_block::<neon::Neon>(j.layout, j.w, j.bytes, acts, rows, toks, y),
        _ => {
            let n = j.w.rows;
            for t in toks {
                for r in rows.clone() {
                    y[t * n + r] = portable::dot(j.layout, j.bytes, j.w, acts, r, t);
                }
            }
        }
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
