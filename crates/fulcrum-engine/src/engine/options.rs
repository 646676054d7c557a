//! Engine configuration in two stages: [`EngineOptions`] holds the knobs as a
//! user states them (CLI flags, environment; unset means "choose for me"),
//! [`EngineConfig::resolve`] checks them against the model and the machine
//! and derives what follows from them: the number of KV blocks, the tokens
//! they hold, the step budget. The start-up summary a server prints is
//! [`EngineConfig`]'s `Display`.
//!
//! Why the KV size defaults to a fraction of *available* memory, at most
//! [`DEFAULT_KV_CACHE_MAX_BYTES`] and at most what the batch can use: on a
//! CPU the cache competes with everything else on the machine (vLLM's CPU
//! backend defaults to a fixed 4 GiB for the same reason), and blocks beyond
//! `max_num_seqs × max_model_len` tokens could only ever hold evictable
//! prefix-cache entries. A single-stream caller (`max_num_seqs = 1`) thus
//! gets exactly one context's worth.

use std::fmt;
use std::str::FromStr;

use fulcrum_model::{KvCache, KvDtype, ModelConfig};

use crate::config::{ConfigError, Policy, SchedulerConfig};

/// Longest default `max_model_len`: contexts of 32k+ tokens exist, but a
/// default that large would make one request able to claim a whole pool.
pub const DEFAULT_MAX_MODEL_LEN_CAP: usize = 8192;
pub const DEFAULT_MAX_NUM_SEQS: usize = 64;
/// Step budget of the chunked policy: large enough that prefill chunks run at
/// matrix-product speed, small enough that a step stays short for decodes —
/// and that a step's activations stay in a CPU core's L2 cache: on the
/// development machine (2 MiB L2) prompts prefill 6–8% faster in 1024-token
/// steps than in 2048-token ones (docs/performance.md).
pub const DEFAULT_MAX_BATCHED_TOKENS: usize = 1024;
pub const DEFAULT_BLOCK_SIZE: usize = 16;
pub const DEFAULT_KV_CACHE_FRACTION: f64 = 0.25;
pub const DEFAULT_KV_CACHE_MAX_BYTES: u64 = 4 << 30;

/// How much memory the KV cache gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvCacheSize {
    Bytes(u64),
    /// A fraction in (0, 1] of `MemAvailable` (from `/proc/meminfo`).
    FractionOfAvailable(f64),
    /// Room for this many tokens (rounded up to whole blocks). For tests and
    /// callers that think in tokens.
    Tokens(usize),
}

impl FromStr for KvCacheSize {
    type Err = EngineConfigError;

    /// `4GiB`, `512MiB`, `1.5G` (binary), `800MB` (decimal), `1073741824`
    /// (bytes), or `30%` of available memory.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EngineConfigError::InvalidKvCacheSize(s.to_string());
        let t = s.trim();
        if let Some(percent) = t.strip_suffix('%') {
            let p: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(KvCacheSize::FractionOfAvailable(p / 100.0));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kib" => 1024.0,
            "m" | "mib" => 1024.0 * 1024.0,
            "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "t" | "tib" => 1024.0f64.powi(4),
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            _ => return Err(bad()),
        };
        let bytes = number * multiplier;
        if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(bad());
        }
        Ok(KvCacheSize::Bytes(bytes as u64))
    }
}

impl fmt::Display for KvCacheSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KvCacheSize::Bytes(b) => f.write_str(&format_bytes(b)),
            KvCacheSize::FractionOfAvailable(x) => write!(f, "{}% of available memory", x * 100.0),
            KvCacheSize::Tokens(n) => write!(f, "{n} tokens"),
        }
    }
}

