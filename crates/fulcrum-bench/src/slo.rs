//! Service-level objectives and goodput.
//!
//! Throughput alone rewards a server for making everyone wait; goodput counts
//! only the requests a user would have been happy with. An [`Slo`] bounds any
//! subset of TTFT, TPOT and end-to-end latency, spelled the way people say it:
//! `ttft=300ms,tpot=50ms,e2e=2s`.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::record::RequestRecord;

/// Latency bounds a request must meet to count towards goodput. An empty SLO
/// is met by every successful request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    #[error("empty SLO: expected e.g. `ttft=300ms,tpot=50ms` (metrics ttft, tpot, e2e)")]
    Empty,
    #[error("`{0}` is not `metric=value` (e.g. `ttft=300ms`)")]
    NotAPair(String),
    #[error("unknown SLO metric `{0}`: expected ttft, tpot or e2e")]
    UnknownMetric(String),
    #[error("`{0}` is given twice")]
    Duplicate(String),
    #[error("`{metric}={value}` needs a unit: ms or s (e.g. `{metric}={value}ms`)")]
    MissingUnit { metric: String, value: String },
    #[error("`{metric}={value}`: unknown unit `{unit}`, expected ms or s")]
    UnknownUnit {
        metric: String,
        value: String,
        unit: String,
    },
    #[error("`{metric}={value}`: `{number}` is not a number")]
    NotANumber {
        metric: String,
        value: String,
        number: String,
    },
    #[error("`{metric}={value}`: the bound must be greater than zero")]
    NotPositive { metric: String, value: String },
}

impl Slo {
    pub fn is_empty(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2e_ms.is_none()
    }

    /// Whether a request met every bound. Failed requests never do. A request
    /// with a single output token has no TPOT and meets any TPOT bound; one
    /// that streamed no text has no TTFT and meets no TTFT bound.
    pub fn is_met_by(&self, record: &RequestRecord) -> bool {
        if !record.is_ok() {
            return false;
        }
        let within = |bound: Option<f64>, value: Option<f64>, vacuous: bool| match (bound, value) {
            (None, _) => true,
            (Some(b), Some(v)) => v <= b,
            (Some(_), None) => vacuous,
        };
        within(self.ttft_ms, record.ttft_ms, false)
            && within(self.tpot_ms, record.tpot_ms, true)
            && within(self.e2e_ms, Some(record.e2e_ms), false)
    }

    /// Requests per second that met the SLO over a run of `duration_s`.
    pub fn goodput(&self, records: &[RequestRecord], duration_s: f64) -> f64 {
        if duration_s <= 0.0 {
            return 0.0;
        }
        records.iter().filter(|r| self.is_met_by(r)).count() as f64 / duration_s
    }
}

impl FromStr for Slo {
    type Err = SloError;

    fn from_str(spec: &str) -> Result<Slo, SloError> {
        let mut slo = Slo::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (metric, value) = part
                .split_once('=')
                .ok_or_else(|| SloError::NotAPair(part.to_string()))?;
            let (metric, value) = (metric.trim(), value.trim());
            let slot = match metric.to_ascii_lowercase().as_str() {
                "ttft" => &mut slo.ttft_ms,
                "tpot" => &mut slo.tpot_ms,
                "e2e" => &mut slo.e2e_ms,
                _ => return Err(SloError::UnknownMetric(metric.to_string())),
            };
            if slot.is_some() {
                return Err(SloError::Duplicate(metric.to_string()));
            }
            *slot = Some(parse_millis(metric, value)?);
        }
        if slo.is_empty() {
            return Err(SloError::Empty);
        }
        Ok(slo)
    }
}

