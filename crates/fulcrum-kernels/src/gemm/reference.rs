//! The plain product `Y[m×n] = X[m×k]·Wᵀ`, straight from the GGUF blocks:
//! the scalar reference every fast kernel is tested against. The layers do
//! not run it; they run [`super::matmul`] over a [`super::PackedMatrix`].
//!
//! Each activation row is quantized as the weight format's integer dot
//! product requires (Q8_0, Q8_1 or Q8_K) and every output is that format's
//! scalar dot product (`quant`'s [`WeightBlock::vec_dot`]); float weights
//! are plain f32 dots. The fast kernels quantize activations and order their
//! float sums their own way (see `portable.rs`), so they agree with this
//! product within a tolerance, not bit for bit.

use super::WeightMatrix;
use crate::quant::{
    dequantize_row, load_blocks, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K,
    BlockQ6_K, BlockQ8_0, GgmlType, QuantBlock, WeightBlock,
};

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
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::quant::quantize_row;

    fn random(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
    }

    /// Quantizes a `[rows, cols]` f32 matrix to `ty`, one row at a time.
    fn quantize_matrix(ty: GgmlType, values: &[f32], cols: usize) -> Vec<u8> {
        values
            .chunks_exact(cols)
            .flat_map(|row| quantize_row(ty, row))
            .collect()
    }

    /// Activation block size used with weights of `ty` (1 for float weights).
    fn activation_block(ty: GgmlType) -> usize {
        match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            other => other.block_size(),
        }
    }

    #[test]
    fn matches_f32_matmul_over_dequantized_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let (k, n) = (512, 13);
        for ty in GgmlType::ALL {
            let data = quantize_matrix(ty, &random(&mut rng, n * k, 0.1), k);
            let w = WeightMatrix::new(ty, n, k, &data).unwrap();
            let wd = dequantize_matrix_f32(&w); // [n, k]
            for m in [1, 3, 7] {
                let x = random(&mut rng, m * k, 2.0); // [m, k]
                let mut y = vec![f32::NAN; m * n]; // [m, n]
                matmul_reference(&x, m, &w, &mut y);
                for i in 0..m {
                    let x_row = &x[i * k..(i + 1) * k];
                    for j in 0..n {
                        let w_row = &wd[j * k..(j + 1) * k];
                        let exact: f64 = x_row
                            .iter()
                            .zip(w_row)
                            .map(|(a, b)| f64::from(*a) * f64::from(*b))
                            .sum();
                        let magnitude: f64 = x_row
                            .iter()
                            .zip(w_row)
                            .map(|(a, b)| f64::from((a * b).abs()))
                            .sum();
                        // 8-bit activations err by ≤ half a step (amax/254) plus the f16 scale's share.
                        let ab = activation_block(ty);
                        let x_err: f64 = if ab == 1 {
                            0.0
                        } else {
                            x_row
                                .chunks(ab)
                                .zip(w_row.chunks(ab))
                                .map(|(xb, wb)| {
                                    let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                                    f64::from(amax)
                                        * (1.0 / 254.0 + 1e-3)
                                        * wb.iter().map(|v| f64::from(v.abs())).sum::<f64>()
                                })
                                .sum()
                        };
                        let tol = 1e-5 * magnitude + x_err + 1e-3 * magnitude.min(x_err);
                        let got = f64::from(y[i * n + j]);
                        assert!(
                            (got - exact).abs() <= tol,
                            "{ty} m={m} y[{i},{j}] = {got}, f32 {exact}, tol {tol}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn each_output_is_independent_of_the_batch() {
        // Determinism: a token's outputs are bit-identical alone or among 7.
        let mut rng = StdRng::seed_from_u64(11);
        let (k, n, m) = (256, 5, 7);
        let x = random(&mut rng, m * k, 1.0);
        for ty in [GgmlType::Q4_K, GgmlType::Q4_1, GgmlType::F16] {
            let data = quantize_matrix(ty, &random(&mut rng, n * k, 1.0), k);
            let w = WeightMatrix::new(ty, n, k, &data).unwrap();
            let mut batched = vec![0.0; m * n];
            matmul_reference(&x, m, &w, &mut batched);
            for i in 0..m {
                let mut alone = vec![0.0; n];
                matmul_reference(&x[i * k..(i + 1) * k], 1, &w, &mut alone);
                assert_eq!(alone, batched[i * n..(i + 1) * n], "{ty} token {i}");
            }
        }
    }

    #[test]
    fn misaligned_weight_bytes_give_the_same_result() {
        let mut rng = StdRng::seed_from_u64(3);
        let (k, n) = (256, 3);
        let data = quantize_matrix(GgmlType::Q6_K, &random(&mut rng, n * k, 1.0), k);
        let mut shifted = vec![0u8; data.len() + 1];
        shifted[1..].copy_from_slice(&data);
        let x = random(&mut rng, k, 1.0);
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        matmul_reference(
            &x,
            1,
            &WeightMatrix::new(GgmlType::Q6_K, n, k, &data).unwrap(),
            &mut a,
        );
        matmul_reference(
            &x,
            1,
            &WeightMatrix::new(GgmlType::Q6_K, n, k, &shifted[1..]).unwrap(),
            &mut b,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn empty_shapes_are_fine() {
        let w = WeightMatrix::new(GgmlType::Q8_0, 4, 0, &[]).unwrap();
        let mut y = vec![f32::NAN; 8];
        matmul_reference(&[], 2, &w, &mut y);
        assert_eq!(y, vec![0.0; 8]);
        let w = WeightMatrix::new(GgmlType::Q8_0, 0, 32, &[]).unwrap();
        matmul_reference(&[1.0; 64], 2, &w, &mut []);
        let w = WeightMatrix::new(GgmlType::Q8_0, 1, 32, &[0; 34]).unwrap();
        matmul_reference(&[], 0, &w, &mut []);
    }
}