/// `1.5 GiB`, `12.0 MiB`, `900 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The knobs as stated; `None` picks the default described on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOptions {
    pub policy: Policy,
    /// The batch-size cap.
    pub max_num_seqs: usize,
    /// Step token budget. Default: [`DEFAULT_MAX_BATCHED_TOKENS`] for
    /// `chunked`, at least `max_model_len` for the whole-prompt policies.
    pub max_batched_tokens: Option<usize>,
    /// Default: the model's context length, at most [`DEFAULT_MAX_MODEL_LEN_CAP`].
    pub max_model_len: Option<usize>,
    pub block_size: usize,
    /// Default: [`DEFAULT_KV_CACHE_FRACTION`] of available memory, at most
    /// [`DEFAULT_KV_CACHE_MAX_BYTES`] and `max_num_seqs × max_model_len` tokens.
    pub kv_cache: Option<KvCacheSize>,
    /// How keys and values are stored: f16 (llama.cpp's arithmetic) or q8
    /// (half the bytes: twice the tokens, faster decode at large batches).
    pub kv_cache_dtype: KvDtype,
    pub enable_prefix_cache: bool,
    /// Worker threads of the forward pass. Default: the physical cores.
    pub threads: Option<usize>,
    /// Requests accepted but not yet scheduled, beyond which `add_request`
    /// answers `QueueFull`. Default: unlimited.
    pub max_waiting: Option<usize>,
    /// Fraction of blocks kept free when admitting (see `SchedulerConfig`).
    pub watermark: f64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            policy: Policy::Chunked,
            max_num_seqs: DEFAULT_MAX_NUM_SEQS,
            max_batched_tokens: None,
            max_model_len: None,
            block_size: DEFAULT_BLOCK_SIZE,
            kv_cache: None,
            kv_cache_dtype: KvDtype::F16,
            enable_prefix_cache: true,
            threads: None,
            max_waiting: None,
            watermark: 0.01,
        }
    }
}

/// A knob that cannot work with this model or machine; the message names
/// the flag and the limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineConfigError {
    #[error(transparent)]
    Scheduler(#[from] ConfigError),
    #[error("`max_model_len` ({requested}) exceeds the model's context length ({context_length})")]
    MaxModelLenTooLarge {
        requested: usize,
        context_length: usize,
    },
    #[error(
        "the KV cache ({bytes}) holds {num_kv_tokens} tokens, fewer than `max_model_len` ({max_model_len}): \
         raise `kv_cache_memory` or lower `max_model_len`"
    )]
    KvCacheTooSmall {
        bytes: String,
        num_kv_tokens: usize,
        max_model_len: usize,
    },
    #[error("`kv_cache_memory` must be a size such as `4GiB`, `512MB` or `30%`, got `{0}`")]
    InvalidKvCacheSize(String),
    #[error("cannot read MemAvailable from /proc/meminfo to size the KV cache: give `kv_cache_memory` as a size")]
    NoMemInfo,
    #[error("`threads` must be at least 1")]
    ZeroThreads,
    #[error("`kv_cache_dtype`: {0}")]
    KvDtype(String),
}

/// Validated configuration with its derived values.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Policy, budgets, `max_model_len`, block size and `num_blocks`.
    pub scheduler: SchedulerConfig,
    pub num_threads: usize,
    /// `usize::MAX` when unlimited.
    pub max_waiting: usize,
    /// Bytes of the KV cache (`num_blocks × block_size × kv_bytes_per_token`).
    pub kv_cache_bytes: u64,
    pub kv_bytes_per_token: usize,
    pub kv_cache_dtype: KvDtype,
    /// The model's own context length (`max_model_len` is at most this).
    pub model_context_length: usize,
}

impl EngineConfig {
    /// Resolves `options` for `model`, reading available memory if needed.
    pub fn resolve(
        options: &EngineOptions,
        model: &ModelConfig,
    ) -> Result<EngineConfig, EngineConfigError> {
        Self::resolve_with_available_memory(options, model, available_memory_bytes)
    }