/// `300ms` → 300.0, `1.5s` → 1500.0.
fn parse_millis(metric: &str, value: &str) -> Result<f64, SloError> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = (value[..split].trim(), value[split..].trim());
    let scale = match unit {
        "" => {
            return Err(SloError::MissingUnit {
                metric: metric.to_string(),
                value: value.to_string(),
            })
        }
        "ms" => 1.0,
        "s" => 1000.0,
        _ => {
            return Err(SloError::UnknownUnit {
                metric: metric.to_string(),
                value: value.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    let n: f64 = number.parse().map_err(|_| SloError::NotANumber {
        metric: metric.to_string(),
        value: value.to_string(),
        number: number.to_string(),
    })?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(SloError::NotPositive {
            metric: metric.to_string(),
            value: value.to_string(),
        });
    }
    Ok(n * scale)
}

/// The canonical spelling, in milliseconds: `ttft=300ms,tpot=50ms`.
impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("ttft", self.ttft_ms),
            ("tpot", self.tpot_ms),
            ("e2e", self.e2e_ms),
        ]
        .into_iter()
        .filter_map(|(name, ms)| ms.map(|ms| format!("{name}={ms}ms")))
        .collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for Slo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ttft: Option<f64>, tpot: Option<f64>, e2e: f64) -> RequestRecord {
        RequestRecord {
            ttft_ms: ttft,
            tpot_ms: tpot,
            e2e_ms: e2e,
            output_tokens: 10,
            ..RequestRecord::default()
        }
    }

    #[test]
    fn parses_any_subset_in_ms_or_s() {
        let slo: Slo = "ttft=300ms,tpot=50ms".parse().unwrap();
        assert_eq!(
            slo,
            Slo {
                ttft_ms: Some(300.0),
                tpot_ms: Some(50.0),
                e2e_ms: None
            }
        );
        let slo: Slo = " e2e = 2.5s , TTFT=1s ".parse().unwrap();
        assert_eq!(
            slo,
            Slo {
                ttft_ms: Some(1000.0),
                tpot_ms: None,
                e2e_ms: Some(2500.0)
            }
        );
        assert_eq!(slo.to_string(), "ttft=1000ms,e2e=2500ms");
        assert_eq!(slo.to_string().parse::<Slo>().unwrap(), slo);
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |s: &str| s.parse::<Slo>().unwrap_err().to_string();
        assert!(err("").contains("empty SLO"), "{}", err(""));
        assert_eq!(
            err("ttft"),
            "`ttft` is not `metric=value` (e.g. `ttft=300ms`)"
        );
        assert_eq!(
            err("latency=3ms"),
            "unknown SLO metric `latency`: expected ttft, tpot or e2e"
        );
        assert_eq!(
            err("ttft=300"),
            "`ttft=300` needs a unit: ms or s (e.g. `ttft=300ms`)"
        );
        assert_eq!(
            err("tpot=5us"),
            "`tpot=5us`: unknown unit `us`, expected ms or s"
        );
        assert_eq!(
            err("e2e=fastms"),
            "`e2e=fastms`: unknown unit `fastms`, expected ms or s"
        );
        assert_eq!(err("e2e=ms"), "`e2e=ms`: `` is not a number");
        assert_eq!(err("e2e=1.2.3s"), "`e2e=1.2.3s`: `1.2.3` is not a number");
        assert_eq!(
            err("ttft=0ms"),
            "`ttft=0ms`: the bound must be greater than zero"
        );
        assert_eq!(
            err("ttft=-5ms"),
            "`ttft=-5ms`: the bound must be greater than zero"
        );
        assert_eq!(err("ttft=1s,ttft=2s"), "`ttft` is given twice");
    }

    #[test]
    fn goodput_counts_only_requests_meeting_every_bound() {
        let slo: Slo = "ttft=100ms,tpot=10ms".parse().unwrap();
        let records = vec![
            record(Some(50.0), Some(5.0), 500.0),  // meets
            record(Some(150.0), Some(5.0), 500.0), // TTFT too slow
            record(Some(50.0), Some(20.0), 500.0), // TPOT too slow
            record(Some(100.0), None, 100.0),      // one token: TPOT vacuous, TTFT on the bound
            record(None, None, 100.0),             // no text streamed: no TTFT
            RequestRecord {
                error: Some("HTTP 500".into()),
                ..record(Some(1.0), Some(1.0), 2.0)
            },
        ];
        let met: Vec<bool> = records.iter().map(|r| slo.is_met_by(r)).collect();
        assert_eq!(met, [true, false, false, true, false, false]);
        assert_eq!(slo.goodput(&records, 4.0), 0.5);
        assert_eq!(
            Slo::default().goodput(&records, 1.0),
            5.0,
            "empty SLO: every success counts"
        );
        assert_eq!(slo.goodput(&records, 0.0), 0.0);
    }
}
