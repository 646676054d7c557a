//! Latency statistics: mean and tail percentiles.
//!
//! Percentiles come from an HDR histogram at microsecond resolution with
//! three significant digits, so a report's p99 is within 0.1% of the exact
//! order statistic whatever the number of samples, in constant memory (a
//! sweep folds millions of inter-token gaps). The mean is exact.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Longest latency tracked at full precision: one hour, in µs. Longer values
/// are clamped (a request that slow has failed every SLO anyway).
const MAX_MICROS: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// Summary of one latency metric, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl LatencySummary {
    /// Summarizes millisecond samples; `None` when there are none, so a
    /// report says "no data" instead of a made-up zero.
    pub fn from_millis(samples: impl IntoIterator<Item = f64>) -> Option<LatencySummary> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        let (mut count, mut sum) = (0u64, 0.0f64);
        for ms in samples {
            // Negative or NaN samples cannot come from a clock; clamp rather
            // than poison the whole summary.
            let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
            count += 1;
            sum += ms;
            let micros = ((ms * 1e3).round() as u64).clamp(1, MAX_MICROS);
            hist.saturating_record(micros);
        }
        if count == 0 {
            return None;
        }
        let at = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
        Some(LatencySummary {
            mean: sum / count as f64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The nearest-rank percentile of a sorted slice: the smallest sample
    /// with at least `q` of the samples at or below it.
    fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    fn assert_close(got: f64, want: f64, what: &str) {
        // Three significant digits plus the 1 µs quantum.
        let tol = want.abs() * 1e-3 + 1e-3;
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} ± {tol}"
        );
    }

    #[test]
    fn percentiles_match_a_sorted_vector_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in [1usize, 2, 10, 99, 100, 1001, 20_000] {
            // Long-tailed like real latencies: mostly 5–50 ms, a few seconds.
            let samples: Vec<f64> = (0..n)
                .map(|_| {
                    if rng.gen_bool(0.02) {
                        rng.gen_range(500.0..5000.0)
                    } else {
                        rng.gen_range(5.0..50.0)
                    }
                })
                .collect();
            let s = LatencySummary::from_millis(samples.iter().copied()).unwrap();
            let mut sorted = samples.clone();
            sorted.sort_by(f64::total_cmp);
            assert_close(s.p50, nearest_rank(&sorted, 0.50), &format!("p50 of {n}"));
            assert_close(s.p90, nearest_rank(&sorted, 0.90), &format!("p90 of {n}"));
            assert_close(s.p99, nearest_rank(&sorted, 0.99), &format!("p99 of {n}"));
            let mean = samples.iter().sum::<f64>() / n as f64;
            assert!((s.mean - mean).abs() < 1e-9 * mean.max(1.0), "mean of {n}");
            assert!(s.p50 <= s.p90 && s.p90 <= s.p99);
        }
    }

    #[test]
    fn empty_input_has_no_summary_and_odd_samples_are_clamped() {
        assert_eq!(LatencySummary::from_millis(std::iter::empty()), None);
        let s = LatencySummary::from_millis([0.0, -3.0, f64::NAN, 1e12]).unwrap();
        assert_eq!(s.p50, 0.001, "sub-µs samples land in the lowest bucket");
        assert_close(s.p99, MAX_MICROS as f64 / 1e3, "clamped to an hour");
    }
}
