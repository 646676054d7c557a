//! The fast batched matrix product `Y[m×n] = X[m×k]·Wᵀ` (provisional:
//! parallel over output rows on top of the scalar reference, until the SIMD
//! kernels land).

use crate::matmul::{matmul_reference, WeightMatrix};
use crate::pool::{SendPtr, WorkerPool};

/// Buffers reused across calls so the hot path does not allocate.
#[derive(Default)]
pub struct MatmulScratch {
    y_part: Vec<f32>,
}

/// Output rows per task: large enough to amortize the per-task cost.
const ROWS_PER_TASK: usize = 64;

pub fn matmul(pool: &WorkerPool, x: &[f32], m: usize, w: &WeightMatrix, y: &mut [f32], _scratch: &mut MatmulScratch) {
    let n = w.rows;
    let rb = w.row_bytes();
    let tasks = n.div_ceil(ROWS_PER_TASK);
    let yp = SendPtr(y.as_mut_ptr());
    pool.run(tasks, |t| {
        let r0 = t * ROWS_PER_TASK;
        let r1 = (r0 + ROWS_PER_TASK).min(n);
        let sub = WeightMatrix { ty: w.ty, rows: r1 - r0, cols: w.cols, data: &w.data[r0 * rb..r1 * rb] };
        let mut part = vec![0f32; m * (r1 - r0)];
        if std::env::var("FULCRUM_F32_MATMUL").is_ok() {
            let wf = crate::matmul::dequantize_matrix_f32(&sub);
            for i in 0..m {
                for j in 0..(r1 - r0) {
                    part[i * (r1 - r0) + j] = x[i * w.cols..(i + 1) * w.cols].iter().zip(&wf[j * w.cols..(j + 1) * w.cols]).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>() as f32;
                }
            }
        } else {
            matmul_reference(x, m, &sub, &mut part);
        }
        for i in 0..m {
            for j in r0..r1 {
                // SAFETY: each task writes only columns r0..r1 of every row of y.
                unsafe { *yp.get().add(i * n + j) = part[i * (r1 - r0) + j - r0] };
            }
        }
    });
}
