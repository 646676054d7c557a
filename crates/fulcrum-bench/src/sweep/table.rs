//! The sweep's comparison table: one row per configuration, the figures a
//! reader compares across rows, and a mark on the rows that are on a Pareto
//! frontier (T: throughput vs TTFT p99, P: throughput vs TPOT p99).

use std::fmt::Write as _;

use super::{Frontiers, SweepOutcome};
use crate::stats::LatencySummary;

pub(super) fn comparison(points: &[SweepOutcome], frontier: &Frontiers) -> String {
    let width = points
        .iter()
        .map(|p| p.label.chars().count())
        .max()
        .unwrap_or(0)
        .max("configuration".len());
    let mut t = String::new();
    let header = format!(
        "{:<width$} {:>8} {:>6} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "configuration",
        "ok/fail",
        "req/s",
        "out tok/s",
        "goodput/s",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "TPOT p99",
        "frontier"
    );
    let rule = "─".repeat(header.chars().count());
    let _ = writeln!(t, "{header}\n{rule}");
    for p in points {
        let s = &p.summary;
        let ms = |l: Option<LatencySummary>, pick: fn(&LatencySummary) -> f64| {
            l.map_or_else(|| "—".to_string(), |l| format!("{:.0}", pick(&l)))
        };
        let marks = [
            (frontier.ttft_p99.contains(&p.label), 'T'),
            (frontier.tpot_p99.contains(&p.label), 'P'),
        ]
        .iter()
        .filter_map(|&(on, mark)| on.then_some(mark))
        .collect::<String>();
        let _ = writeln!(
            t,
            "{:<width$} {:>8} {:>6.2} {:>9.1} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            p.label,
            format!("{}/{}", s.completed, s.failed),
            s.request_throughput,
            s.output_throughput,
            s.goodput
                .map_or_else(|| "—".to_string(), |g| format!("{g:.2}")),
            ms(s.ttft_ms, |l| l.p50),
            ms(s.ttft_ms, |l| l.p99),
            ms(s.tpot_ms, |l| l.p50),
            ms(s.tpot_ms, |l| l.p99),
            marks,
        );
    }
    let _ = write!(
        t,
        "{rule}\nlatencies in ms; frontier: T = throughput vs TTFT p99, P = throughput vs TPOT p99"
    );
    t
}
