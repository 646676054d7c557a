//! Flags shared by `bench serve`, `bench sweep` and `tune`: what to send
//! (the workload), how to offer it (the load), and — for the commands that
//! run an engine themselves — the engine knobs a sweep does not vary. Each
//! is spelled once here, so the three commands agree on every name.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use fulcrum_bench::{
    LenRange, LoadSpec, PromptVocabulary, RequestRate, Slo, Workload, WorkloadSpec,
};
use fulcrum_engine::engine::DEFAULT_BLOCK_SIZE;
use fulcrum_engine::{EngineOptions, KvCacheSize};
use fulcrum_model::registry::DEFAULT_MODEL;

#[derive(Clone, Copy, ValueEnum)]
pub enum WorkloadKind {
    /// Random prompts and output lengths from --input-len / --output-len.
    Random,
    /// A shared random prefix of --prefix-len tokens plus unique suffixes.
    Prefix,
    /// Prompts from --dataset (JSONL of {"prompt"} or ShareGPT conversations).
    File,
}

#[derive(Args, Clone)]
pub struct WorkloadArgs {
    #[arg(long, value_enum, default_value = "random", help_heading = "Workload")]
    pub workload: WorkloadKind,
    /// Prompt length in tokens, N or MIN:MAX (the suffix length for `prefix`).
    #[arg(long, default_value = "100:1500", help_heading = "Workload")]
    pub input_len: LenRange,
    /// Output length in tokens, N or MIN:MAX (sent as max_tokens).
    #[arg(long, default_value = "50:300", help_heading = "Workload")]
    pub output_len: LenRange,
    /// Shared prefix length for `--workload prefix`.
    #[arg(long, default_value_t = 512, help_heading = "Workload")]
    pub prefix_len: usize,
    /// JSONL (or JSON array) of prompts for `--workload file`.
    #[arg(long, help_heading = "Workload")]
    pub dataset: Option<PathBuf>,
    /// Seeds the prompts, the output lengths and the arrival times.
    #[arg(long, default_value_t = 0, help_heading = "Workload")]
    pub seed: u64,
}

impl WorkloadArgs {
    /// A fresh workload: the same seed gives the same requests every time.
    pub fn workload(&self, vocabulary: PromptVocabulary) -> Result<Workload> {
        let spec = match self.workload {
            WorkloadKind::Random => WorkloadSpec::Random {
                input_len: self.input_len,
                output_len: self.output_len,
            },
            WorkloadKind::Prefix => WorkloadSpec::Prefix {
                prefix_len: self.prefix_len,
                input_len: self.input_len,
                output_len: self.output_len,
            },
            WorkloadKind::File => {
                let Some(path) = self.dataset.clone() else {
                    bail!("--workload file needs --dataset FILE")
                };
                WorkloadSpec::File {
                    path,
                    output_len: self.output_len,
                }
            }
        };
        if self.dataset.is_some() && !self.is_file() {
            bail!("--dataset is only read with --workload file");
        }
        Ok(Workload::new(spec, vocabulary, self.seed)?)
    }

    pub fn is_file(&self) -> bool {
        matches!(self.workload, WorkloadKind::File)
    }

    /// `random 100:1500 -> 50:300 tokens`, for titles (ASCII: the plot's
    /// embedded font is a subset).
    pub fn describe(&self) -> String {
        match self.workload {
            WorkloadKind::Random => {
                format!("random {} -> {} tokens", self.input_len, self.output_len)
            }
            WorkloadKind::Prefix => {
                format!(
                    "prefix {}+{} -> {} tokens",
                    self.prefix_len, self.input_len, self.output_len
                )
            }
            WorkloadKind::File => {
                format!(
                    "file {}",
                    self.dataset
                        .as_deref()
                        .unwrap_or(std::path::Path::new("?"))
                        .display()
                )
            }
        }
    }
}

/// The load, except the request rate (one value for `serve` and `tune`, a
/// list for `sweep`).
#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Gamma shape of the arrival gaps: 1 = Poisson, <1 burstier, >1 smoother.
    #[arg(long, default_value_t = 1.0, help_heading = "Load")]
    pub burstiness: f64,
    /// At most N requests in flight; with `--request-rate inf`, N users in a closed loop.
    #[arg(long, help_heading = "Load")]
    pub concurrency: Option<usize>,
    /// How many requests to send (per configuration for sweep and tune).
    #[arg(long, help_heading = "Load")]
    pub num_requests: Option<usize>,
    /// Stop sending after this many seconds; requests in flight finish.
    #[arg(long, help_heading = "Load")]
    pub duration: Option<f64>,
    /// Latency target for goodput, any of ttft, tpot, e2e: `ttft=300ms,tpot=50ms`.
    #[arg(long, help_heading = "Load")]
    pub slo: Option<Slo>,
    /// Per-request limit in seconds; a request still running is counted failed.
    #[arg(long, default_value_t = 600.0, help_heading = "Load")]
    pub timeout: f64,
}

impl LoadArgs {
    /// The load at `rate`; without --num-requests or --duration, `default`
    /// bounds it.
    pub fn load(&self, rate: RequestRate, seed: u64, default: Bound) -> Result<LoadSpec> {
        let duration = self
            .duration
            .map(|s| seconds("--duration", s))
            .transpose()?;
        let (num_requests, duration) = match (self.num_requests, duration, default) {
            (None, None, Bound::Requests(n)) => (Some(n), None),
            (None, None, Bound::Seconds(s)) => (None, Some(Duration::from_secs_f64(s))),
            (n, d, _) => (n, d),
        };
        let load = LoadSpec {
            request_rate: rate,
            burstiness: self.burstiness,
            max_concurrency: self.concurrency,
            num_requests,
            duration,
            seed,
            slo: self.slo.unwrap_or_default(),
        };
        load.validate()?;
        Ok(load)
    }

