//! Packed kernels against the scalar reference (tolerance) and, for SIMD,
//! against the portable kernel (bit for bit).

use fulcrum_gguf::GgmlType;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;
use crate::quant::quantize_row;

const QUANT_TYPES: [GgmlType; 8] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..rows {
        let row: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        bytes.extend(quantize_row(ty, &row));
    }
    bytes
}

/// Every output through the portable kernel.
fn portable_all(w: &PackedMatrix, acts: &QuantizedActivations) -> Vec<f32> {
    let PackedData::Quant { layout, bytes } = &w.data else {
        unreachable!()
    };
    let mut y = vec![0f32; acts.m * w.rows];
    for t in 0..acts.m {
        for r in 0..w.rows {
            y[t * w.rows + r] = portable::dot(layout, bytes.as_slice(), w, acts, r, t);
        }
    }
    y
}

/// `x·wᵀ` (`x`: `[m, w.cols]`) with `w` packed for `numerics`.
fn product(
    pool: &WorkerPool,
    w: &WeightMatrix,
    x: &[f32],
    m: usize,
    numerics: Numerics,
) -> Vec<f32> {
    let mut y = vec![0f32; m * w.rows];
    let packed = PackedMatrix::pack_with(w, numerics);
    matmul(pool, x, m, &packed, &mut y, &mut MatmulScratch::default());
    y
}

const ALL_NUMERICS: [Numerics; 3] = [Numerics::Fast, Numerics::LlamaCpp, Numerics::LlamaCppBatch];

fn compare(ty: GgmlType, m: usize, n: usize, k: usize, seed: u64) {
    for numerics in ALL_NUMERICS {
        compare_with(ty, m, n, k, seed, numerics);
    }
}

fn compare_with(ty: GgmlType, m: usize, n: usize, k: usize, seed: u64, numerics: Numerics) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = random_matrix(ty, n, k, &mut rng);
    let w = WeightMatrix::new(ty, n, k, &data).unwrap();
    let packed = PackedMatrix::pack_with(&w, numerics);
    let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let mut want = vec![0f32; m * n];
    matmul_reference(&x, m, &w, &mut want);
    let pool = WorkerPool::new(2);
    for isa in Isa::all_supported() {
        let mut got = vec![0f32; m * n];
        let mut scratch = MatmulScratch::default();
        matmul_on(isa, &pool, &x, m, &packed, &mut got, &mut scratch);
        // Both quantize activations to 8 bits per 32 values (the K-quant
        // reference per 256), so they differ by activation rounding only.
        let scale: f32 = want.iter().map(|v| v.abs()).fold(0.0, f32::max).max(1.0);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 0.02 * scale,
                "{ty} {numerics} {isa} m{m} n{n} k{k} [{i}]: {a} vs reference {b}"
            );
        }
        // Every kernel must agree with the portable one, bit for bit.
        let port = portable_all(&packed, &scratch.acts);
        assert!(
            got.iter()
                .zip(&port)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{ty} {numerics} m{m} n{n} k{k}: the {isa} kernel differs from portable"
        );
    }
}

/// `LlamaCppBatch` follows llama.cpp's batched K-quant kernels: Q4_K's
/// 4-token GEMM changes the first 4⌊m/4⌋ tokens of a product, the tiled
/// Q6_K matmul every token once m ≥ 8 — by rounding only; every other
/// output is exactly what `LlamaCpp` computes.
#[test]
fn llama_cpp_batch_orders_change_only_their_tokens() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for ty in QUANT_TYPES {
        for m in [7, 9] {
            let (n, k) = (24, 1024);
            let data = random_matrix(ty, n, k, &mut rng);
            let w = WeightMatrix::new(ty, n, k, &data).unwrap();
            // Large activations make the different roundings show.
            let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-50.0..50.0)).collect();
            let pool = WorkerPool::new(2);
            let run = |numerics| product(&pool, &w, &x, m, numerics);
            let (single, batch) = (run(Numerics::LlamaCpp), run(Numerics::LlamaCppBatch));
            let same = |t: usize| {
                (0..n).all(|r| single[t * n + r].to_bits() == batch[t * n + r].to_bits())
            };
            let reordered = |t: usize| match ty {
                GgmlType::Q4_K => t < m / 4 * 4,
                GgmlType::Q6_K => m >= 8,
                _ => false,
            };
            for t in 0..m {
                if !reordered(t) {
                    assert!(same(t), "{ty} m{m}: token {t} changed");
                }
            }
            if (0..m).any(reordered) {
                assert!(
                    (0..m).any(|t| !same(t)),
                    "{ty} m{m}: the batch order changed nothing"
                );
            }
            let scale = single.iter().map(|v| v.abs()).fold(1.0f32, f32::max);
            for (a, b) in single.iter().zip(&batch) {
                assert!((a - b).abs() <= 1e-5 * scale, "{ty} m{m}: {a} vs {b}");
            }
        }
    }
}

/// Q4_K and Q5_K are computed in 16-row groups (except with
/// `LlamaCppBatch`), in llama.cpp's single-token order, which the
/// pair-record kernels of `LlamaCppBatch` also take for Q5_K and for Q4_K's
/// tokens past the 4-token groups: those outputs must be the same bits from
/// both layouts.
#[test]
fn sixteen_row_k_quants_equal_the_pair_kernels() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for ty in [GgmlType::Q4_K, GgmlType::Q5_K] {
        let (m, n, k) = (11, 37, 768);
        let data = random_matrix(ty, n, k, &mut rng);
        let w = WeightMatrix::new(ty, n, k, &data).unwrap();
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-50.0..50.0)).collect();
        let pool = WorkerPool::new(2);
        let run = |numerics| product(&pool, &w, &x, m, numerics);
        let batch = run(Numerics::LlamaCppBatch);
        let first = if ty == GgmlType::Q4_K { m / 4 * 4 } else { 0 };
        for numerics in [Numerics::Fast, Numerics::LlamaCpp] {
            let y = run(numerics);
            for t in first..m {
                for r in 0..n {
                    assert_eq!(
                        y[t * n + r].to_bits(),
                        batch[t * n + r].to_bits(),
                        "{ty} {numerics}: token {t} row {r}"
                    );
                }
            }
        }
    }
}

