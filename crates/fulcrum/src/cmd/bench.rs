//! `fulcrum bench …`: measure the throughput–latency trade-off.
//!
//! - `bench serve`: load-test any OpenAI-compatible server (fulcrum,
//!   llama.cpp's `llama-server`, vLLM).
//! - `bench sweep` (`sweep.rs`): one workload against many engine
//!   configurations, in-process or behind the HTTP server; table, Pareto
//!   frontier, plot.
//! - `fulcrum tune` (`tune.rs`) is a top-level command but shares this
//!   family's flags (`args.rs`) and engine drivers.
//!
//! The measuring lives in `fulcrum-bench`; these files turn flags into its
//! validated configuration and print.

mod args;
mod http_driver;
mod sweep;
pub mod tune;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fulcrum_bench::{
    run_serve_blocking, PromptVocabulary, RequestRate, ServeConfig, TerminalProgress,
};
use serde::Serialize;

use args::{Bound, LoadArgs, WorkloadArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive an OpenAI-compatible server with streaming completions and
    /// report throughput, TTFT/TPOT/ITL/E2E percentiles and SLO goodput.
    Serve(ServeArgs),
    /// Run one workload against a grid of engine configurations (fresh engine
    /// each, model loaded once): a table per configuration, the Pareto
    /// frontier, and a plot of throughput against TTFT p99 and TPOT p99.
    Sweep(sweep::SweepArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Server root URL (a trailing /v1 is fine).
    #[arg(
        long,
        env = "FULCRUM_BENCH_BASE_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    base_url: String,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "FULCRUM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The `model` field to send [default: the first one GET /v1/models lists].
    #[arg(long)]
    model: Option<String>,
    /// Arrivals per second (gamma-distributed gaps), or `inf` to send at once.
    #[arg(long, default_value = "inf", help_heading = "Load")]
    request_rate: RequestRate,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Model alias or .gguf whose tokenizer matches the server's: prompts
    /// become exact-length token-id lists. Without it, prompts are random
    /// English words and lengths are approximate.
    #[arg(long, help_heading = "Workload")]
    tokenizer_model: Option<String>,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Leave the per-request records out of --json.
    #[arg(long)]
    no_request_records: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Serve(a) => serve(a),
        BenchCommand::Sweep(a) => sweep::run(a),
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let config = ServeConfig {
        base_url: a.base_url.clone(),
        api_key: a.api_key.clone(),
        model: a.model.clone(),
        request_timeout: a.load.request_timeout()?,
        load: a
            .load
            .load(a.request_rate, a.workload.seed, Bound::Requests(100))?,
    };
    config.validate()?;
    let vocabulary = match &a.tokenizer_model {
        Some(model) => PromptVocabulary::from_gguf_path(&super::resolve_model(model)?)?,
        None => {
            if !a.workload.is_file() {
                eprintln!(
                    "note: no --tokenizer-model: prompts are random English words, their token lengths approximate"
                );
            }
            PromptVocabulary::words()
        }
    };
    let workload = a.workload.workload(vocabulary)?;
    let load = &config.load;
    let progress = Arc::new(TerminalProgress::new(
        load.num_requests.filter(|_| load.duration.is_none()),
    ));
    let mut report = run_serve_blocking(&config, workload, progress)?;
    let model = report.config["model"].as_str().unwrap_or("?").to_string();
    println!(
        "{}",
        report.summary.to_table(&format!(
            "fulcrum bench serve · {} · model {model}",
            a.base_url
        ))
    );
    if let Some(path) = &a.json {
        if a.no_request_records {
            report.requests.clear();
        }
        write_json(path, &report)?;
    }
    Ok(())
}

/// Pretty JSON to `path`, with a note on stderr.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command, FromArgMatches};

    use super::*;

    /// clap checks flag names only when a command is built: catch a flag
    /// spelled twice across the shared groups here, not at a user's prompt.
    #[test]
    fn every_command_builds_and_parses() {
        BenchArgs::augment_args(Command::new("bench")).debug_assert();
        tune::TuneArgs::augment_args(Command::new("tune")).debug_assert();
        let matches = BenchArgs::augment_args(Command::new("bench"))
            .try_get_matches_from([
                "bench",
                "sweep",
                "--policy",
                "static,chunked",
                "--max-num-seqs",
                "1,8",
                "--request-rate",
                "1,inf",
            ])
            .unwrap();
        let BenchCommand::Sweep(_) = BenchArgs::from_arg_matches(&matches).unwrap().command else {
            panic!("sweep expected")
        };
        let bad = BenchArgs::augment_args(Command::new("bench"))
            .try_get_matches_from(["bench", "sweep", "--policy", "fastest"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("unknown policy `fastest`"), "{bad}");
        let bad = BenchArgs::augment_args(Command::new("bench"))
            .try_get_matches_from(["bench", "sweep", "--request-rate", "0"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("must be a positive number"), "{bad}");
    }
}
