use super::*;
use crate::record::RequestRecord;
use crate::slo::Slo;

pub(crate) fn outcome(label: &str, throughput_scale: f64, ttft: f64, tpot: f64) -> SweepOutcome {
    let records: Vec<RequestRecord> = (0..10)
        .map(|_| RequestRecord {
            ttft_ms: Some(ttft),
            tpot_ms: Some(tpot),
            e2e_ms: ttft + 9.0 * tpot,
            prompt_tokens: 100,
            output_tokens: (10.0 * throughput_scale) as u64,
            ..RequestRecord::default()
        })
        .collect();
    let summary = RunSummary::from_records(
        &records,
        Duration::from_secs(1),
        &"ttft=1s".parse::<Slo>().unwrap(),
    );
    SweepOutcome {
        label: label.into(),
        policy: Policy::Chunked,
        max_num_seqs: 8,
        max_batched_tokens: 2048,
        request_rate: RequestRate::Infinite,
        summary,
    }
}

#[test]
fn report_marks_each_frontier_and_serializes_the_knobs() {
    let points = vec![
        outcome("seqs=1", 1.0, 100.0, 10.0),
        outcome("seqs=8", 4.0, 400.0, 20.0),
        outcome("worse", 2.0, 500.0, 30.0),
    ];
    let report = SweepReport::new(serde_json::json!({"seed": 0}), points);
    assert_eq!(report.frontier.ttft_p99, ["seqs=1", "seqs=8"]);
    assert_eq!(report.frontier.tpot_p99, ["seqs=1", "seqs=8"]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["points"][0]["policy"], "chunked");
    assert_eq!(json["points"][0]["request_rate"], "inf");
    assert_eq!(json["points"][1]["summary"]["output_throughput"], 400.0);
    let table = report.to_table();
    assert!(
        table.contains("seqs=8") && table.contains("worse"),
        "{table}"
    );
}

#[test]
fn a_sweep_with_no_latencies_cannot_be_plotted() {
    let mut point = outcome("failed", 1.0, 1.0, 1.0);
    point.summary.ttft_ms = None;
    let report = SweepReport::new(serde_json::Value::Null, vec![point]);
    let err = report
        .plot("t", std::path::Path::new("/nonexistent/plot"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no configuration measured both TTFT and TPOT"),
        "{err}"
    );
    assert!(report.frontier.ttft_p99.is_empty());
}
