//! `fulcrum tune --slo …`: the engine knobs with the highest goodput under
//! a latency target, on a stated workload and load, as a `fulcrum serve`
//! command line. The search (coarse grid, refinement, time budget) is
//! `fulcrum_bench::tune`; this file feeds it in-process probes, each on a
//! fresh engine of a model loaded once, and prints the recommendation with
//! the figures it was measured at.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use fulcrum_bench::tune::{search, TuneSpace};
use fulcrum_bench::{
    BenchError, Candidate, InProcessDriver, LoadSpec, NoProgress, RequestRate, RunSummary,
    SweepPoint, TuneOutcome,
};
use fulcrum_engine::Policy;

use super::args::{seconds, Bound, EngineBaseArgs, LoadArgs, WorkloadArgs};
use super::sweep::{check_config, load_bench, warm_up};

/// Seconds of arrivals per probe when neither --num-requests nor --duration is given.
const DEFAULT_PROBE_S: f64 = 20.0;
/// Requests per probe for `--request-rate inf` without a cap.
const DEFAULT_PROBE_REQUESTS: usize = 32;

#[derive(Args)]
pub struct TuneArgs {
    /// The load to tune for: arrivals per second, or `inf` (all at once: bulk jobs).
    #[arg(long, default_value = "inf", help_heading = "Load")]
    request_rate: RequestRate,
    /// Stop starting probes once this many seconds have passed (a probe in
    /// flight is cut off at the budget).
    #[arg(long, default_value_t = 300.0)]
    budget_s: f64,
    /// Policies to search, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "static,prefill-first,decode-first,chunked",
        help_heading = "Search"
    )]
    policy: Vec<Policy>,
    /// The coarse ladder of batch-size caps, comma-separated; refinement looks between and around them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,4,16,64",
        help_heading = "Search"
    )]
    max_num_seqs: Vec<usize>,
    #[command(flatten)]
    engine: EngineBaseArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Write every probe and the recommendation as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: TuneArgs) -> Result<()> {
    let Some(slo) = a.load.slo else {
        bail!("fulcrum tune needs a latency target: --slo, e.g. `--slo ttft=2s,tpot=100ms`");
    };
    let budget = seconds("--budget-s", a.budget_s)?;
    let default_bound = match (a.request_rate, a.load.concurrency) {
        (RequestRate::Infinite, None) => Bound::Requests(DEFAULT_PROBE_REQUESTS),
        _ => Bound::Seconds(DEFAULT_PROBE_S),
    };
    let load = a
        .load
        .load(a.request_rate, a.workload.seed, default_bound)?;
    let space = TuneSpace {
        policies: a.policy.clone(),
        max_num_seqs: a.max_num_seqs.clone(),
        ..TuneSpace::default()
    };
    space.validate()?;
    a.workload
        .workload(fulcrum_bench::PromptVocabulary::words())?; // a bad dataset fails before the model loads
    let request_timeout = a.load.request_timeout()?;
    let base = a.engine.options();
    let (bench, vocabulary) = load_bench(&a.engine)?;
    let workload = a.workload.workload(vocabulary)?;
    let first = Candidate {
        policy: space.policies[0],
        max_num_seqs: space.max_num_seqs[0],
        max_batched_tokens: None,
    };
    check_config(&bench, &first.label(), &first.apply(&base))?;
    warm_up(&bench, &first.apply(&base))?;
    eprintln!(
        "tuning for {} at {} (budget {:.0} s)",
        slo,
        describe_load(&load),
        budget.as_secs_f64()
    );

    let started = Instant::now();
    let mut elapsed = || started.elapsed();
    let mut probe =
        |candidate: &Candidate, time_left: Duration| -> Result<RunSummary, BenchError> {
            let point = SweepPoint {
                label: candidate.label(),
                options: candidate.apply(&base),
                load: load.clone(),
            };
            let mut driver = InProcessDriver {
                request_timeout: request_timeout.min(time_left),
            };
            let (outcome, _) =
                bench.run_point(&point, workload.clone(), &mut driver, Arc::new(NoProgress))?;
            print_probe(&point.label, &outcome.summary, started.elapsed());
            Ok(outcome.summary)
        };
    let outcome = search(&space, &slo, budget, &mut elapsed, &mut probe)?;
    print_outcome(&a, &load, &outcome)
}

