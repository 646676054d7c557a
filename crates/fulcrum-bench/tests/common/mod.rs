//! Checks every end-to-end test applies to a report: complete (every key a
//! consumer reads) and consistent (totals equal sums over requests, every
//! request sent accounted for, percentiles ordered).

use fulcrum_bench::Report;
use serde_json::Value;

/// Asserts the report is complete and consistent; returns it as JSON.
pub fn assert_complete_and_consistent(report: &Report) -> Value {
    let json = serde_json::to_value(report).unwrap();
    for key in [
        "completed",
        "failed",
        "duration_s",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "goodput",
        "total_input_tokens",
        "total_output_tokens",
        "config",
        "requests",
    ] {
        assert!(json.get(key).is_some(), "report lacks `{key}`");
    }
    for metric in ["ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"] {
        let m = &json[metric];
        let [mean, p50, p90, p99] = ["mean", "p50", "p90", "p99"]
            .map(|k| m[k].as_f64().unwrap_or_else(|| panic!("{metric}.{k}")));
        assert!(mean > 0.0 && p50 <= p90 && p90 <= p99, "{metric}: {m}");
    }
    let s = &report.summary;
    let requests = &report.requests;
    assert_eq!(
        s.completed + s.failed,
        requests.len(),
        "every request accounted for"
    );
    assert!(
        requests.iter().enumerate().all(|(i, r)| r.index == i),
        "indices are 0..n in order"
    );
    let ok = || requests.iter().filter(|r| r.is_ok());
    assert_eq!(
        s.total_input_tokens,
        ok().map(|r| r.prompt_tokens).sum::<u64>()
    );
    assert_eq!(
        s.total_output_tokens,
        ok().map(|r| r.output_tokens).sum::<u64>()
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(close(
        s.request_throughput,
        s.completed as f64 / s.duration_s
    ));
    assert!(close(
        s.output_throughput,
        s.total_output_tokens as f64 / s.duration_s
    ));
    assert!(close(
        s.total_token_throughput,
        (s.total_input_tokens + s.total_output_tokens) as f64 / s.duration_s
    ));
    if let Some(goodput) = s.goodput {
        assert!(goodput <= s.request_throughput);
    }
    json
}