    /// As `resolve`, with the available-memory probe supplied (for tests).
    pub fn resolve_with_available_memory(
        options: &EngineOptions,
        model: &ModelConfig,
        available_memory: impl FnOnce() -> Option<u64>,
    ) -> Result<EngineConfig, EngineConfigError> {
        let context_length = model.context_length.max(1);
        let max_model_len = resolve_max_model_len(options.max_model_len, context_length)?;
        let max_batched_tokens = options
            .max_batched_tokens
            .unwrap_or_else(|| default_max_batched_tokens(options, max_model_len));
        let num_threads = options
            .threads
            .unwrap_or_else(fulcrum_kernels::pool::default_num_threads);
        if num_threads == 0 {
            return Err(EngineConfigError::ZeroThreads);
        }
        let block_size = options.block_size;
        let dtype = options.kv_cache_dtype;
        dtype
            .check_head_dim(model.head_dim)
            .map_err(EngineConfigError::KvDtype)?;
        let kv_bytes_per_token = model.kv_bytes_per_token(dtype).max(1);
        let bytes_per_block = (kv_bytes_per_token as u64).saturating_mul(block_size.max(1) as u64);
        let num_blocks = num_kv_blocks(
            options,
            model,
            max_model_len,
            bytes_per_block,
            available_memory,
        )?;
        let scheduler = SchedulerConfig {
            policy: options.policy,
            max_num_seqs: options.max_num_seqs,
            max_batched_tokens,
            max_model_len,
            block_size,
            num_blocks,
            watermark: options.watermark,
            enable_prefix_cache: options.enable_prefix_cache,
        };
        scheduler.validate()?;
        let kv_cache_bytes = bytes_per_block.saturating_mul(num_blocks as u64);
        if scheduler.num_kv_tokens() < max_model_len {
            return Err(EngineConfigError::KvCacheTooSmall {
                bytes: format_bytes(kv_cache_bytes),
                num_kv_tokens: scheduler.num_kv_tokens(),
                max_model_len,
            });
        }
        Ok(EngineConfig {
            scheduler,
            num_threads,
            max_waiting: options.max_waiting.unwrap_or(usize::MAX),
            kv_cache_bytes,
            kv_bytes_per_token,
            kv_cache_dtype: dtype,
            model_context_length: context_length,
        })
    }

    /// Tokens the KV cache holds.
    pub fn num_kv_tokens(&self) -> usize {
        self.scheduler.num_kv_tokens()
    }

    pub fn max_model_len(&self) -> usize {
        self.scheduler.max_model_len
    }
}

impl fmt::Display for EngineConfig {
    /// One line for a start-up log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scheduler;
        write!(
            f,
            "policy {}, max_num_seqs {}, max_batched_tokens {}, max_model_len {}, KV cache {} {} = {} tokens \
             ({} blocks of {}), prefix cache {}, {} threads",
            s.policy,
            s.max_num_seqs,
            s.max_batched_tokens,
            s.max_model_len,
            self.kv_cache_dtype,
            format_bytes(self.kv_cache_bytes),
            s.num_kv_tokens(),
            s.num_blocks,
            s.block_size,
            if s.enable_prefix_cache { "on" } else { "off" },
            self.num_threads,
        )
    }
}

/// The stated `max_model_len`, checked against the model's context length,
/// or the context length up to [`DEFAULT_MAX_MODEL_LEN_CAP`].
fn resolve_max_model_len(
    requested: Option<usize>,
    context_length: usize,
) -> Result<usize, EngineConfigError> {
    match requested {
        Some(n) if n > context_length => Err(EngineConfigError::MaxModelLenTooLarge {
            requested: n,
            context_length,
        }),
        Some(n) => Ok(n),
        None => Ok(context_length.min(DEFAULT_MAX_MODEL_LEN_CAP)),
    }
}

/// The step budget when none is stated: [`DEFAULT_MAX_BATCHED_TOKENS`], and
/// at least one token per sequence; whole-prompt policies also need room
/// for the longest prompt.
fn default_max_batched_tokens(options: &EngineOptions, max_model_len: usize) -> usize {
    if options.policy.is_chunked() {
        DEFAULT_MAX_BATCHED_TOKENS.max(options.max_num_seqs)
    } else {
        DEFAULT_MAX_BATCHED_TOKENS
            .max(max_model_len)
            .max(options.max_num_seqs)
    }
}

/// KV blocks for `options.kv_cache`; unset, the default fraction of
/// available memory, at most [`DEFAULT_KV_CACHE_MAX_BYTES`] and what
/// `max_num_seqs` sequences of `max_model_len` tokens can use.
fn num_kv_blocks(
    options: &EngineOptions,
    model: &ModelConfig,
    max_model_len: usize,
    bytes_per_block: u64,
    available_memory: impl FnOnce() -> Option<u64>,
) -> Result<usize, EngineConfigError> {
    let block_size = options.block_size;
    Ok(match options.kv_cache {
        Some(KvCacheSize::Tokens(n)) => n.div_ceil(block_size.max(1)),
        Some(KvCacheSize::Bytes(b)) => KvCache::blocks_for_bytes(
            model,
            block_size,
            usize::try_from(b).unwrap_or(usize::MAX),
            options.kv_cache_dtype,
        ),
        Some(KvCacheSize::FractionOfAvailable(x)) => {
            blocks_for_fraction(x, bytes_per_block, available_memory)?
        }
        None => {
            let usable_tokens = options.max_num_seqs.saturating_mul(max_model_len);
            let num_usable_blocks = usable_tokens.div_ceil(block_size.max(1));
            let num_max_blocks =
                usize::try_from(DEFAULT_KV_CACHE_MAX_BYTES / bytes_per_block.max(1))
                    .unwrap_or(usize::MAX);
            let num_blocks =
                blocks_for_fraction(DEFAULT_KV_CACHE_FRACTION, bytes_per_block, available_memory)?;
            num_blocks.min(num_max_blocks).min(num_usable_blocks)
        }
    })
}

