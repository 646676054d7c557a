//! `fulcrum bench serve …`: load-test any OpenAI-compatible server (fulcrum,
//! llama.cpp's `llama-server`, vLLM). The measuring lives in `fulcrum-bench`;
//! this file turns flags into its validated configuration and prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fulcrum_bench::{
    run_serve_blocking, LenRange, PromptVocabulary, RequestRate, ServeConfig, Slo, TerminalProgress, Workload,
    WorkloadSpec,
};

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
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkloadKind {
    /// Random prompts and output lengths from --input-len / --output-len.
    Random,
    /// A shared random prefix of --prefix-len tokens plus unique suffixes.
    Prefix,
    /// Prompts from --dataset (JSONL of {"prompt"} or ShareGPT conversations).
    File,
}

#[derive(Args)]
struct ServeArgs {
    /// Server root URL (a trailing /v1 is fine).
    #[arg(long, env = "FULCRUM_BENCH_BASE_URL", default_value = "http://127.0.0.1:8000")]
    base_url: String,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "FULCRUM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The `model` field to send [default: the first one GET /v1/models lists].
    #[arg(long)]
    model: Option<String>,
    /// Arrivals per second (gamma-distributed gaps), or `inf` to send at once.
    #[arg(long, default_value = "inf")]
    request_rate: RequestRate,
    /// Gamma shape of the arrival gaps: 1 = Poisson, <1 burstier, >1 smoother.
    #[arg(long, default_value_t = 1.0)]
    burstiness: f64,
    /// At most N requests in flight; with `--request-rate inf`, N users in a closed loop.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How many requests to send [default: 100 unless --duration is given].
    #[arg(long)]
    num_requests: Option<usize>,
    /// Stop sending after this many seconds; requests in flight finish.
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, value_enum, default_value = "random")]
    workload: WorkloadKind,
    /// Prompt length in tokens, N or MIN:MAX (the suffix length for `prefix`).
    #[arg(long, default_value = "100:1500")]
    input_len: LenRange,
    /// Output length in tokens, N or MIN:MAX (sent as max_tokens).
    #[arg(long, default_value = "50:300")]
    output_len: LenRange,
    /// Shared prefix length for `--workload prefix`.
    #[arg(long, default_value_t = 512)]
    prefix_len: usize,
    /// JSONL (or JSON array) of prompts for `--workload file`.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Model alias or .gguf whose tokenizer matches the server's: prompts
    /// become exact-length token-id lists. Without it, prompts are random
    /// English words and lengths are approximate.
    #[arg(long)]
    tokenizer_model: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latency target for goodput, any of ttft, tpot, e2e: `ttft=300ms,tpot=50ms`.
    #[arg(long)]
    slo: Option<Slo>,
    /// Per-request limit in seconds, stream included.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
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
    }
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {s}"))
}

fn workload(a: &ServeArgs) -> Result<Workload> {
    let spec = match a.workload {
        WorkloadKind::Random => WorkloadSpec::Random { input_len: a.input_len, output_len: a.output_len },
        WorkloadKind::Prefix => {
            WorkloadSpec::Prefix { prefix_len: a.prefix_len, input_len: a.input_len, output_len: a.output_len }
        }
        WorkloadKind::File => {
            let Some(path) = a.dataset.clone() else { bail!("--workload file needs --dataset FILE") };
            WorkloadSpec::File { path, output_len: a.output_len }
        }
    };
    if a.dataset.is_some() && !matches!(a.workload, WorkloadKind::File) {
        bail!("--dataset is only read with --workload file");
    }
    let vocabulary = match &a.tokenizer_model {
        Some(model) => PromptVocabulary::from_gguf_path(&super::resolve_model(model)?)?,
        None => {
            if !matches!(a.workload, WorkloadKind::File) {
                eprintln!(
                    "note: no --tokenizer-model: prompts are random English words, their token lengths approximate"
                );
            }
            PromptVocabulary::words()
        }
    };
    Ok(Workload::new(spec, vocabulary, a.seed)?)
}

fn serve(a: ServeArgs) -> Result<()> {
    let duration = a.duration.map(|s| seconds("--duration", s)).transpose()?;
    let config = ServeConfig {
        base_url: a.base_url.clone(),
        api_key: a.api_key.clone(),
        model: a.model.clone(),
        request_rate: a.request_rate,
        burstiness: a.burstiness,
        max_concurrency: a.concurrency,
        num_requests: a.num_requests.or(if duration.is_none() { Some(100) } else { None }),
        duration,
        seed: a.seed,
        slo: a.slo.unwrap_or_default(),
        request_timeout: seconds("--timeout", a.timeout)?,
    };
    config.validate()?;
    let workload = workload(&a)?;
    let progress = Arc::new(TerminalProgress::new(config.num_requests.filter(|_| config.duration.is_none())));
    let mut report = run_serve_blocking(&config, workload, progress)?;
    let model = report.config["model"].as_str().unwrap_or("?").to_string();
    println!("{}", report.summary.to_table(&format!("fulcrum bench serve · {} · model {model}", a.base_url)));
    if let Some(path) = &a.json {
        if a.no_request_records {
            report.requests.clear();
        }
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
