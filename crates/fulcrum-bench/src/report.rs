//! What a run measured: the aggregate a sweep compares ([`RunSummary`]) and
//! the full report a user keeps ([`Report`]: summary, configuration and every
//! request). Throughputs divide by the wall time of the whole run, from the
//! first send to the last byte, so a server that makes the tail wait is
//! charged for it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::RequestRecord;
use crate::slo::Slo;
use crate::stats::LatencySummary;

/// The aggregate figures of one run (one point of a sweep).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub completed: usize,
    pub failed: usize,
    pub duration_s: f64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Prompt plus output tokens per second.
    pub total_token_throughput: f64,
    /// Requests per second that met the SLO; `None` when no SLO was given.
    pub goodput: Option<f64>,
    /// The SLO goodput was measured against, canonical spelling.
    pub slo: Option<String>,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub ttft_ms: Option<LatencySummary>,
    pub tpot_ms: Option<LatencySummary>,
    pub itl_ms: Option<LatencySummary>,
    pub e2e_ms: Option<LatencySummary>,
    /// Distinct failure reasons and how often each occurred.
    pub errors: BTreeMap<String, usize>,
}

impl RunSummary {
    /// Folds per-request records into the run's figures. Latency statistics
    /// and token totals cover successful requests only: a request that
    /// failed fast would otherwise flatter the latency.
    pub fn from_records(records: &[RequestRecord], duration: Duration, slo: &Slo) -> RunSummary {
        let duration_s = duration.as_secs_f64();
        let per_s = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.is_ok()).collect();
        let total_input_tokens: u64 = ok.iter().map(|r| r.prompt_tokens).sum();
        let total_output_tokens: u64 = ok.iter().map(|r| r.output_tokens).sum();
        let mut errors = BTreeMap::new();
        for error in records.iter().filter_map(|r| r.error.as_ref()) {
            *errors.entry(error.clone()).or_insert(0) += 1;
        }
        RunSummary {
            completed: ok.len(),
            failed: records.len() - ok.len(),
            duration_s,
            request_throughput: per_s(ok.len() as f64),
            output_throughput: per_s(total_output_tokens as f64),
            total_token_throughput: per_s((total_input_tokens + total_output_tokens) as f64),
            goodput: (!slo.is_empty()).then(|| slo.goodput(records, duration_s)),
            slo: (!slo.is_empty()).then(|| slo.to_string()),
            total_input_tokens,
            total_output_tokens,
            ttft_ms: LatencySummary::from_millis(ok.iter().filter_map(|r| r.ttft_ms)),
            tpot_ms: LatencySummary::from_millis(ok.iter().filter_map(|r| r.tpot_ms)),
            itl_ms: LatencySummary::from_millis(ok.iter().flat_map(|r| r.itl_ms.iter().copied())),
            e2e_ms: LatencySummary::from_millis(ok.iter().map(|r| r.e2e_ms)),
            errors,
        }
    }

    /// The human-readable table `bench serve` prints.
    pub fn to_table(&self, title: &str) -> String {
        let mut t = String::new();
        let rule = "─".repeat(62);
        let _ = writeln!(t, "{title}\n{rule}");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(t, "{name:<34}{value:>28}");
        };
        row(
            "requests completed / failed",
            format!("{} / {}", self.completed, self.failed),
        );
        row("duration", format!("{:.2} s", self.duration_s));
        row(
            "input / output tokens",
            format!("{} / {}", self.total_input_tokens, self.total_output_tokens),
        );
        row(
            "request throughput",
            format!("{:.2} req/s", self.request_throughput),
        );
        row(
            "output token throughput",
            format!("{:.1} tok/s", self.output_throughput),
        );
        row(
            "total token throughput",
            format!("{:.1} tok/s", self.total_token_throughput),
        );
        match (&self.slo, self.goodput) {
            (Some(slo), Some(goodput)) => {
                row(&format!("goodput ({slo})"), format!("{goodput:.2} req/s"))
            }
            _ => row("goodput", "(no --slo given)".to_string()),
        }
        let _ = writeln!(
            t,
            "{rule}\n{:<10}{:>13}{:>13}{:>13}{:>13}",
            "ms", "mean", "p50", "p90", "p99"
        );
        for (name, summary) in [
            ("TTFT", self.ttft_ms),
            ("TPOT", self.tpot_ms),
            ("ITL", self.itl_ms),
            ("E2E", self.e2e_ms),
        ] {
            let _ = match summary {
                Some(s) => writeln!(
                    t,
                    "{name:<10}{:>13.2}{:>13.2}{:>13.2}{:>13.2}",
                    s.mean, s.p50, s.p90, s.p99
                ),
                None => writeln!(t, "{name:<10}{:>13}", "no data"),
            };
        }
        let _ = write!(t, "{rule}");
        for (error, count) in self.errors.iter().take(5) {
            let _ = write!(t, "\n{count} × {error}");
        }
        if self.errors.len() > 5 {
            let _ = write!(t, "\n… and {} other errors", self.errors.len() - 5);
        }
        t
    }
}