/// One probe's line: its goodput and the latencies the SLO bounds.
fn print_probe(label: &str, s: &RunSummary, elapsed: Duration) {
    eprintln!(
        "  {:<28} goodput {:>6.2}/s  {:>7.1} tok/s  TTFT p99 {:>7}  TPOT p99 {:>6}  [{:.0} s]",
        label,
        s.goodput.unwrap_or(0.0),
        s.output_throughput,
        s.ttft_ms.map_or("—".into(), |l| format!("{:.0}ms", l.p99)),
        s.tpot_ms.map_or("—".into(), |l| format!("{:.0}ms", l.p99)),
        elapsed.as_secs_f64(),
    );
}

/// The probes' table, the JSON if asked for, and the recommendation as a
/// `fulcrum serve` command line with what it was measured at; an error
/// when no configuration had any request meet the SLO.
fn print_outcome(a: &TuneArgs, load: &LoadSpec, outcome: &TuneOutcome) -> Result<()> {
    let slo = &outcome.slo;
    println!("{}", outcome.to_table());
    if outcome.is_budget_exhausted {
        println!(
            "(the {:.0} s budget ran out before the search finished: raise --budget-s to search further)",
            a.budget_s
        );
    }
    if let Some(path) = &a.json {
        super::write_json(path, &tune_json(a, load, outcome))?;
    }
    let Some(best) = outcome.best_trial() else {
        bail!(
            "no configuration had any request meet {} at {}: lower --request-rate, or relax --slo",
            slo,
            describe_load(load)
        );
    };
    let s = &best.summary;
    let ms = |l: Option<fulcrum_bench::LatencySummary>| {
        l.map_or("—".into(), |l| format!("{:.0}/{:.0} ms", l.p50, l.p99))
    };
    println!(
        "\nrecommended for {} at {} ({}):",
        slo,
        describe_load(load),
        a.workload.describe()
    );
    println!(
        "  fulcrum serve {} {}",
        a.engine.serve_flags(),
        best.candidate.serve_flags()
    );
    println!(
        "measured: goodput {:.2} req/s ({:.0}% of requests met the SLO), {:.2} req/s, {:.1} output tok/s, \
         TTFT p50/p99 {}, TPOT p50/p99 {}",
        s.goodput.unwrap_or(0.0),
        best.attainment() * 100.0,
        s.request_throughput,
        s.output_throughput,
        ms(s.ttft_ms),
        ms(s.tpot_ms),
    );
    Ok(())
}

/// `1.5 req/s` or `all at once, 32 requests`, with the cap.
fn describe_load(load: &LoadSpec) -> String {
    let mut s = match load.request_rate {
        RequestRate::Infinite => "all at once".to_string(),
        RequestRate::PerSecond(r) => format!("{r} req/s"),
    };
    if let Some(c) = load.max_concurrency {
        s.push_str(&format!(", ≤{c} in flight"));
    }
    match (load.num_requests, load.duration) {
        (Some(n), _) => s.push_str(&format!(", {n} requests per probe")),
        (None, Some(d)) => s.push_str(&format!(", {:.0} s per probe", d.as_secs_f64())),
        (None, None) => {}
    }
    s
}

fn tune_json(a: &TuneArgs, load: &LoadSpec, outcome: &TuneOutcome) -> serde_json::Value {
    serde_json::json!({
        "model": a.engine.model,
        "workload": a.workload.describe(),
        "load": load.describe(),
        "budget_s": a.budget_s,
        "recommendation": outcome.best_trial().map(|t| format!(
            "fulcrum serve {} {}", a.engine.serve_flags(), t.candidate.serve_flags()
        )),
        "search": outcome,
    })
}
