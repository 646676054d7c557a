//! Scheduler knobs: [`SchedulerConfig`] (plain fields, checked once by
//! [`SchedulerConfig::validate`]) and the [`Policy`] names `--policy` accepts.
//!
//! Validation rejects every combination under which a request the scheduler
//! accepted could wait forever (a whole-prompt policy whose step budget is
//! smaller than a prompt may be, a budget too small for one decode of every
//! running sequence), so the scheduler itself never has to second-guess them.

use std::fmt;
use std::str::FromStr;

/// How the scheduler forms a step. See `scheduler` for the exact rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// Request-level batching: a new batch only when the last one finished.
    Static,
    /// Iteration-level; admissible waiting prompts run (whole) before decodes.
    PrefillFirst,
    /// Iteration-level; every running decode first, whole prompts only into
    /// what is left, and only when every running decode can still grow.
    DecodeFirst,
    /// Sarathi-Serve stall-free batching: decodes first, the rest of the token
    /// budget filled with prompt chunks.
    #[default]
    Chunked,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::Static,
        Policy::PrefillFirst,
        Policy::DecodeFirst,
        Policy::Chunked,
    ];

    /// The `--policy` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::PrefillFirst => "prefill-first",
            Policy::DecodeFirst => "decode-first",
            Policy::Chunked => "chunked",
        }
    }

    /// Whether prompts are split across steps (otherwise a prompt is computed
    /// in one step, which then needs a budget of `max_model_len`).
    pub fn is_chunked(self) -> bool {
        self == Policy::Chunked
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ConfigError::UnknownPolicy(s.to_string()))
    }
}

/// A knob out of range, named as the flag names it (without dashes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("`{field}` {requirement}")]
    Invalid {
        field: &'static str,
        requirement: String,
    },
    #[error("unknown policy `{0}`: expected one of static, prefill-first, decode-first, chunked")]
    UnknownPolicy(String),
}

fn invalid(field: &'static str, requirement: String) -> ConfigError {
    ConfigError::Invalid { field, requirement }
}

/// Everything the scheduler and the block pool are sized by.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub policy: Policy,
    /// Most sequences in the running set (the batch-size cap).
    pub max_num_seqs: usize,
    /// Most tokens computed in one step (decodes count 1 each).
    pub max_batched_tokens: usize,
    /// Most tokens (prompt + output) one sequence may hold.
    pub max_model_len: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Blocks in the pool (derived by the caller from the KV memory).
    pub num_blocks: usize,
    /// Fraction of the pool kept free when admitting a prompt while others
    /// run, so that admission does not immediately force a preemption.
    pub watermark: f64,
    pub enable_prefix_cache: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            policy: Policy::Chunked,
            max_num_seqs: 256,
            max_batched_tokens: 2048,
            max_model_len: 2048,
            block_size: 16,
            num_blocks: 4096,
            watermark: 0.01,
            enable_prefix_cache: true,
        }
    }
}

/// Largest block size accepted; larger blocks only waste the partial tail.
pub const MAX_BLOCK_SIZE: usize = 1024;

impl SchedulerConfig {
    /// Checks every knob and their combinations; the error names the field
    /// and the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_num_seqs == 0 {
            return Err(invalid("max_num_seqs", "must be at least 1".into()));
        }
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(invalid(
                "block_size",
                format!("must be in [1, {MAX_BLOCK_SIZE}], got {}", self.block_size),
            ));
        }
        if self.num_blocks == 0 || self.num_blocks >= u32::MAX as usize {
            return Err(invalid(
                "num_blocks",
                format!("must be in [1, {}), got {}", u32::MAX, self.num_blocks),
            ));
        }
        if self.max_model_len == 0 {
            return Err(invalid("max_model_len", "must be at least 1".into()));
        }
        if self.max_batched_tokens < self.max_num_seqs {
            return Err(invalid(
                "max_batched_tokens",
                format!(
                    "({}) must be at least `max_num_seqs` ({}) so every running decode fits in one step",
                    self.max_batched_tokens, self.max_num_seqs
                ),
            ));
        }
        if !self.policy.is_chunked() && self.max_batched_tokens < self.max_model_len {
            return Err(invalid(
                "max_batched_tokens",
                format!(
                    "({}) must be at least `max_model_len` ({}) under policy `{}`, which computes whole prompts in one step",
                    self.max_batched_tokens, self.max_model_len, self.policy
                ),
            ));
        }
        if !(self.watermark.is_finite() && (0.0..1.0).contains(&self.watermark)) {
            return Err(invalid(
                "watermark",
                format!("must be in [0, 1), got {}", self.watermark),
            ));
        }
        Ok(())
    }

    /// Blocks kept free at admission (rounded down).
    pub fn num_watermark_blocks(&self) -> usize {
        (self.watermark * self.num_blocks as f64) as usize
    }

    /// Tokens the pool holds.
    pub fn num_kv_tokens(&self) -> usize {
        self.num_blocks.saturating_mul(self.block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for policy in Policy::ALL {
            assert_eq!(policy.name().parse::<Policy>(), Ok(policy));
        }
        assert_eq!("Prefill-First".parse::<Policy>(), Ok(Policy::PrefillFirst));
        let err = "fifo".parse::<Policy>().unwrap_err();
        assert!(err.to_string().contains("`fifo`") && err.to_string().contains("chunked"));
    }

    #[test]
    fn defaults_are_valid_for_every_policy() {
        for policy in Policy::ALL {
            SchedulerConfig {
                policy,
                ..SchedulerConfig::default()
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn errors_name_the_field_and_the_limit() {
        let base = SchedulerConfig::default();
        let cases = [
            (SchedulerConfig { max_num_seqs: 0, ..base.clone() }, "`max_num_seqs` must be at least 1"),
            (SchedulerConfig { block_size: 0, ..base.clone() }, "`block_size` must be in [1, 1024]"),
            (SchedulerConfig { num_blocks: 0, ..base.clone() }, "`num_blocks` must be in [1,"),
            (SchedulerConfig { watermark: 1.0, ..base.clone() }, "`watermark` must be in [0, 1)"),
            (SchedulerConfig { watermark: f64::NAN, ..base.clone() }, "`watermark`"),
            (SchedulerConfig { max_batched_tokens: 8, max_num_seqs: 16, ..base.clone() }, "`max_batched_tokens` (8) must be at least `max_num_seqs` (16)"),
            (
                SchedulerConfig { policy: Policy::Static, max_batched_tokens: 512, ..base.clone() },
                "`max_batched_tokens` (512) must be at least `max_model_len` (2048) under policy `static`",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
        // Chunked prefill takes any budget that holds the decodes.
        SchedulerConfig {
            max_batched_tokens: 256,
            ..base
        }
        .validate()
        .unwrap();
    }
}