/// A whole run: the summary (flattened, so its fields are the report's
/// top-level keys), what was run, and every request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The configuration as the producer of the report describes it.
    pub config: serde_json::Value,
    pub requests: Vec<RequestRecord>,
}

impl Report {
    pub fn new(
        config: serde_json::Value,
        records: Vec<RequestRecord>,
        duration: Duration,
        slo: &Slo,
    ) -> Report {
        Report {
            summary: RunSummary::from_records(&records, duration, slo),
            config,
            requests: records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ttft: f64, e2e: f64, prompt: u64, output: u64) -> RequestRecord {
        RequestRecord {
            ttft_ms: Some(ttft),
            tpot_ms: (output > 1).then(|| (e2e - ttft) / (output - 1) as f64),
            e2e_ms: e2e,
            itl_ms: vec![(e2e - ttft) / 2.0; 2],
            prompt_tokens: prompt,
            output_tokens: output,
            ..RequestRecord::default()
        }
    }

    #[test]
    fn aggregates_count_successes_and_divide_by_wall_time() {
        let records = vec![
            ok(100.0, 1100.0, 10, 11),
            ok(300.0, 2300.0, 20, 21),
            RequestRecord::failure("HTTP 503 Service Unavailable", Duration::from_millis(2)),
            RequestRecord::failure("HTTP 503 Service Unavailable", Duration::from_millis(3)),
        ];
        let slo: Slo = "ttft=200ms".parse().unwrap();
        let s = RunSummary::from_records(&records, Duration::from_secs(2), &slo);
        assert_eq!((s.completed, s.failed), (2, 2));
        assert_eq!((s.total_input_tokens, s.total_output_tokens), (30, 32));
        assert_eq!(s.request_throughput, 1.0);
        assert_eq!(s.output_throughput, 16.0);
        assert_eq!(s.total_token_throughput, 31.0);
        assert_eq!(s.goodput, Some(0.5));
        assert_eq!(s.errors["HTTP 503 Service Unavailable"], 2);
        let e2e = s.e2e_ms.unwrap();
        assert!(
            (e2e.mean - 1700.0).abs() < 1e-9,
            "failures are not in the latency figures"
        );
        let table = s.to_table("run");
        assert!(
            table.contains("goodput (ttft=200ms)") && table.contains("2 × HTTP 503"),
            "{table}"
        );
    }

    #[test]
    fn report_json_has_the_summary_at_top_level() {
        let report = Report::new(
            serde_json::json!({"seed": 1}),
            vec![ok(10.0, 20.0, 1, 2)],
            Duration::from_secs(1),
            &Slo::default(),
        );
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "completed",
            "failed",
            "duration_s",
            "request_throughput",
            "output_throughput",
            "goodput",
            "ttft_ms",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(json["goodput"].is_null(), "no SLO, no goodput");
        assert_eq!(json["config"]["seed"], 1);
        assert_eq!(json["requests"].as_array().unwrap().len(), 1);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.summary, report.summary);
    }

    #[test]
    fn an_all_failed_run_has_no_latency_data() {
        let records = vec![RequestRecord::failure(
            "connection refused",
            Duration::from_millis(1),
        )];
        let s = RunSummary::from_records(&records, Duration::ZERO, &Slo::default());
        assert_eq!((s.completed, s.failed, s.request_throughput), (0, 1, 0.0));
        assert!(s.ttft_ms.is_none() && s.e2e_ms.is_none());
        assert!(s.to_table("x").contains("no data"));
    }
}
