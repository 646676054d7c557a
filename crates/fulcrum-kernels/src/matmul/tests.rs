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
fn constructor_rejects_bad_shapes() {
    let data = vec![0u8; 144];
    assert_eq!(
        WeightMatrix::new(GgmlType::Q4_K, 1, 100, &data).unwrap_err(),
        MatrixError::PartialBlock {
            ty: GgmlType::Q4_K,
            cols: 100,
            block_size: 256
        }
    );
    assert_eq!(
        WeightMatrix::new(GgmlType::Q4_K, 2, 256, &data).unwrap_err(),
        MatrixError::DataLength {
            ty: GgmlType::Q4_K,
            rows: 2,
            cols: 256,
            expected: 288,
            actual: 144
        }
    );
    assert!(matches!(
        WeightMatrix::new(GgmlType::Q8_0, usize::MAX, 32, &data).unwrap_err(),
        MatrixError::TooLarge { .. }
    ));
    let err = WeightMatrix::new(GgmlType::Q4_K, 2, 256, &data).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a 2×256 Q4_K matrix takes 288 bytes, got 144"
    );
    let w = WeightMatrix::new(GgmlType::Q4_K, 1, 256, &data).unwrap();
    assert_eq!((w.row_bytes(), w.row(0).len()), (144, 144));
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
