//! `bench sweep`: one workload, many engine configurations, one picture.
//!
//! Principal types:
//! - [`SweepGrid`] → [`SweepPoint`]s: the configurations to run.
//! - [`EngineBench`]: the model, loaded once, and a *fresh* engine per
//!   configuration — a KV cache or prefix cache carried over from the last
//!   configuration would flatter the next one.
//! - [`LoadDriver`]: how the load reaches an engine. [`InProcessDriver`]
//!   calls `add_request` directly (the scheduler's trade-off without HTTP
//!   overhead); the CLI adds one that puts the engine behind the real HTTP
//!   server.
//! - [`SweepOutcome`] per configuration, [`SweepReport`] for all of them:
//!   the comparison table, the Pareto frontiers, the plot and the JSON.
//!
//! Every configuration gets the same requests (a fresh [`Workload`] from
//! the same seed) on the same arrival schedule, so differences between rows
//! are the knobs' doing.

mod grid;
mod table;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use fulcrum_engine::{
    Engine, EngineConfig, EngineHandle, EngineOptions, Policy, RequestInput, SamplingParams,
};
use fulcrum_model::Model;
use serde::Serialize;

pub use grid::{SweepGrid, SweepPoint, MAX_SWEEP_POINTS};

use crate::arrival::RequestRate;
use crate::error::BenchError;
use crate::frontier::{pareto_frontier, LatencyAxis, OperatingPoint};
use crate::in_process::run_in_process_blocking;
use crate::load::LoadSpec;
use crate::plot::plot_frontier;
use crate::progress::Progress;
use crate::report::{Report, RunSummary};
use crate::workload::Workload;

/// How long an engine may take to wind down after a run: every request has
/// finished or been aborted by then, so this is only a safety net.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Offers a load to a running engine and reports what it measured.
pub trait LoadDriver {
    fn drive(
        &mut self,
        engine: &EngineHandle,
        load: &LoadSpec,
        workload: Workload,
        progress: Arc<dyn Progress>,
    ) -> Result<Report, BenchError>;
}

/// Requests straight into the engine, no HTTP (see [`crate::in_process`]).
pub struct InProcessDriver {
    /// A request still running after this long is aborted and counted failed.
    pub request_timeout: Duration,
}

impl LoadDriver for InProcessDriver {
    fn drive(
        &mut self,
        engine: &EngineHandle,
        load: &LoadSpec,
        workload: Workload,
        progress: Arc<dyn Progress>,
    ) -> Result<Report, BenchError> {
        run_in_process_blocking(engine, load, workload, self.request_timeout, progress)
    }
}

/// A model loaded once, and engines started from it on demand.
pub struct EngineBench {
    model: Arc<Model>,
}

impl EngineBench {
    pub fn new(model: Arc<Model>) -> EngineBench {
        EngineBench { model }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The engine configuration `options` resolve to for this model; the
    /// error names the knob (as `EngineConfig::resolve` does).
    pub fn resolve(&self, options: &EngineOptions) -> Result<EngineConfig, String> {
        EngineConfig::resolve(options, &self.model.config).map_err(|e| e.to_string())
    }

    /// A fresh engine: empty KV cache, empty prefix cache.
    pub fn start(&self, label: &str, options: &EngineOptions) -> Result<EngineHandle, BenchError> {
        let fail = |message: String| BenchError::Engine {
            label: label.to_string(),
            message,
        };
        let config = self.resolve(options).map_err(fail)?;
        Engine::start(self.model.clone(), config).map_err(|e| fail(e.to_string()))
    }

    /// Runs one short request on a throw-away engine, so the first measured
    /// configuration does not pay for paging the weights in.
    pub fn warm_up(&self, options: &EngineOptions) -> Result<(), BenchError> {
        let engine = self.start("warm-up", options)?;
        let prompt: Vec<u32> = (0..64u32).map(|i| 100 + i).collect();
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: Some(8),
            ignore_eos: true,
            ..SamplingParams::default()
        };
        let outcome = engine
            .add_request(RequestInput::new(
                fulcrum_engine::Prompt::Tokens(prompt),
                params,
            ))
            .map_err(|e| e.to_string())
            .and_then(|handle| handle.blocking_collect().map_err(|e| e.to_string()));
        engine.shutdown(SHUTDOWN_TIMEOUT);
        outcome.map(|_| ()).map_err(|message| BenchError::Engine {
            label: "warm-up".into(),
            message,
        })
    }

