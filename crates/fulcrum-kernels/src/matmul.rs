//! The matrix product every linear layer runs: `Y[m×n] = X[m×k]·Wᵀ`.
//!
//! `W` is a GGUF weight tensor of `n` rows (output features) by `k` columns
//! (input features), each row a whole number of quant blocks; `X` holds the
//! activations of *all* tokens of a step, so one call reads each weight row
//! once however many sequences are batched. [`matmul_reference`] is the scalar
//! oracle; the fast kernel (later) will have the shape
//! `matmul(pool, x, m, w, y, scratch)` and must agree with it.

use thiserror::Error;

use crate::quant::{
    dequantize_row, load_blocks, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K,
    BlockQ6_K, BlockQ8_0, GgmlType, QuantBlock, WeightBlock,
};

/// A borrowed weight matrix in its stored (possibly quantized) form.
///
/// Build it with [`WeightMatrix::new`], which checks that `data` has exactly
/// the bytes of `rows × cols` values of `ty`. The fields are public for
/// pattern matching and cheap access; kernels re-check the invariant.
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    pub ty: GgmlType,
    /// `n`: output features, one stored row each.
    pub rows: usize,
    /// `k`: input features, a multiple of `ty.block_size()`.
    pub cols: usize,
    /// `[rows, row_bytes]`, GGUF encoding.
    pub data: &'a [u8],
}

/// Why bytes cannot be a weight matrix of the stated shape.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MatrixError {
    #[error("{ty} rows of {cols} columns are not a whole number of {block_size}-value blocks")]
    PartialBlock {
        ty: GgmlType,
        cols: usize,
        block_size: usize,
    },
    #[error("a {rows}×{cols} {ty} matrix does not fit in memory addresses")]
    TooLarge {
        ty: GgmlType,
        rows: usize,
        cols: usize,
    },
    #[error("a {rows}×{cols} {ty} matrix takes {expected} bytes, got {actual}")]
    DataLength {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        actual: usize,
    },
}

impl<'a> WeightMatrix<'a> {
    /// Checks that `data` holds exactly `rows × cols` values of `ty`.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, MatrixError> {
        let w = WeightMatrix {
            ty,
            rows,
            cols,
            data,
        };
        w.validate()?;
        Ok(w)
    }

    /// Re-checks the invariant [`WeightMatrix::new`] establishes.
    pub fn validate(&self) -> Result<(), MatrixError> {
        let WeightMatrix {
            ty,
            rows,
            cols,
            data,
        } = *self;
        let row_bytes = ty.bytes_for(cols as u64).ok_or(MatrixError::PartialBlock {
            ty,
            cols,
            block_size: ty.block_size(),
        })?;
        let expected = usize::try_from(row_bytes)
            .ok()
            .and_then(|b| b.checked_mul(rows))
            .ok_or(MatrixError::TooLarge { ty, rows, cols })?;
        if data.len() != expected {
            return Err(MatrixError::DataLength {
                ty,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(())
    }

    /// Bytes of one stored row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }

    /// The stored bytes of row `i`.
    ///
    /// # Panics
    /// If `i >= rows`.
    pub fn row(&self, i: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[i * rb..(i + 1) * rb]
    }
}

/// `y = x·wᵀ` with the scalar reference kernels.
///
/// `x` is `[m, k]` row-major, `y` is `[m, n]`, with `k = w.cols`,
/// `n = w.rows`. Each activation row is quantized once (Q8_0, Q8_1 or Q8_K,
/// as the weight format requires), then every output is one integer dot
/// product over a weight row. Float weights use plain f32 dot products.
/// Every output is reduced in a fixed order, independent of `m`.
///
/// # Panics
/// If `x.len() != m·k`, `y.len() != m·n`, or `w` breaks the invariant of
/// [`WeightMatrix::new`].
pub fn matmul_reference(x: &[f32], m: usize, w: &WeightMatrix, y: &mut [f32]) {
    if let Err(e) = w.validate() {
        panic!("invalid weight matrix: {e}");
    }
    assert_eq!(x.len(), m * w.cols, "x must be [m = {m}, k = {}]", w.cols);
    assert_eq!(y.len(), m * w.rows, "y must be [m = {m}, n = {}]", w.rows);
    if w.cols == 0 {
        y.fill(0.0);
        return;
    }
    match w.ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => matmul_float(x, m, w, y),
        GgmlType::Q4_0 => matmul_quant::<BlockQ4_0>(x, m, w, y),
        GgmlType::Q4_1 => matmul_quant::<BlockQ4_1>(x, m, w, y),
        GgmlType::Q5_0 => matmul_quant::<BlockQ5_0>(x, m, w, y),
        GgmlType::Q5_1 => matmul_quant::<BlockQ5_1>(x, m, w, y),
        GgmlType::Q8_0 => matmul_quant::<BlockQ8_0>(x, m, w, y),
        GgmlType::Q4_K => matmul_quant::<BlockQ4_K>(x, m, w, y),
        GgmlType::Q5_K => matmul_quant::<BlockQ5_K>(x, m, w, y),
        GgmlType::Q6_K => matmul_quant::<BlockQ6_K>(x, m, w, y),
    }
}

/// Quantized weights: activations to `W::Activation` once, then integer dots.
/// Loops weight rows outermost so each row is read once for all `m` tokens.
fn matmul_quant<W: WeightBlock>(x: &[f32], m: usize, w: &WeightMatrix, y: &mut [f32]) {
    let (k, n) = (w.cols, w.rows);
    let blocks_per_row = k / W::BLOCK;
    // [m, blocks_per_row]
    let xq: Vec<W::Activation> = x
        .chunks_exact(W::BLOCK)
        .map(W::Activation::quantize)
        .collect();
    // [n, blocks_per_row]; copied only if `data` is misaligned.
    let weights = load_blocks::<W>(w.data);
    for (j, w_row) in weights.chunks_exact(blocks_per_row).enumerate() {
        for (i, x_row) in xq.chunks_exact(blocks_per_row).enumerate().take(m) {
            y[i * n + j] = W::vec_dot(w_row, x_row);
        }
    }
}

/// F32/F16/BF16 weights: each row widened to f32 once, then f32 dots.
fn matmul_float(x: &[f32], m: usize, w: &WeightMatrix, y: &mut [f32]) {
    let (k, n) = (w.cols, w.rows);
    let mut w_row = vec![0.0f32; k]; // [k]
    for j in 0..n {
        dequantize_row(w.ty, w.row(j), &mut w_row);
        for (i, x_row) in x.chunks_exact(k).enumerate().take(m) {
            y[i * n + j] = x_row.iter().zip(&w_row).map(|(a, b)| a * b).sum();
        }
    }
}

/// The whole matrix as f32, `[rows, cols]` row-major (for tests and tools).
///
/// # Panics
/// If `w` breaks the invariant of [`WeightMatrix::new`].
pub fn dequantize_matrix_f32(w: &WeightMatrix) -> Vec<f32> {
    if let Err(e) = w.validate() {
        panic!("invalid weight matrix: {e}");
    }
    let mut out = vec![0.0; w.rows * w.cols]; // [rows, cols]
    dequantize_row(w.ty, w.data, &mut out);
    out
}

#[cfg(test)]
mod tests;
