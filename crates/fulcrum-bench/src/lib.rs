//! `fulcrum-bench`: measure the throughput–latency trade-off of a serving
//! system, honestly and in one command.
//!
//! # Brief overview
//!
//! A benchmark run is: a [`Workload`] makes [`RequestSpec`]s, an
//! [`ArrivalProcess`] decides when each is sent, a [`CompletionsClient`]
//! streams it from any OpenAI-compatible endpoint and times every chunk (the
//! SSE framing is parsed by [`SseParser`]), and each request becomes a
//! [`RequestRecord`]. [`RunSummary::from_records`] folds the records into the
//! aggregate figures (throughput, goodput under an [`Slo`], percentiles from
//! [`LatencySummary`]), and a [`Report`] carries summary, configuration and
//! records to stdout (a table) and to JSON.
//!
//! When requests go out is a [`LoadSpec`] (rate, burstiness, concurrency
//! cap, bounds, seed, SLO), replayed by one dispatcher for every target:
//! [`run_serve`] sends over HTTP for `fulcrum bench serve`;
//! [`run_in_process`] calls an engine in this process directly.
//!
//! `bench sweep` ([`sweep`]) runs a [`SweepGrid`] of engine configurations,
//! each on a fresh engine of one loaded model ([`EngineBench`]), through a
//! [`LoadDriver`]; the [`SweepReport`] turns the [`RunSummary`]s into
//! [`OperatingPoint`]s, asks [`pareto_frontier`] which ones are worth
//! running, and draws them with [`plot_frontier`]. `fulcrum tune`
//! ([`tune`]) searches the same knobs for the best goodput under an SLO
//! within a time budget.
//!
//! The library never prints: progress goes through the [`Progress`] trait
//! (with an `indicatif` implementation for terminals), results are values.

mod arrival;
mod client;
mod error;
mod frontier;
mod in_process;
mod load;
mod plot;
mod progress;
mod record;
mod report;
mod runner;
mod slo;
mod sse;
mod stats;
pub mod sweep;
pub mod tune;
mod workload;

pub use arrival::{ArrivalProcess, RequestRate};
pub use client::{CompletionsClient, StreamedCompletion};
pub use error::BenchError;
pub use frontier::{pareto_frontier, LatencyAxis, OperatingPoint};
pub use in_process::{run_in_process, run_in_process_blocking};
pub use load::LoadSpec;
pub use plot::plot_frontier;
pub use progress::{NoProgress, Progress, TerminalProgress};
pub use record::RequestRecord;
pub use report::{Report, RunSummary};
pub use runner::{run_serve, run_serve_blocking, ServeConfig};
pub use slo::{Slo, SloError};
pub use sse::{SseEvent, SseParser};
pub use stats::LatencySummary;
pub use sweep::{
    EngineBench, InProcessDriver, LoadDriver, SweepGrid, SweepOutcome, SweepPoint, SweepReport,
};
pub use tune::{Candidate, TuneOutcome, TuneSpace};
pub use workload::{LenRange, Prompt, PromptVocabulary, RequestSpec, Workload, WorkloadSpec};