    pub fn request_timeout(&self) -> Result<Duration> {
        seconds("--timeout", self.timeout)
    }
}

/// What bounds a run when the user gave neither --num-requests nor --duration.
#[derive(Clone, Copy)]
pub enum Bound {
    Requests(usize),
    Seconds(f64),
}

pub fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {s}"))
}

/// The engine knobs `sweep` and `tune` hold fixed (the ones they vary —
/// policy, max-num-seqs, max-batched-tokens — are their own flags).
#[derive(Args, Clone)]
pub struct EngineBaseArgs {
    /// Model alias or path to a .gguf file; loaded once for every configuration.
    #[arg(long, short, default_value = DEFAULT_MODEL, env = "FULCRUM_MODEL", help_heading = "Engine")]
    pub model: String,
    /// Worker threads for the forward pass [default: physical cores].
    #[arg(long, env = "FULCRUM_THREADS", help_heading = "Engine")]
    pub threads: Option<usize>,
    /// Most tokens (prompt + output) per sequence [default: the model's context, at most 8192].
    #[arg(long, help_heading = "Engine")]
    pub max_model_len: Option<usize>,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE, help_heading = "Engine")]
    pub block_size: usize,
    /// KV-cache size: `4GiB`, `512MB`, or `30%` of available memory [default: as `fulcrum serve`].
    #[arg(long, help_heading = "Engine")]
    pub kv_cache_memory: Option<KvCacheSize>,
    /// KV-cache storage: `f16` or `q8` (half the bytes; see `fulcrum serve --help`).
    #[arg(long, default_value = "f16", help_heading = "Engine")]
    pub kv_cache_dtype: fulcrum_engine::KvDtype,
    /// Disable prefix caching.
    #[arg(long, help_heading = "Engine")]
    pub no_prefix_cache: bool,
    /// Summation order of the quantized matrix products: `fast`, or `llama-cpp`
    /// (llama.cpp's results bit for bit, about two thirds of the batched throughput).
    #[arg(
        long,
        env = "FULCRUM_NUMERICS",
        default_value = "fast",
        help_heading = "Engine"
    )]
    pub numerics: fulcrum_model::Numerics,
}

impl EngineBaseArgs {
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            max_model_len: self.max_model_len,
            block_size: self.block_size,
            kv_cache: self.kv_cache_memory,
            kv_cache_dtype: self.kv_cache_dtype,
            enable_prefix_cache: !self.no_prefix_cache,
            threads: self.threads,
            ..EngineOptions::default()
        }
    }

    /// The `fulcrum serve` flags that reproduce these knobs (only the ones
    /// given).
    pub fn serve_flags(&self) -> String {
        let mut flags = format!("--model {}", self.model);
        let mut add = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                flags.push_str(&format!(" --{flag} {v}"));
            }
        };
        add("threads", self.threads.map(|n| n.to_string()));
        add("max-model-len", self.max_model_len.map(|n| n.to_string()));
        add(
            "block-size",
            (self.block_size != DEFAULT_BLOCK_SIZE).then(|| self.block_size.to_string()),
        );
        add("kv-cache-memory", self.kv_cache_memory.map(kv_cache_flag));
        add(
            "kv-cache-dtype",
            (self.kv_cache_dtype != fulcrum_engine::KvDtype::default())
                .then(|| self.kv_cache_dtype.to_string()),
        );
        if self.no_prefix_cache {
            flags.push_str(" --no-prefix-cache");
        }
        if self.numerics != fulcrum_model::Numerics::default() {
            flags.push_str(&format!(" --numerics {}", self.numerics));
        }
        flags
    }
}

/// `--kv-cache-memory` as it parses back: exact bytes, or a percentage.
fn kv_cache_flag(size: KvCacheSize) -> String {
    match size {
        KvCacheSize::Bytes(b) => b.to_string(),
        KvCacheSize::FractionOfAvailable(x) => format!("{}%", x * 100.0),
        other => other.to_string(), // a token count: no flag spells it
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_name_only_what_was_given() {
        let base = EngineBaseArgs {
            model: "smollm2-135m".into(),
            threads: Some(2),
            max_model_len: None,
            block_size: DEFAULT_BLOCK_SIZE,
            kv_cache_memory: None,
            kv_cache_dtype: fulcrum_engine::KvDtype::F16,
            no_prefix_cache: false,
            numerics: fulcrum_model::Numerics::Fast,
        };
        assert_eq!(base.serve_flags(), "--model smollm2-135m --threads 2");
        let more = EngineBaseArgs {
            max_model_len: Some(2048),
            no_prefix_cache: true,
            numerics: fulcrum_model::Numerics::LlamaCpp,
            ..base.clone()
        };
        assert_eq!(
            more.serve_flags(),
            "--model smollm2-135m --threads 2 --max-model-len 2048 --no-prefix-cache --numerics llama-cpp"
        );
        let q8 = EngineBaseArgs {
            kv_cache_dtype: fulcrum_engine::KvDtype::Q8,
            ..base
        };
        assert_eq!(
            q8.serve_flags(),
            "--model smollm2-135m --threads 2 --kv-cache-dtype q8"
        );
        assert_eq!(q8.options().kv_cache_dtype, fulcrum_engine::KvDtype::Q8);
    }
}