/// The two summation orders compute the same sums up to float rounding.
#[test]
fn numerics_differ_only_in_rounding() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for ty in QUANT_TYPES {
        let (m, n, k) = (5, 40, 1024);
        let data = random_matrix(ty, n, k, &mut rng);
        let w = WeightMatrix::new(ty, n, k, &data).unwrap();
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let pool = WorkerPool::new(2);
        let run = |numerics| product(&pool, &w, &x, m, numerics);
        let (fast, llama) = (run(Numerics::Fast), run(Numerics::LlamaCpp));
        let scale = llama.iter().map(|v| v.abs()).fold(1.0f32, f32::max);
        for (a, b) in fast.iter().zip(&llama) {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{ty}: fast {a} vs llama.cpp order {b}"
            );
        }
    }
}

#[test]
fn every_format_matches_the_reference() {
    for (i, ty) in QUANT_TYPES.into_iter().enumerate() {
        let k = if ty.block_size() == 256 { 768 } else { 576 };
        for (m, n) in [(1, 13), (3, 8), (7, 33), (17, 5), (9, 50)] {
            compare(ty, m, n, k, i as u64 * 100 + m as u64);
        }
    }
}

#[test]
fn odd_rows_and_short_rows() {
    for ty in [GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q8_0] {
        for k in [32, 64, 96, 160] {
            for n in [1, 2, 3, 5, 7] {
                compare(ty, 2, n, k, (k * n) as u64);
            }
        }
    }
    compare(GgmlType::Q6_K, 5, 9, 256, 1);
    compare(GgmlType::Q4_K, 5, 9, 512, 2);
}

#[test]
fn batch_and_threads_do_not_change_results() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for (ty, numerics) in QUANT_TYPES
        .into_iter()
        .flat_map(|t| [(t, Numerics::Fast), (t, Numerics::LlamaCpp)])
    {
        let k = 512;
        let (n, m) = (37, 23);
        let data = random_matrix(ty, n, k, &mut rng);
        let packed =
            PackedMatrix::pack_with(&WeightMatrix::new(ty, n, k, &data).unwrap(), numerics);
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut s = MatmulScratch::default();
        let mut all = vec![0f32; m * n];
        matmul(&WorkerPool::new(2), &x, m, &packed, &mut all, &mut s);
        for (threads, tok) in [(1, 0), (3, 5), (2, 22)] {
            let mut one = vec![0f32; n];
            matmul(
                &WorkerPool::new(threads),
                &x[tok * k..(tok + 1) * k],
                1,
                &packed,
                &mut one,
                &mut s,
            );
            assert!(
                one.iter()
                    .zip(&all[tok * n..(tok + 1) * n])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{ty} {numerics} token {tok}"
            );
        }
    }
}

#[test]
fn float_weights() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let (m, n, k) = (3, 7, 40);
        let data = random_matrix(ty, n, k, &mut rng);
        let w = WeightMatrix::new(ty, n, k, &data).unwrap();
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (mut want, mut got) = (vec![0f32; m * n], vec![0f32; m * n]);
        matmul_reference(&x, m, &w, &mut want);
        matmul(
            &WorkerPool::new(2),
            &x,
            m,
            &PackedMatrix::pack(&w),
            &mut got,
            &mut MatmulScratch::default(),
        );
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random shapes and edge values (zeros, huge, tiny) for every format.
    #[test]
    fn random_shapes_and_edge_values(t in 0usize..8, order in 0usize..3, m in 1usize..11, n in 1usize..40, groups in 1usize..4, edge in 0u8..4, seed in any::<u64>()) {
        let ty = QUANT_TYPES[t];
        let k = groups * ty.block_size();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data = random_matrix(ty, n, k, &mut rng);
        let w = WeightMatrix::new(ty, n, k, &data).unwrap();
        let packed = PackedMatrix::pack_with(&w, ALL_NUMERICS[order]);
        let x: Vec<f32> = (0..m * k).map(|i| match edge {
            0 => rng.gen_range(-1.0..1.0),
            1 => 0.0,
            2 => if i % 7 == 0 { 1e4 } else { 1e-6 },
            _ => if i % 2 == 0 { 3.0 } else { -3.0 },
        }).collect();
        let mut want = vec![0f32; m * n];
        matmul_reference(&x, m, &w, &mut want);
        let scale: f32 = want.iter().map(|v| v.abs()).fold(0.0, f32::max).max(1e-3);
        for isa in Isa::all_supported() {
            let mut s = MatmulScratch::default();
            let mut got = vec![0f32; m * n];
            matmul_on(isa, &WorkerPool::new(2), &x, m, &packed, &mut got, &mut s);
            for (a, b) in got.iter().zip(&want) {
                prop_assert!(a.is_finite());
                prop_assert!((a - b).abs() <= 0.03 * scale, "{} {} {} vs {}", ty, isa, a, b);
            }
            let port = portable_all(&packed, &s.acts);
            prop_assert!(got.iter().zip(&port).all(|(a, b)| a.to_bits() == b.to_bits()), "{} {}", ty, isa);
        }
    }
}
