//! Several products of one input (a layer's q/k/v, or gate/up).

use super::{matmul, matmul_quantized_many, ActScheme, MatmulScratch, PackedData, PackedMatrix};
use crate::pool::WorkerPool;

/// `ys[i] = x·ws[i]ᵀ` for every matrix, all of `ws` having `x`'s columns
/// (`x`: `[m, cols]`, `ys[i]`: `[m, ws[i].rows]`).
///
/// When every matrix is quantized and reads the same activation scheme, `x`
/// is quantized once into `scratch` and all products run in one parallel
/// region (one hand-off to the workers instead of one per matrix, which
/// counts in single-token decode). Otherwise each product is a plain
/// [`matmul`]. Either way the outputs are bit-identical to separate
/// [`matmul`] calls: a matrix's activations are quantized the same way, and
/// every output element is computed inside one tile whatever the task split.
pub fn matmul_same_input(
    pool: &WorkerPool,
    x: &[f32],
    ws: &[&PackedMatrix],
    ys: &mut [&mut [f32]],
    scratch: &mut MatmulScratch,
) {
    assert_eq!(ws.len(), ys.len(), "one output per matrix");
    let Some(first) = ws.first() else {
        return;
    };
    let scheme = ActScheme::for_matrix(first);
    let shared = ws
        .iter()
        .all(|w| ActScheme::for_matrix(w) == scheme && matches!(w.data, PackedData::Quant { .. }));
    if shared {
        let m = x.len() / first.cols;
        scratch.acts.quantize(pool, x, m, first.cols, scheme);
        let mut outs: Vec<(&PackedMatrix, &mut [f32])> = ws
            .iter()
            .zip(ys.iter_mut())
            .map(|(w, y)| (*w, &mut **y))
            .collect();
        matmul_quantized_many(pool, &scratch.acts, &mut outs);
    } else {
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            matmul(pool, x, x.len() / w.cols, w, y, scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use fulcrum_gguf::GgmlType;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::gemm::Numerics;
    use crate::{quantize_row, WeightMatrix};

    /// A `rows × cols` matrix of type `ty` with random entries, packed.
    fn random_packed(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        numerics: Numerics,
        rng: &mut impl Rng,
    ) -> PackedMatrix {
        let mut bytes = Vec::new();
        for _ in 0..rows {
            let row: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
            match ty {
                GgmlType::F32 => bytes.extend(row.iter().flat_map(|v| v.to_le_bytes())),
                _ => bytes.extend(quantize_row(ty, &row)),
            }
        }
        let w = WeightMatrix::new(ty, rows, cols, &bytes).expect("well-formed matrix");
        PackedMatrix::pack_with(&w, numerics)
    }

    /// The outputs of [`matmul_same_input`] equal those of one [`matmul`] per
    /// matrix, bit for bit.
    fn check(types: &[GgmlType], numerics: Numerics, m: usize, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let cols = 512;
        // Different row counts, as q/k/v have under grouped-query attention.
        let ws: Vec<PackedMatrix> = types
            .iter()
            .enumerate()
            .map(|(i, &ty)| random_packed(ty, 32 + 16 * i, cols, numerics, &mut rng))
            .collect();
        let x: Vec<f32> = (0..m * cols).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let pool = WorkerPool::new(2);

        let mut want: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; m * w.rows]).collect();
        for (w, y) in ws.iter().zip(&mut want) {
            matmul(&pool, &x, m, w, y, &mut MatmulScratch::default());
        }
        let mut got: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; m * w.rows]).collect();
        let w_refs: Vec<&PackedMatrix> = ws.iter().collect();
        let mut y_refs: Vec<&mut [f32]> = got.iter_mut().map(|y| y.as_mut_slice()).collect();
        matmul_same_input(
            &pool,
            &x,
            &w_refs,
            &mut y_refs,
            &mut MatmulScratch::default(),
        );

        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{types:?} {numerics} m{m}: output {i} differs from a separate matmul"
            );
        }
    }

    const ALL_NUMERICS: [Numerics; 3] =
        [Numerics::Fast, Numerics::LlamaCpp, Numerics::LlamaCppBatch];

    /// All quantized with one activation scheme: the shared quantization.
    #[test]
    fn same_input_quantized_matches_separate_products() {
        let cases: [&[GgmlType]; 3] = [
            &[GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0],
            &[GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q8_0],
            &[GgmlType::Q4_K, GgmlType::Q6_K],
        ];
        for (seed, types) in cases.iter().enumerate() {
            for numerics in ALL_NUMERICS {
                for m in [1, 5, 9] {
                    check(types, numerics, m, seed as u64);
                }
            }
        }
    }

    /// Different schemes, or float weights among them: one product each.
    #[test]
    fn same_input_mixed_matches_separate_products() {
        let cases: [&[GgmlType]; 3] = [
            &[GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q8_0],
            &[GgmlType::Q6_K, GgmlType::F32],
            &[GgmlType::F32, GgmlType::F32],
        ];
        for (seed, types) in cases.iter().enumerate() {
            for numerics in ALL_NUMERICS {
                for m in [1, 5, 9] {
                    check(types, numerics, m, 10 + seed as u64);
                }
            }
        }
    }
}
