//! Engine gauges and counters, published by the step loop as one plain
//! snapshot ([`EngineMetrics`]) behind a mutex: when a step's batch is
//! formed, when a step ends, once for all the requests that finish together
//! (before any of their `Done`s goes out), and when the loop goes idle. So a
//! client that has its `Done` (or a token) sees a snapshot at least that
//! recent. Publishing is per step, never per request: sixty-four requests
//! finishing in one step cost one copy, not sixty-four.
//!
//! Why a snapshot and not a metrics library: the engine has one writer (its
//! thread) and rare readers (a `/metrics` scrape, a progress line), so a
//! copy of a small struct under a lock held for nanoseconds is the cheapest
//! correct thing; the readers see every figure from one moment, and the
//! engine stays free of any exposition format.
//! Latency histograms are built by whoever consumes the per-request timings
//! in `ChoiceFinished`; the engine only counts.

use std::time::Duration;

use crate::sequence::FinishReason;

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepMetrics {
    pub num_seqs: usize,
    pub num_prefill_tokens: usize,
    pub num_decode_tokens: usize,
    /// Schedule, forward pass, sampling and token events (zero while the
    /// step runs).
    pub duration: Duration,
}

impl StepMetrics {
    pub fn num_tokens(&self) -> usize {
        self.num_prefill_tokens + self.num_decode_tokens
    }
}

/// Sequences finished, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinishCounts {
    pub stop: u64,
    /// `max_tokens` or `max_model_len` (and the never-expected `capacity`).
    pub length: u64,
    pub abort: u64,
    /// Failed by an engine error (a panicking step).
    pub error: u64,
}

impl FinishCounts {
    pub(crate) fn count(&mut self, reason: FinishReason) {
        match reason {
            FinishReason::Stop => self.stop += 1,
            FinishReason::Length | FinishReason::Capacity => self.length += 1,
            FinishReason::Abort => self.abort += 1,
        }
    }
}

/// Gauges (now) and counters (since start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineMetrics {
    // --- gauges ---
    pub num_running: usize,
    /// In the scheduler's waiting queue (preempted ones included).
    pub num_waiting: usize,
    /// Of the waiting, those preempted (they hold generated tokens).
    pub num_preempted_waiting: usize,
    pub num_kv_blocks: usize,
    /// Blocks owned by a sequence.
    pub num_kv_blocks_used: usize,
    /// Blocks in the prefix cache, owned or not.
    pub num_kv_blocks_cached: usize,
    pub last_step: StepMetrics,
    // --- counters ---
    pub num_steps: u64,
    pub num_requests_added: u64,
    /// Prompt tokens of requests that produced their first token.
    pub num_prompt_tokens: u64,
    pub num_generation_tokens: u64,
    /// Tokens the forward pass computed for prompts (prefix-cache hits
    /// excluded, recomputation after preemption included).
    pub num_prefill_tokens_computed: u64,
    pub num_decode_tokens_computed: u64,
    /// Time spent in steps.
    pub busy_time: Duration,
    pub num_preemptions: u64,
    /// Prompt tokens looked up in the prefix cache at admission.
    pub prefix_cache_queries: u64,
    /// Of those, tokens served from cached blocks.
    pub prefix_cache_hits: u64,
    /// Sequences (choices) finished, by reason.
    pub num_finished: FinishCounts,
    /// Steps that panicked or whose batch the model refused.
    pub num_step_failures: u64,
}

impl EngineMetrics {
    /// Fraction of KV blocks owned by sequences, in [0, 1].
    pub fn kv_cache_usage(&self) -> f64 {
        if self.num_kv_blocks == 0 {
            0.0
        } else {
            self.num_kv_blocks_used as f64 / self.num_kv_blocks as f64
        }
    }
}
