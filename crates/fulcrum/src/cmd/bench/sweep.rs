//! `fulcrum bench sweep`: the grid flags, the run over every configuration,
//! and the outputs (tables, plot, JSON).
//!
//! Every configuration is resolved against the model before anything runs,
//! so a grid with one impossible combination (a whole-prompt policy with a
//! step budget below `--max-model-len`, say) fails in the first second with
//! the combination named, not after the others have been measured.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use fulcrum_bench::{
    EngineBench, InProcessDriver, LoadDriver, PromptVocabulary, RequestRate, SweepGrid,
    SweepOutcome, SweepPoint, SweepReport, TerminalProgress, Workload,
};
use fulcrum_engine::engine::DEFAULT_MAX_NUM_SEQS;
use fulcrum_engine::{EngineOptions, Policy};
use serde_json::json;

use super::args::{Bound, EngineBaseArgs, LoadArgs, WorkloadArgs};
use super::http_driver::HttpDriver;
use crate::cmd::engine_args::flag_spelling;

/// Requests per configuration when neither --num-requests nor --duration is given.
const DEFAULT_NUM_REQUESTS: usize = 50;

#[derive(Args)]
pub struct SweepArgs {
    /// Scheduling policies to compare, comma-separated: static, prefill-first, decode-first, chunked.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "chunked",
        help_heading = "Grid"
    )]
    policy: Vec<Policy>,
    /// Batch-size caps to compare, comma-separated (e.g. 1,2,4,8,16,32,64).
    #[arg(long, value_delimiter = ',', default_values_t = [DEFAULT_MAX_NUM_SEQS], help_heading = "Grid")]
    max_num_seqs: Vec<usize>,
    /// Step token budgets to compare, comma-separated [default: the engine's, per policy].
    #[arg(long, value_delimiter = ',', help_heading = "Grid")]
    max_batched_tokens: Vec<usize>,
    /// Arrival rates to compare, comma-separated requests/s, or `inf` (all at once).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "inf",
        help_heading = "Grid"
    )]
    request_rate: Vec<RequestRate>,
    #[command(flatten)]
    engine: EngineBaseArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Put each engine behind the OpenAI HTTP server (in this process, on a
    /// loopback port) and drive it over HTTP, as `bench serve` would.
    #[arg(long)]
    server: bool,
    /// The plot goes to STEM.svg and STEM.png.
    #[arg(long, default_value = "fulcrum-sweep")]
    plot: PathBuf,
    /// Write no plot.
    #[arg(long)]
    no_plot: bool,
    /// Write every configuration's summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print only the comparison table, not one table per configuration.
    #[arg(long, short)]
    quiet: bool,
}

/// A model loaded once and the prompt vocabulary of its own tokenizer
/// (prompts of exact token lengths).
pub(super) fn load_bench(engine: &EngineBaseArgs) -> Result<(EngineBench, PromptVocabulary)> {
    let path = crate::cmd::resolve_model(&engine.model)?;
    let model = fulcrum_model::Model::load_with(&path, engine.numerics)
        .map_err(|e| anyhow!("loading {}: {e}", path.display()))?;
    let vocabulary = PromptVocabulary::from_gguf_path(&path)?;
    Ok((EngineBench::new(Arc::new(model)), vocabulary))
}

/// One short request first, so the first configuration measured does not
/// pay for paging the weights in.
pub(super) fn warm_up(bench: &EngineBench, options: &EngineOptions) -> Result<()> {
    bench
        .warm_up(options)
        .map_err(|e| anyhow!("{}", knob_spelling(&e.to_string())))
}

/// Checks `options` against the model; the error names the configuration
/// and the flag.
pub(super) fn check_config(
    bench: &EngineBench,
    label: &str,
    options: &EngineOptions,
) -> Result<()> {
    bench
        .resolve(options)
        .map(|_| ())
        .map_err(|e| anyhow!("configuration `{label}`: {}", knob_spelling(&e)))
}

/// Knob names as flags (`max_num_seqs` → `--max-num-seqs`), but policy
/// names as policies: `flag_spelling` alone would turn `static` into a flag.
fn knob_spelling(message: &str) -> String {
    Policy::ALL.iter().fold(flag_spelling(message), |m, p| {
        m.replace(&format!("`--{p}`"), &format!("`{p}`"))
    })
}