fn blocks_for_fraction(
    fraction: f64,
    bytes_per_block: u64,
    available_memory: impl FnOnce() -> Option<u64>,
) -> Result<usize, EngineConfigError> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(EngineConfigError::InvalidKvCacheSize(format!(
            "{}%",
            fraction * 100.0
        )));
    }
    let available = available_memory().ok_or(EngineConfigError::NoMemInfo)?;
    let bytes = (available as f64 * fraction) as u64;
    Ok(usize::try_from(bytes / bytes_per_block.max(1)).unwrap_or(usize::MAX))
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut fields = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use fulcrum_kernels::ops::RopeStyle;
    use fulcrum_model::config::{Arch, LayerAttention, ModelConfig};

    use super::*;

    /// A SmolLM2-shaped config: 30 layers, 3 KV heads of 64 → 23 040 B/token.
    fn model_config(context_length: usize) -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            num_layers: 30,
            d_model: 576,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            ffn_dim: 1536,
            vocab_size: 49152,
            rms_eps: 1e-5,
            rope_dim: 64,
            rope_style: RopeStyle::Interleaved,
            context_length,
            attention_scale: 0.125,
            layers: vec![
                LayerAttention {
                    rope_base: 10000.0,
                    window: None
                };
                30
            ],
        }
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn kv_sizes_parse() {
        let cases = [
            ("4GiB", KvCacheSize::Bytes(4 * GIB)),
            ("4g", KvCacheSize::Bytes(4 * GIB)),
            ("1.5G", KvCacheSize::Bytes(3 * GIB / 2)),
            ("512MiB", KvCacheSize::Bytes(512 << 20)),
            ("800MB", KvCacheSize::Bytes(800_000_000)),
            ("1024", KvCacheSize::Bytes(1024)),
            (" 30% ", KvCacheSize::FractionOfAvailable(0.3)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<KvCacheSize>(), Ok(expected), "{text}");
        }
        for bad in ["", "abc", "4XB", "0", "0%", "150%", "-1G", "NaN", "%"] {
            let err = bad.parse::<KvCacheSize>().unwrap_err().to_string();
            assert!(err.contains("`kv_cache_memory`"), "{bad}: {err}");
        }
    }

    #[test]
    fn meminfo_is_read_in_kib() {
        let text = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   2000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(2_048_000_000));
        assert_eq!(parse_mem_available("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn defaults_cap_the_context_and_the_kv_cache() {
        let options = EngineOptions::default();
        let config =
            EngineConfig::resolve_with_available_memory(&options, &model_config(32768), || {
                Some(64 * GIB)
            })
            .unwrap();
        assert_eq!(config.max_model_len(), DEFAULT_MAX_MODEL_LEN_CAP);
        assert_eq!(
            config.scheduler.max_batched_tokens,
            DEFAULT_MAX_BATCHED_TOKENS
        );
        // 25% of 64 GiB is 16 GiB: capped at 4 GiB.
        assert_eq!(
            config.scheduler.num_blocks,
            (DEFAULT_KV_CACHE_MAX_BYTES / (23040 * 16)) as usize
        );
        assert_eq!(config.kv_cache_bytes, config.num_kv_tokens() as u64 * 23040);
        assert_eq!(config.max_waiting, usize::MAX);
        // One sequence needs one context, whatever the memory.
        let single = EngineOptions {
            max_num_seqs: 1,
            ..EngineOptions::default()
        };
        let config =
            EngineConfig::resolve_with_available_memory(&single, &model_config(32768), || {
                Some(64 * GIB)
            })
            .unwrap();
        assert_eq!(config.num_kv_tokens(), DEFAULT_MAX_MODEL_LEN_CAP);

        let small =
            EngineConfig::resolve_with_available_memory(&options, &model_config(2048), || {
                Some(GIB)
            })
            .unwrap();
        assert_eq!(small.max_model_len(), 2048);
        assert_eq!(
            small.scheduler.num_blocks,
            (GIB / 4) as usize / (23040 * 16)
        );
        let line = small.to_string();
        assert!(
            line.contains("policy chunked") && line.contains("tokens"),
            "{line}"
        );
    }

    #[test]
    fn the_q8_cache_holds_about_twice_the_tokens() {
        let sized = |dtype| {
            let options = EngineOptions {
                kv_cache: Some(KvCacheSize::Bytes(GIB)),
                kv_cache_dtype: dtype,
                ..EngineOptions::default()
            };
            EngineConfig::resolve_with_available_memory(&options, &model_config(2048), || None)
                .unwrap()
        };
        let (f16, q8) = (sized(KvDtype::F16), sized(KvDtype::Q8));
        // Per token: 30 layers × 2 (K, V) × 3 heads × (64 bytes + a 4-byte scale).
        assert_eq!(q8.kv_bytes_per_token, 12240);
        assert_eq!(q8.scheduler.num_blocks, GIB as usize / (12240 * 16));
        assert!(q8.num_kv_tokens() > f16.num_kv_tokens() * 18 / 10);
        assert!(q8.to_string().contains("KV cache q8"), "{q8}");
        // Rows the layout cannot hold are refused by name.
        let mut odd = model_config(2048);
        odd.head_dim = 6;
        let options = EngineOptions {
            kv_cache_dtype: KvDtype::Q8,
            ..EngineOptions::default()
        };
        let err =
            EngineConfig::resolve_with_available_memory(&options, &odd, || Some(GIB)).unwrap_err();
        assert!(
            err.to_string().contains(
                "`kv_cache_dtype`: the q8 KV cache needs a head dimension divisible by 4"
            ),
            "{err}"
        );
        assert_eq!("Q8".parse::<KvDtype>(), Ok(KvDtype::Q8));
        assert!("q4"
            .parse::<KvDtype>()
            .unwrap_err()
            .contains("expected f16 or q8"));
    }

    #[test]
    fn whole_prompt_policies_get_a_budget_of_a_whole_context() {
        let options = EngineOptions {
            policy: Policy::Static,
            max_model_len: Some(4096),
            ..EngineOptions::default()
        };
        let config =
            EngineConfig::resolve_with_available_memory(&options, &model_config(8192), || {
                Some(64 * GIB)
            })
            .unwrap();
        assert_eq!(config.scheduler.max_batched_tokens, 4096);
    }

    #[test]
    fn impossible_configurations_are_refused_with_the_knob_named() {
        let model = model_config(8192);
        let cases = [
            (
                EngineOptions {
                    max_model_len: Some(9000),
                    ..EngineOptions::default()
                },
                "`max_model_len` (9000) exceeds",
            ),
            (
                EngineOptions {
                    kv_cache: Some(KvCacheSize::Tokens(1000)),
                    ..EngineOptions::default()
                },
                "holds 1008 tokens, fewer than `max_model_len` (8192)",
            ),
            (
                EngineOptions {
                    block_size: 0,
                    ..EngineOptions::default()
                },
                "`block_size` must be in [1, 1024]",
            ),
            (
                EngineOptions {
                    threads: Some(0),
                    ..EngineOptions::default()
                },
                "`threads` must be at least 1",
            ),
            (
                EngineOptions {
                    policy: Policy::Static,
                    max_batched_tokens: Some(100),
                    ..EngineOptions::default()
                },
                "`max_batched_tokens` (100) must be at least `max_model_len`",
            ),
        ];
        for (options, expected) in cases {
            let err =
                EngineConfig::resolve_with_available_memory(&options, &model, || Some(64 * GIB))
                    .unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{err} should contain {expected:?}"
            );
        }
        let err =
            EngineConfig::resolve_with_available_memory(&EngineOptions::default(), &model, || None)
                .unwrap_err();
        assert_eq!(err, EngineConfigError::NoMemInfo);
    }
}
