//! Sequences: one generation stream, the unit the scheduler moves around.
//!
//! Principal types:
//! - [`Sequence`]: the tokens (prompt + generated), how many of them have KV
//!   computed, the [`BlockTable`] holding that KV, and timings. There is no
//!   prefill or decode *phase*: a step moves `num_computed_tokens` towards
//!   `num_tokens`, which covers whole prefills, chunked prefills, prefix-cache
//!   hits (they start ahead) and preemption by recompute (it restarts at 0)
//!   with one number.
//! - [`SequenceRequest`]: what the step loop hands to `Scheduler::add`.
//! - [`FinishReason`], [`SequenceStatus`], [`SequenceTimings`].
//!
//! Sampling parameters and the text side (detokenizer, stop strings) stay with
//! the step loop: the scheduler only needs token counts and the length limits.

use std::fmt;
use std::time::{Duration, Instant};

use crate::block_pool::BlockTable;
use crate::prefix_cache::{extend_hash_chain, BlockHash};

/// Identifies a sequence; chosen by the caller, unique among live sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq-{}", self.0)
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// EOS, a stop token id or a stop string.
    Stop,
    /// `max_tokens` generated or `max_model_len` reached.
    Length,
    /// Cancelled by the client (or the server).
    Abort,
    /// The sequence could not grow: it was running alone and the KV pool had
    /// no block left for it. Unreachable for requests accepted by
    /// `Scheduler::add` (which checks they fit the pool); kept so that a
    /// bookkeeping surprise ends one request instead of looping forever.
    Capacity,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string (`capacity` reads as `length`).
    pub fn as_openai_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::Capacity => "length",
            FinishReason::Abort => "abort",
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
            FinishReason::Capacity => "capacity",
        })
    }
}

/// Where a sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceStatus {
    /// In the waiting queue: never scheduled, or preempted (then it holds no
    /// blocks and `num_computed_tokens == 0`).
    Waiting,
    /// In the running set: holds blocks for its computed tokens.
    Running,
    Finished(FinishReason),
}

/// What the step loop hands to `Scheduler::add`: already validated token ids
/// and a resolved output limit.
#[derive(Debug, Clone)]
pub struct SequenceRequest {
    pub id: SeqId,
    pub prompt: Vec<u32>,
    /// Output tokens at most (the step loop resolves an unset `max_tokens` to
    /// `max_model_len - prompt length`).
    pub max_tokens: usize,
    /// Lower is served first; equal priorities are served in arrival order.
    pub priority: i32,
    pub arrival: Instant,
}

/// Per-sequence instants, recorded by the scheduler's update functions from
/// the `now` the step loop passes in (so tests are deterministic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceTimings {
    pub arrival: Instant,
    /// First step that computed any of its tokens.
    pub first_scheduled: Option<Instant>,
    /// When each output token was produced; `[0]` is the first token.
    pub token_times: Vec<Instant>,
    pub finished: Option<Instant>,
}

impl SequenceTimings {
    pub fn new(arrival: Instant) -> Self {
        SequenceTimings {
            arrival,
            first_scheduled: None,
            token_times: Vec::new(),
            finished: None,
        }
    }

    pub fn first_token(&self) -> Option<Instant> {
        self.token_times.first().copied()
    }

    /// Arrival to first scheduled.
    pub fn queue_time(&self) -> Option<Duration> {
        Some(
            self.first_scheduled?
                .saturating_duration_since(self.arrival),
        )
    }

    /// Time to first token, from arrival.
    pub fn ttft(&self) -> Option<Duration> {
        Some(self.first_token()?.saturating_duration_since(self.arrival))
    }

    /// Mean time per output token after the first; `None` with fewer than two.
    pub fn tpot(&self) -> Option<Duration> {
        let n = self.token_times.len();
        if n < 2 {
            return None;
        }
        let span = self.token_times[n - 1].saturating_duration_since(self.token_times[0]);
        Some(span / (n as u32 - 1))
    }

    /// Gaps between consecutive output tokens.
    pub fn inter_token_latencies(&self) -> impl Iterator<Item = Duration> + '_ {
        self.token_times
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
    }

    /// Arrival to finish.
    pub fn e2e(&self) -> Option<Duration> {
        Some(self.finished?.saturating_duration_since(self.arrival))
    }
}

