//! The Pareto frontier of serving configurations.
//!
//! Every knob trades throughput against latency, so there is no single best
//! configuration, only ones that are not beaten: a configuration is on the
//! frontier when no other one has at least its throughput *and* at most its
//! latency, strictly better in one of them. Those are the only ones worth
//! choosing between; the rest waste either tokens or users' time.
//!
//! Sweeps have tens of points, so the frontier is found by comparing every
//! pair, O(n²·k) for k latency metrics: obviously right beats clever here.

use serde::{Deserialize, Serialize};

use crate::report::RunSummary;

/// One configuration's position in the trade-off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The configuration, as shown on plots (`max_num_seqs=8`, `chunked`).
    pub label: String,
    /// Output tokens per second.
    pub throughput: f64,
    pub ttft_p99_ms: f64,
    pub tpot_p99_ms: f64,
}

/// A latency metric to minimize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyAxis {
    TtftP99,
    TpotP99,
}

impl LatencyAxis {
    pub fn of(self, p: &OperatingPoint) -> f64 {
        match self {
            LatencyAxis::TtftP99 => p.ttft_p99_ms,
            LatencyAxis::TpotP99 => p.tpot_p99_ms,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LatencyAxis::TtftP99 => "TTFT p99",
            LatencyAxis::TpotP99 => "TPOT p99",
        }
    }
}

impl OperatingPoint {
    /// The point of a run, if it measured the latencies a frontier needs.
    pub fn from_summary(label: impl Into<String>, summary: &RunSummary) -> Option<OperatingPoint> {
        Some(OperatingPoint {
            label: label.into(),
            throughput: summary.output_throughput,
            ttft_p99_ms: summary.ttft_ms?.p99,
            tpot_p99_ms: summary.tpot_ms?.p99,
        })
    }

    fn is_finite(&self) -> bool {
        self.throughput.is_finite() && self.ttft_p99_ms.is_finite() && self.tpot_p99_ms.is_finite()
    }

    /// Whether `self` is at least as good as `other` everywhere (maximal
    /// throughput, minimal latency on `axes`) and better somewhere.
    fn dominates(&self, other: &OperatingPoint, axes: &[LatencyAxis]) -> bool {
        let no_worse =
            self.throughput >= other.throughput && axes.iter().all(|a| a.of(self) <= a.of(other));
        let better =
            self.throughput > other.throughput || axes.iter().any(|a| a.of(self) < a.of(other));
        no_worse && better
    }
}

/// Indices of the points no other point dominates on throughput and the
/// given latency axes, in order of increasing throughput. Points with a
/// non-finite figure are never on the frontier; identical points are both
/// kept.
pub fn pareto_frontier(points: &[OperatingPoint], axes: &[LatencyAxis]) -> Vec<usize> {
    let mut frontier: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].is_finite())
        .filter(|&i| {
            !points
                .iter()
                .any(|q| q.is_finite() && q.dominates(&points[i], axes))
        })
        .collect();
    frontier.sort_by(|&a, &b| points[a].throughput.total_cmp(&points[b].throughput));
    frontier
}

#[cfg(test)]
mod tests {
    use super::*;
    use LatencyAxis::*;

    fn p(label: &str, throughput: f64, ttft: f64, tpot: f64) -> OperatingPoint {
        OperatingPoint {
            label: label.into(),
            throughput,
            ttft_p99_ms: ttft,
            tpot_p99_ms: tpot,
        }
    }

    fn labels(points: &[OperatingPoint], idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| points[i].label.clone()).collect()
    }

    /// The shape a batch-size sweep has: throughput and latency both grow,
    /// with one configuration that is simply worse.
    fn sweep() -> Vec<OperatingPoint> {
        vec![
            p("seqs=1", 100.0, 50.0, 10.0),
            p("seqs=4", 350.0, 120.0, 14.0),
            p("seqs=16", 900.0, 400.0, 25.0),
            p("bad", 300.0, 500.0, 30.0), // beaten by seqs=4 on every axis
            p("seqs=64", 1200.0, 2000.0, 60.0),
        ]
    }

    #[test]
    fn dominated_configurations_are_left_out() {
        let pts = sweep();
        assert_eq!(
            labels(&pts, &pareto_frontier(&pts, &[TtftP99, TpotP99])),
            ["seqs=1", "seqs=4", "seqs=16", "seqs=64"]
        );
        assert_eq!(
            labels(&pts, &pareto_frontier(&pts, &[TtftP99])),
            ["seqs=1", "seqs=4", "seqs=16", "seqs=64"]
        );
    }

    #[test]
    fn one_axis_can_keep_a_point_the_other_drops() {
        // `chunked` has the best TPOT but worse TTFT than `decode-first` at
        // the same throughput: on the TTFT plot it is beaten, on TPOT it wins.
        let pts = vec![
            p("decode-first", 500.0, 100.0, 40.0),
            p("chunked", 500.0, 150.0, 20.0),
        ];
        assert_eq!(
            labels(&pts, &pareto_frontier(&pts, &[TtftP99])),
            ["decode-first"]
        );
        assert_eq!(
            labels(&pts, &pareto_frontier(&pts, &[TpotP99])),
            ["chunked"]
        );
        assert_eq!(
            labels(&pts, &pareto_frontier(&pts, &[TtftP99, TpotP99])),
            ["decode-first", "chunked"]
        );
    }

    #[test]
    fn throughput_alone_picks_the_maximum_and_ties_are_kept() {
        let pts = vec![
            p("a", 10.0, 1.0, 1.0),
            p("b", 20.0, 9.0, 9.0),
            p("c", 20.0, 9.0, 9.0),
        ];
        assert_eq!(labels(&pts, &pareto_frontier(&pts, &[])), ["b", "c"]);
    }

    #[test]
    fn non_finite_points_never_count() {
        let pts = vec![
            p("nan", f64::NAN, 1.0, 1.0),
            p("inf", 1e9, f64::INFINITY, 1.0),
            p("ok", 1.0, 5.0, 5.0),
        ];
        assert_eq!(
            labels(&pts, &pareto_frontier(&pts, &[TtftP99, TpotP99])),
            ["ok"]
        );
        assert!(pareto_frontier(&[], &[TtftP99]).is_empty());
    }

    #[test]
    fn brute_force_property_on_random_points() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..50 {
            let pts: Vec<_> = (0..12)
                .map(|i| {
                    p(
                        &i.to_string(),
                        rng.gen_range(0..5) as f64,
                        rng.gen_range(0..5) as f64,
                        rng.gen_range(0..5) as f64,
                    )
                })
                .collect();
            let front = pareto_frontier(&pts, &[TtftP99, TpotP99]);
            for (i, pt) in pts.iter().enumerate() {
                let beaten = pts.iter().any(|q| {
                    q.throughput >= pt.throughput
                        && q.ttft_p99_ms <= pt.ttft_p99_ms
                        && q.tpot_p99_ms <= pt.tpot_p99_ms
                        && (q.throughput, q.ttft_p99_ms, q.tpot_p99_ms)
                            != (pt.throughput, pt.ttft_p99_ms, pt.tpot_p99_ms)
                });
                assert_eq!(front.contains(&i), !beaten, "point {pt:?} in {pts:?}");
            }
        }
    }
}
