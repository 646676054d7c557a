//! Property checks shared by the format tests.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{dequantize_blocks, quantize_blocks, QuantBlock, WeightBlock};

/// Absolute slack for f16 subnormal scales (half the subnormal spacing, 2^-25,
/// times the largest quant magnitude, 128).
const SUBNORMAL_SLACK: f32 = 128.0 * 5.96e-8 / 2.0;

/// Random rows of `1..=3` blocks: values `scale·(u + shift)` with `u` uniform
/// in [−1, 1], a log-uniform `scale` in [10⁻², 10²] and a `shift` in [−1, 1]
/// so one-sided blocks (all positive, all negative) are common.
pub(crate) fn rows(block: usize) -> impl Strategy<Value = Vec<f32>> {
    (1usize..=3, -2.0f32..2.0, -1.0f32..1.0).prop_flat_map(move |(n, log_scale, shift)| {
        let scale = 10f32.powf(log_scale);
        prop::collection::vec(-1.0f32..1.0, n * block)
            .prop_map(move |u| u.into_iter().map(|v| scale * (v + shift)).collect())
    })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    })
}

fn round_trip<B: QuantBlock>(src: &[f32]) -> Vec<f32> {
    let blocks: Vec<B> = src.chunks_exact(B::BLOCK).map(B::quantize).collect();
    let mut out = vec![f32::NAN; src.len()];
    dequantize_blocks(&blocks, &mut out);
    out
}

/// Checks `|x − dequantize(quantize(x))| ≤ bound(block)` for every value on
/// random rows, and that zeros survive exactly.
pub(crate) fn check_round_trip<B: QuantBlock>(bound: impl Fn(&[f32]) -> f32) {
    assert!(
        round_trip::<B>(&vec![0.0; B::BLOCK])
            .iter()
            .all(|&v| v == 0.0),
        "{}: zeros",
        B::NAME
    );
    runner()
        .run(&rows(B::BLOCK), |src| {
            let out = round_trip::<B>(&src);
            for (blk_idx, (s, o)) in src.chunks(B::BLOCK).zip(out.chunks(B::BLOCK)).enumerate() {
                let tol = bound(s) + SUBNORMAL_SLACK;
                for (i, (a, b)) in s.iter().zip(o).enumerate() {
                    prop_assert!(
                        (a - b).abs() <= tol,
                        "{} block {blk_idx}[{i}]: {a} → {b}, tol {tol}",
                        B::NAME
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Error bound of the Q4_K/Q5_K reference quantizer: just over half a step of
/// the widest sub-block's range `max(0, max) − min(0, min)` over `nmax` levels.
pub(crate) fn min_max_k_bound(blk: &[f32], nmax: f32) -> f32 {
    let range = blk
        .chunks(32)
        .map(|sub| {
            let lo = sub.iter().fold(0.0f32, |a, &v| a.min(v));
            let hi = sub.iter().fold(0.0f32, |a, &v| a.max(v));
            hi - lo
        })
        .fold(0.0f32, f32::max);
    range / nmax * 0.53
}

/// Checks `W::vec_dot` on random rows against f32 dot products:
/// - against the dequantized weights and dequantized activations, where only
///   float rounding separates them (plus Q8_1's f16 `s` for min formats);
/// - against the original activations, within the 8-bit rounding of `x`.
pub(crate) fn check_vec_dot<W: WeightBlock>() {
    let strategy = rows(W::BLOCK).prop_flat_map(|w| {
        let n = w.len();
        (Just(w), prop::collection::vec(-1.0f32..1.0, n), 0.0f32..3.0)
    });
    runner()
        .run(&strategy, |(w_src, x_unit, x_log_scale)| {
            let x: Vec<f32> = x_unit
                .iter()
                .map(|v| v * 10f32.powf(x_log_scale - 1.0))
                .collect();
            let nb = w_src.len() / W::BLOCK;
            let wq: Vec<W> = w_src.chunks_exact(W::BLOCK).map(W::quantize).collect();
            let mut xq = vec![W::Activation::quantize(&[0.0; 256]); nb];
            quantize_blocks(&x, &mut xq);
            let (mut wd, mut xd) = (vec![0.0; w_src.len()], vec![0.0; x.len()]);
            dequantize_blocks(&wq, &mut wd);
            dequantize_blocks(&xq, &mut xd);

            let got = W::vec_dot(&wq, &xq);
            let exact: f64 = wd
                .iter()
                .zip(&xd)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let magnitude: f64 = wd
                .iter()
                .zip(&xd)
                .map(|(a, b)| f64::from((a * b).abs()))
                .sum();
            // Q8_1's `s` is f16: |m·s| errs by ≤ 2^-11 of |m|·Σ|x| per block.
            let s_slack: f64 = wd
                .chunks(W::BLOCK)
                .zip(xd.chunks(W::BLOCK))
                .map(|(wb, xb)| {
                    let wmax = wb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                    f64::from(wmax) * xb.iter().map(|v| f64::from(v.abs())).sum::<f64>() * 1e-3
                })
                .sum();
            let tight = 1e-5 * magnitude
                + if W::Activation::NAME == "Q8_1" {
                    s_slack
                } else {
                    0.0
                }
                + 1e-9;
            prop_assert!(
                (f64::from(got) - exact).abs() <= tight,
                "{}: {got} vs {exact}, tol {tight}",
                W::NAME
            );

            let original: f64 = wd
                .iter()
                .zip(&x)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let x_err: f64 = wd
                .chunks(W::BLOCK)
                .zip(x.chunks(W::BLOCK))
                .map(|(wb, xb)| {
                    let step_half = f64::from(xb.iter().fold(0.0f32, |a, v| a.max(v.abs())))
                        * (1.0 / 254.0 + 1e-3);
                    step_half * wb.iter().map(|v| f64::from(v.abs())).sum::<f64>()
                })
                .sum();
            prop_assert!(
                (f64::from(got) - original).abs() <= tight + x_err,
                "{}: {got} vs f32 {original}, tol {}",
                W::NAME,
                tight + x_err
            );
            Ok(())
        })
        .unwrap();
}