/// One generation stream. Fields are private: only the scheduler moves a
/// sequence forward, so its counts and its block table stay consistent.
#[derive(Debug)]
pub struct Sequence {
    pub(crate) id: SeqId,
    pub(crate) priority: i32,
    /// Tie-break among equal priorities: the order of `Scheduler::add` calls.
    pub(crate) arrival_order: u64,
    /// Prompt then generated tokens.
    pub(crate) tokens: Vec<u32>,
    pub(crate) num_prompt_tokens: usize,
    pub(crate) max_tokens: usize,
    pub(crate) num_computed_tokens: usize,
    pub(crate) block_table: BlockTable,
    /// Hash chain over every full block of `tokens` (empty when the prefix
    /// cache is off); kept incrementally so lookups never rehash a prompt.
    pub(crate) block_hashes: Vec<BlockHash>,
    pub(crate) status: SequenceStatus,
    /// Prompt tokens served from the prefix cache at the last admission.
    pub(crate) num_cached_tokens: usize,
    pub(crate) num_preemptions: u32,
    pub(crate) timings: SequenceTimings,
}

impl Sequence {
    pub(crate) fn new(request: SequenceRequest, arrival_order: u64) -> Self {
        let num_prompt_tokens = request.prompt.len();
        Sequence {
            id: request.id,
            priority: request.priority,
            arrival_order,
            tokens: request.prompt,
            num_prompt_tokens,
            max_tokens: request.max_tokens,
            num_computed_tokens: 0,
            block_table: BlockTable::default(),
            block_hashes: Vec::new(),
            status: SequenceStatus::Waiting,
            num_cached_tokens: 0,
            num_preemptions: 0,
            timings: SequenceTimings::new(request.arrival),
        }
    }

    pub fn id(&self) -> SeqId {
        self.id
    }
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// Prompt then generated tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    pub fn prompt_tokens(&self) -> &[u32] {
        &self.tokens[..self.num_prompt_tokens]
    }
    pub fn output_tokens(&self) -> &[u32] {
        &self.tokens[self.num_prompt_tokens..]
    }
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }
    pub fn num_prompt_tokens(&self) -> usize {
        self.num_prompt_tokens
    }
    pub fn num_output_tokens(&self) -> usize {
        self.tokens.len() - self.num_prompt_tokens
    }
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
    /// Tokens whose KV is in the block table.
    pub fn num_computed_tokens(&self) -> usize {
        self.num_computed_tokens
    }
    /// Tokens still to compute before the next logits: 1 for a decode, more
    /// while (re-)prefilling.
    pub fn num_uncomputed_tokens(&self) -> usize {
        self.tokens.len() - self.num_computed_tokens
    }
    /// Prompt tokens served from the prefix cache at the last admission.
    pub fn num_cached_tokens(&self) -> usize {
        self.num_cached_tokens
    }
    pub fn num_preemptions(&self) -> u32 {
        self.num_preemptions
    }
    pub fn block_table(&self) -> &BlockTable {
        &self.block_table
    }
    pub fn status(&self) -> SequenceStatus {
        self.status
    }
    pub fn finish_reason(&self) -> Option<FinishReason> {
        match self.status {
            SequenceStatus::Finished(reason) => Some(reason),
            _ => None,
        }
    }
    pub fn timings(&self) -> &SequenceTimings {
        &self.timings
    }
    /// Everything but the last token is computed: the next step is a decode.
    pub fn is_decoding(&self) -> bool {
        self.num_uncomputed_tokens() == 1 && self.num_output_tokens() > 0
    }

    /// Appends a generated token, extending the hash chain when it completes
    /// a block (only when `hash_block_size` is given, i.e. caching is on).
    pub(crate) fn push_token(&mut self, token: u32, hash_block_size: Option<usize>) {
        self.tokens.push(token);
        if let Some(block_size) = hash_block_size {
            extend_hash_chain(&mut self.block_hashes, &self.tokens, block_size);
        }
    }

    /// Order key: priority first, then arrival. Lower runs first and is
    /// preempted last.
    pub(crate) fn key(&self) -> SeqKey {
        SeqKey {
            priority: self.priority,
            arrival_order: self.arrival_order,
            id: self.id,
        }
    }
}

/// The scheduling order of a sequence (derived `Ord` compares fields in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SeqKey {
    pub priority: i32,
    pub arrival_order: u64,
    pub id: SeqId,
}