pub fn run(a: SweepArgs) -> Result<()> {
    let grid = a.grid();
    let base = a.engine.options();
    let load = a.load.load(
        a.request_rate[0],
        a.workload.seed,
        Bound::Requests(DEFAULT_NUM_REQUESTS),
    )?;
    let points = grid.points(&base, &load)?;
    for point in &points {
        point.load.validate()?;
    }
    a.workload.workload(PromptVocabulary::words())?; // a bad dataset fails before the model loads
    let request_timeout = a.load.request_timeout()?;
    let (bench, vocabulary) = load_bench(&a.engine)?;
    let workload = a.workload.workload(vocabulary)?;
    for point in &points {
        check_config(&bench, &point.label, &point.options)?;
    }
    warm_up(&bench, &points[0].options)?;
    let mut driver: Box<dyn LoadDriver> = if a.server {
        Box::new(HttpDriver {
            request_timeout,
            served_model_name: a.engine.model.clone(),
        })
    } else {
        Box::new(InProcessDriver { request_timeout })
    };
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        eprintln!("[{}/{}] {} …", i + 1, points.len(), point.label);
        outcomes.push(run_point(&a, &bench, point, &workload, driver.as_mut())?);
    }
    let threads = bench
        .resolve(&base)
        .map(|c| c.num_threads)
        .unwrap_or_default();
    let title = format!(
        "{} · {threads} threads · {} · {}",
        a.engine.model,
        a.workload.describe(),
        describe_load(&a, &grid)
    );
    let config = json!({
        "model": bench.model().name,
        "model_arg": a.engine.model,
        "target": if a.server { "HTTP server (in-process, loopback)" } else { "in-process engine" },
        "threads": threads,
        "base_engine": bench.resolve(&base).map(|c| c.to_string()).unwrap_or_default(),
        "workload": a.workload.describe(),
        "load": load.describe(),
        "request_rates": grid.request_rates,
        "sweep_wall_s": started.elapsed().as_secs_f64(),
    });
    write_report(&a, &title, SweepReport::new(config, outcomes))
}

impl SweepArgs {
    /// The grid the flags span; no `--max-batched-tokens` means the
    /// engine's default for each policy.
    fn grid(&self) -> SweepGrid {
        SweepGrid {
            policies: self.policy.clone(),
            max_num_seqs: self.max_num_seqs.clone(),
            max_batched_tokens: if self.max_batched_tokens.is_empty() {
                vec![None]
            } else {
                self.max_batched_tokens.iter().copied().map(Some).collect()
            },
            request_rates: self.request_rate.clone(),
        }
    }
}

/// Measures one configuration on a fresh engine, with a progress bar;
/// prints its table unless `--quiet`.
fn run_point(
    a: &SweepArgs,
    bench: &EngineBench,
    point: &SweepPoint,
    workload: &Workload,
    driver: &mut dyn LoadDriver,
) -> Result<SweepOutcome> {
    let bound = point
        .load
        .num_requests
        .filter(|_| point.load.duration.is_none());
    let progress = Arc::new(TerminalProgress::new(bound));
    let (outcome, report) = bench.run_point(point, workload.clone(), driver, progress)?;
    if !a.quiet {
        let engine = bench
            .resolve(&point.options)
            .map(|c| c.to_string())
            .unwrap_or_default();
        println!(
            "{}\n",
            report
                .summary
                .to_table(&format!("{} · {engine}", point.label))
        );
    }
    Ok(outcome)
}

/// The comparison table, then the plot and the JSON unless switched off.
fn write_report(a: &SweepArgs, title: &str, report: SweepReport) -> Result<()> {
    println!("{title}\n{}", report.to_table());
    if !a.no_plot {
        let paths = report.plot(title, &a.plot)?;
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!("plot written to {}", shown.join(" and "));
    }
    if let Some(path) = &a.json {
        super::write_json(path, &report)?;
    }
    Ok(())
}

/// `2 req/s`, `all at once` or `rates 1, 2, inf`, plus the cap, for the
/// plot title.
fn describe_load(a: &SweepArgs, grid: &SweepGrid) -> String {
    let mut s = match grid.request_rates.as_slice() {
        [RequestRate::Infinite] => "all at once".to_string(),
        [RequestRate::PerSecond(r)] => format!("{r} req/s"),
        rates => format!(
            "rates {}",
            rates
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if let Some(c) = a.load.concurrency {
        s.push_str(&format!(", at most {c} in flight"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knob_names_become_flags_and_policy_names_stay() {
        assert_eq!(
            knob_spelling("`max_batched_tokens` (512) must be at least `max_model_len` (8192) under policy `static`"),
            "`--max-batched-tokens` (512) must be at least `--max-model-len` (8192) under policy `static`"
        );
    }
}
