//! The engine knobs as command-line flags (with `FULCRUM_*` environment
//! fallbacks), shared by every command that runs the engine (`generate`,
//! `serve`, `chat`), so each knob is spelled and documented once. Stage one
//! of the configuration; `EngineConfig::resolve` is stage two.

use anyhow::Result;
use clap::Args;
use fulcrum_engine::engine::{DEFAULT_BLOCK_SIZE, DEFAULT_MAX_NUM_SEQS};
use fulcrum_engine::{EngineConfig, EngineOptions, KvCacheSize, Policy, SamplingParams};
use fulcrum_model::ModelConfig;

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Scheduling policy: static, prefill-first, decode-first or chunked.
    #[arg(
        long,
        env = "FULCRUM_POLICY",
        default_value = "chunked",
        help_heading = "Engine"
    )]
    pub policy: Policy,
    /// Most sequences in a batch.
    #[arg(long, env = "FULCRUM_MAX_NUM_SEQS", default_value_t = DEFAULT_MAX_NUM_SEQS, help_heading = "Engine")]
    pub max_num_seqs: usize,
    /// Most tokens computed in one step [default: 1024 for chunked, max-model-len otherwise].
    #[arg(long, env = "FULCRUM_MAX_BATCHED_TOKENS", help_heading = "Engine")]
    pub max_batched_tokens: Option<usize>,
    /// Most tokens (prompt + output) per sequence [default: the model's context, at most 8192].
    #[arg(long, env = "FULCRUM_MAX_MODEL_LEN", help_heading = "Engine")]
    pub max_model_len: Option<usize>,
    /// Tokens per KV-cache block.
    #[arg(long, env = "FULCRUM_BLOCK_SIZE", default_value_t = DEFAULT_BLOCK_SIZE, help_heading = "Engine")]
    pub block_size: usize,
    /// KV-cache size: `4GiB`, `512MB`, or `30%` of available memory [default: 25%, capped at what
    /// max-num-seqs × max-model-len tokens need].
    #[arg(long, env = "FULCRUM_KV_CACHE_MEMORY", help_heading = "Engine")]
    pub kv_cache_memory: Option<KvCacheSize>,
    /// How the KV cache stores keys and values: `f16`, or `q8` (8-bit rows with a scale each:
    /// about half the bytes, so twice the tokens, and faster decoding of large batches; outputs
    /// differ slightly from f16's, which follows llama.cpp's arithmetic).
    #[arg(
        long,
        env = "FULCRUM_KV_CACHE_DTYPE",
        default_value = "f16",
        help_heading = "Engine"
    )]
    pub kv_cache_dtype: fulcrum_engine::KvDtype,
    /// Disable prefix caching (reuse of KV blocks across requests sharing a prompt prefix).
    #[arg(long, env = "FULCRUM_NO_PREFIX_CACHE", help_heading = "Engine")]
    pub no_prefix_cache: bool,
    /// Worker threads for the forward pass [default: physical cores].
    #[arg(long, env = "FULCRUM_THREADS", help_heading = "Engine")]
    pub threads: Option<usize>,
    /// Summation order of the quantized matrix products: `fast`, or `llama-cpp` to reproduce
    /// llama.cpp's CPU results bit for bit (about two thirds of the batched throughput), or
    /// `llama-cpp-batch`: also the orders of llama.cpp's batched K-quant kernels, as it
    /// computes prompts (its prompt logits exactly; results then depend on the batch).
    #[arg(
        long,
        env = "FULCRUM_NUMERICS",
        default_value = "fast",
        help_heading = "Engine"
    )]
    pub numerics: fulcrum_model::Numerics,
    /// Requests waiting to be scheduled beyond which new ones are refused [default: unlimited].
    #[arg(long, env = "FULCRUM_MAX_WAITING", help_heading = "Engine")]
    pub max_waiting: Option<usize>,
}

impl EngineArgs {
    pub fn to_options(&self) -> EngineOptions {
        EngineOptions {
            policy: self.policy,
            max_num_seqs: self.max_num_seqs,
            max_batched_tokens: self.max_batched_tokens,
            max_model_len: self.max_model_len,
            block_size: self.block_size,
            kv_cache: self.kv_cache_memory,
            kv_cache_dtype: self.kv_cache_dtype,
            enable_prefix_cache: !self.no_prefix_cache,
            threads: self.threads,
            max_waiting: self.max_waiting,
            ..EngineOptions::default()
        }
    }
}

/// Stage two: `options` checked against the model and this machine.
pub fn resolve(options: &EngineOptions, model: &ModelConfig) -> Result<EngineConfig> {
    EngineConfig::resolve(options, model).map_err(|e| {
        anyhow::anyhow!(
            "invalid engine configuration: {}",
            flag_spelling(&e.to_string())
        )
    })
}

/// Sampling flags shared by `generate` and `chat`; unset ones take the
/// command's defaults.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, short = 'n', help_heading = "Sampling")]
    pub max_tokens: Option<usize>,
    /// 0 samples greedily [default: 0 for generate, 0.6 for chat].
    #[arg(long, help_heading = "Sampling", allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the most likely tokens up to this mass [default: 1, 0.9 for chat].
    #[arg(long, help_heading = "Sampling", allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    #[arg(long, help_heading = "Sampling", allow_negative_numbers = true)]
    pub top_k: Option<i64>,
    /// Keep tokens at least this likely relative to the most likely one.
    #[arg(long, help_heading = "Sampling", allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Seed for reproducible sampling.
    #[arg(long, help_heading = "Sampling")]
    pub seed: Option<u64>,
    /// Stop when this string is generated (repeatable); it is not printed.
    #[arg(long, help_heading = "Sampling")]
    pub stop: Vec<String>,
    /// Keep generating past the end-of-sequence token.
    #[arg(long, help_heading = "Sampling")]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// The flags over `defaults`, validated (errors name the flag).
    pub fn to_params(&self, defaults: SamplingParams) -> Result<SamplingParams> {
        let top_k = match self.top_k {
            None => defaults.top_k,
            Some(k) if k <= 0 => None, // llama.cpp's spelling of "off"
            Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
        };
        let params = SamplingParams {
            max_tokens: self.max_tokens.or(defaults.max_tokens),
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k,
            min_p: self.min_p.unwrap_or(defaults.min_p),
            seed: self.seed.or(defaults.seed),
            stop: if self.stop.is_empty() {
                defaults.stop.clone()
            } else {
                self.stop.clone()
            },
            ignore_eos: self.ignore_eos || defaults.ignore_eos,
            ..defaults
        };
        params
            .validate()
            .map_err(|e| anyhow::anyhow!("{}", flag_spelling(&e.to_string())))?;
        Ok(params)
    }
}

/// "`top_p` must be …" → "`--top-p` must be …": name the flag the user typed.
pub fn flag_spelling(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 4);
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        out.push('`');
        if i % 2 == 0
            && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !part.is_empty()
        {
            out.push_str("--");
            out.push_str(&part.replace('_', "-"));
        } else {
            out.push_str(part);
        }
    }
    out
}