    /// One configuration on a fresh engine, which is shut down afterwards.
    pub fn run_point(
        &self,
        point: &SweepPoint,
        workload: Workload,
        driver: &mut dyn LoadDriver,
        progress: Arc<dyn Progress>,
    ) -> Result<(SweepOutcome, Report), BenchError> {
        let engine = self.start(&point.label, &point.options)?;
        let scheduler = engine.config().scheduler.clone();
        let report = driver.drive(&engine, &point.load, workload, progress);
        engine.shutdown(SHUTDOWN_TIMEOUT);
        let report = report?;
        let outcome = SweepOutcome {
            label: point.label.clone(),
            policy: scheduler.policy,
            max_num_seqs: scheduler.max_num_seqs,
            max_batched_tokens: scheduler.max_batched_tokens,
            request_rate: point.load.request_rate,
            summary: report.summary.clone(),
        };
        Ok((outcome, report))
    }
}

/// What one configuration measured, with its knobs as the engine resolved
/// them (a default step budget shows as its value).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepOutcome {
    pub label: String,
    #[serde(serialize_with = "serialize_policy")]
    pub policy: Policy,
    pub max_num_seqs: usize,
    pub max_batched_tokens: usize,
    pub request_rate: RequestRate,
    pub summary: RunSummary,
}

fn serialize_policy<S: serde::Serializer>(policy: &Policy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(policy.name())
}

impl SweepOutcome {
    /// Its place on the throughput–latency plane; `None` when it measured
    /// no TTFT or TPOT (every request failed, or single-token outputs).
    pub fn operating_point(&self) -> Option<OperatingPoint> {
        OperatingPoint::from_summary(self.label.clone(), &self.summary)
    }
}

/// A whole sweep: what was run, every configuration's figures, and which
/// configurations are on the Pareto frontier of each latency metric.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub config: serde_json::Value,
    pub points: Vec<SweepOutcome>,
    pub frontier: Frontiers,
}

/// Labels of the configurations on each frontier, by increasing throughput.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Frontiers {
    pub ttft_p99: Vec<String>,
    pub tpot_p99: Vec<String>,
}

impl SweepReport {
    pub fn new(config: serde_json::Value, points: Vec<SweepOutcome>) -> SweepReport {
        let operating: Vec<OperatingPoint> = points
            .iter()
            .filter_map(SweepOutcome::operating_point)
            .collect();
        let labels = |axis| {
            pareto_frontier(&operating, &[axis])
                .into_iter()
                .map(|i| operating[i].label.clone())
                .collect()
        };
        let frontier = Frontiers {
            ttft_p99: labels(LatencyAxis::TtftP99),
            tpot_p99: labels(LatencyAxis::TpotP99),
        };
        SweepReport {
            config,
            points,
            frontier,
        }
    }

    /// The comparison table, one row per configuration.
    pub fn to_table(&self) -> String {
        table::comparison(&self.points, &self.frontier)
    }

    /// Writes `<stem>.svg` and `<stem>.png`; returns their paths. Fails if
    /// no configuration has the latencies a plot needs.
    pub fn plot(
        &self,
        title: &str,
        stem: &std::path::Path,
    ) -> Result<Vec<std::path::PathBuf>, BenchError> {
        let operating: Vec<OperatingPoint> = self
            .points
            .iter()
            .filter_map(SweepOutcome::operating_point)
            .collect();
        if operating.is_empty() {
            return Err(BenchError::Plot {
                path: stem.to_path_buf(),
                message: "no configuration measured both TTFT and TPOT (did every request fail?)"
                    .into(),
            });
        }
        plot_frontier(&operating, title, stem)
    }
}
