//! The scheduler: owns the sequences and the block pool, decides each step.
//!
//! Principal types:
//! - [`Scheduler`]: the waiting queue and the running set (both ordered by
//!   priority, then arrival), the [`BlockPool`], the finished outbox, counters.
//! - [`StepPlan`] / [`ScheduledSeq`] (in `plan`): what a step does.
//! - [`StepOutput`]: what the step loop reports back per sampled token.
//! - [`AddError`], [`StepError`].
//!
//! Planning is separated from mutation, as the step loop uses it:
//! 1. `add` / `finish` (abort, stop string) between steps;
//! 2. [`Scheduler::plan`] — pure, reads only; then [`Scheduler::apply`] — the
//!    only place a plan changes state (preempts, attaches cached blocks,
//!    allocates a block for every position the step writes).
//!    [`Scheduler::schedule`] does both;
//! 3. the model runs; the step loop samples and checks stop tokens;
//! 4. [`Scheduler::update`] — advances `num_computed_tokens`, commits the
//!    hashes of blocks the step filled, appends tokens, finishes on length;
//! 5. [`Scheduler::take_finished`] — finished sequences, blocks released.
//!
//! Synchronous and deterministic: no threads, no clocks (`now` is passed in).

mod plan;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::ops::AddAssign;
use std::time::Instant;

use crate::block_pool::BlockPool;
use crate::config::{ConfigError, Policy, SchedulerConfig};
use crate::prefix_cache::extend_hash_chain;
use crate::sequence::{FinishReason, SeqId, SeqKey, Sequence, SequenceRequest, SequenceStatus};

use plan::SchedulerView;
pub use plan::{ScheduledSeq, StepPlan};

/// Why `Scheduler::add` refused a request. Each would otherwise wait forever.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("sequence id {0} is already in use")]
    DuplicateId(SeqId),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("`max_tokens` must be at least 1")]
    ZeroMaxTokens,
    #[error(
        "this model's maximum context length is {max_model_len} tokens, but {num_prompt_tokens} prompt tokens \
         + {max_tokens} `max_tokens` were requested"
    )]
    ExceedsMaxModelLen {
        num_prompt_tokens: usize,
        max_tokens: usize,
        max_model_len: usize,
    },
    #[error(
        "the request needs {num_blocks_needed} KV cache blocks for {num_tokens} tokens, but the pool has \
         {num_blocks} blocks ({num_kv_tokens} tokens)"
    )]
    ExceedsKvCapacity {
        num_tokens: usize,
        num_blocks_needed: usize,
        num_blocks: usize,
        num_kv_tokens: usize,
    },
}

/// A plan or a model output that does not fit the scheduler's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("stale plan: the scheduler changed since the plan was made")]
    StalePlan,
    #[error("model outputs do not match the plan: {0}")]
    OutputMismatch(String),
}

/// One sampled token, reported for each `wants_logits` entry of the plan, in
/// plan order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOutput {
    pub seq_id: SeqId,
    pub token: u32,
    /// EOS (unless ignored) or a stop token id: the sequence ends with `stop`.
    pub is_stop: bool,
}

/// Counters since start. Gauges are methods on [`Scheduler`] and [`BlockPool`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub num_steps: u64,
    pub num_preemptions: u64,
    /// Prompt tokens looked up in the prefix cache at admission.
    pub prefix_cache_queries: u64,
    /// Of those, tokens served from cached blocks.
    pub prefix_cache_hits: u64,
}

/// Totals over schedulers (the step loop replaces its scheduler after a
/// failed step and keeps counting from the old one's totals).
impl AddAssign for SchedulerStats {
    fn add_assign(&mut self, other: SchedulerStats) {
        self.num_steps += other.num_steps;
        self.num_preemptions += other.num_preemptions;
        self.prefix_cache_queries += other.prefix_cache_queries;
        self.prefix_cache_hits += other.prefix_cache_hits;
    }
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    pool: BlockPool,
    sequences: HashMap<SeqId, Sequence>,
    waiting: BTreeSet<SeqKey>,
    running: BTreeSet<SeqKey>,
    finished: Vec<Sequence>,
    next_arrival_order: u64,
    /// `static` only: set while a batch forms (see `plan`).
    static_batch_cutoff: Option<u64>,
    stats: SchedulerStats,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Scheduler {
            pool: BlockPool::new(
                config.num_blocks,
                config.block_size,
                config.enable_prefix_cache,
            ),
            config,
            sequences: HashMap::new(),
            waiting: BTreeSet::new(),
            running: BTreeSet::new(),
            finished: Vec::new(),
            next_arrival_order: 0,
            static_batch_cutoff: None,
            stats: SchedulerStats::default(),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }
    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn num_running(&self) -> usize {
        self.running.len()
    }
    /// Waiting sequences that were preempted (they hold generated tokens).
    pub fn num_preempted_waiting(&self) -> usize {
        self.waiting
            .iter()
            .filter(|k| {
                self.sequences
                    .get(&k.id)
                    .is_some_and(|s| s.num_preemptions > 0)
            })
            .count()
    }
    /// Some sequence is waiting or running.
    pub fn has_unfinished(&self) -> bool {
        !self.sequences.is_empty()
    }
    /// A live (waiting or running) sequence.
    pub fn sequence(&self, id: SeqId) -> Option<&Sequence> {
        self.sequences.get(&id)
    }
    /// Waiting sequences in the order they will be admitted.
    pub fn waiting_ids(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.waiting.iter().map(|k| k.id)
    }
    /// Running sequences in scheduling order (the last is the next victim).
    pub fn running_ids(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.running.iter().map(|k| k.id)
    }

    /// Queues a request, or refuses one that could never run to completion.
    pub fn add(&mut self, request: SequenceRequest) -> Result<(), AddError> {
        if self.sequences.contains_key(&request.id) {
            return Err(AddError::DuplicateId(request.id));
        }
        if request.prompt.is_empty() {
            return Err(AddError::EmptyPrompt);
        }
        if request.max_tokens == 0 {
            return Err(AddError::ZeroMaxTokens);
        }
        let num_prompt_tokens = request.prompt.len();
        let num_tokens = num_prompt_tokens.saturating_add(request.max_tokens);
        if num_tokens > self.config.max_model_len {
            return Err(AddError::ExceedsMaxModelLen {
                num_prompt_tokens,
                max_tokens: request.max_tokens,
                max_model_len: self.config.max_model_len,
            });
        }
        // The last output token is never fed back, so it needs no KV.
        let num_blocks_needed = self.pool.num_blocks_for(num_tokens - 1);
        if num_blocks_needed > self.pool.num_blocks() {
            return Err(AddError::ExceedsKvCapacity {
                num_tokens,
                num_blocks_needed,
                num_blocks: self.pool.num_blocks(),
                num_kv_tokens: self.config.num_kv_tokens(),
            });
        }
        let mut seq = Sequence::new(request, self.next_arrival_order);
        self.next_arrival_order += 1;
        if self.config.enable_prefix_cache {
            extend_hash_chain(&mut seq.block_hashes, &seq.tokens, self.config.block_size);
        }
        self.waiting.insert(seq.key());
        self.sequences.insert(seq.id, seq);
        Ok(())
    }

    /// Ends a waiting or running sequence (abort, stop string) and releases
    /// its blocks; it moves to the finished outbox. False if it is not live.
    /// Call between steps, not between `apply` and `update`.
    pub fn finish(&mut self, id: SeqId, reason: FinishReason, now: Instant) -> bool {
        let Some(mut seq) = self.sequences.remove(&id) else {
            return false;
        };
        let key = seq.key();
        self.waiting.remove(&key);
        self.running.remove(&key);
        self.pool.free(&mut seq.block_table);
        seq.status = SequenceStatus::Finished(reason);
        seq.timings.finished = Some(now);
        self.finished.push(seq);
        true
    }

    /// Drains the sequences finished since the last call.
    pub fn take_finished(&mut self) -> Vec<Sequence> {
        std::mem::take(&mut self.finished)
    }

    /// Decides the next step from the current state. Reads only.
    pub fn plan(&self) -> StepPlan {
        plan::plan(&self.view())
    }

    /// Plans and applies the next step.
    pub fn schedule(&mut self, now: Instant) -> StepPlan {
        let plan = self.plan();
        self.apply_unchecked(&plan, now);
        plan
    }

    /// Carries out `plan`, which must be what `plan()` returns now (else
    /// `StalePlan`, and nothing changes): preemptions and scheduler finishes
    /// first, then cached blocks are attached to admitted sequences (before
    /// any allocation could evict them), then every scheduled sequence gets
    /// blocks for all positions the step writes.
    pub fn apply(&mut self, plan: &StepPlan, now: Instant) -> Result<(), StepError> {
        if *plan != self.plan() {
            return Err(StepError::StalePlan);
        }
        self.apply_unchecked(plan, now);
        Ok(())
    }

    fn apply_unchecked(&mut self, plan: &StepPlan, now: Instant) {
        self.stats.num_steps += 1;
        let static_batch_cutoff = self.static_batch_cutoff();
        for &id in &plan.preempted {
            self.preempt(id);
        }
        for &(id, reason) in &plan.finished {
            self.finish(id, reason, now);
        }
        let mut num_admitted = 0;
        for scheduled in &plan.scheduled {
            let Some(seq) = self.sequences.get_mut(&scheduled.seq_id) else {
                continue;
            };
            if seq.status != SequenceStatus::Waiting {
                continue;
            }
            num_admitted += 1;
            self.pool
                .acquire_cached(&scheduled.cached_blocks, &mut seq.block_table);
            seq.num_computed_tokens = scheduled.num_computed_tokens;
            seq.num_cached_tokens = scheduled.num_computed_tokens;
            seq.status = SequenceStatus::Running;
            seq.timings.first_scheduled.get_or_insert(now);
            if self.config.enable_prefix_cache {
                self.stats.prefix_cache_queries += seq.num_tokens() as u64;
                self.stats.prefix_cache_hits += scheduled.num_computed_tokens as u64;
            }
            let key = seq.key();
            self.waiting.remove(&key);
            self.running.insert(key);
        }
        for scheduled in &plan.scheduled {
            let Some(seq) = self.sequences.get_mut(&scheduled.seq_id) else {
                continue;
            };
            // Cannot fail for a current plan: the planner counted these blocks.
            let allocated = self
                .pool
                .allocate(scheduled.num_new_blocks, &mut seq.block_table);
            debug_assert!(allocated.is_ok(), "{allocated:?} for {}", scheduled.seq_id);
        }
        self.static_batch_cutoff = static_batch_cutoff.filter(|_| num_admitted > 0);
    }

    /// `static`: the arrival order before which requests may join the batch
    /// now forming, if one is. An empty running set opens a batch of all that
    /// is waiting; it stays open while steps admit.
    fn static_batch_cutoff(&self) -> Option<u64> {
        if self.config.policy != Policy::Static {
            None
        } else if self.running.is_empty() {
            Some(self.next_arrival_order)
        } else {
            self.static_batch_cutoff
        }
    }

    /// Records a step that ran: every scheduled sequence advances by its new
    /// tokens (full blocks become shareable), every `wants_logits` entry
    /// appends its [`StepOutput`] token, and sequences that hit a stop token,
    /// `max_tokens` or `max_model_len` finish. `outputs` must match the plan's
    /// `wants_logits` entries in order (checked before anything changes).
    /// Sequences finished since `apply` (an abort) are skipped.
    pub fn update(
        &mut self,
        plan: &StepPlan,
        outputs: &[StepOutput],
        now: Instant,
    ) -> Result<(), StepError> {
        let expected = plan
            .scheduled
            .iter()
            .filter(|s| s.wants_logits)
            .map(|s| s.seq_id);
        if plan.num_logits() != outputs.len() || !expected.eq(outputs.iter().map(|o| o.seq_id)) {
            return Err(StepError::OutputMismatch(format!(
                "{} outputs for {} sequences wanting logits, or out of order",
                outputs.len(),
                plan.num_logits()
            )));
        }
        let hash_block_size = self
            .config
            .enable_prefix_cache
            .then_some(self.config.block_size);
        let mut outputs = outputs.iter();
        for scheduled in &plan.scheduled {
            let output = if scheduled.wants_logits {
                outputs.next()
            } else {
                None
            };
            let Some(seq) = self.sequences.get_mut(&scheduled.seq_id) else {
                continue;
            };
            if seq.status != SequenceStatus::Running
                || seq.num_computed_tokens != scheduled.num_computed_tokens
            {
                continue;
            }
            seq.num_computed_tokens += scheduled.num_new_tokens;
            self.pool.commit_full_blocks(
                &mut seq.block_table,
                &seq.block_hashes,
                &seq.tokens,
                seq.num_computed_tokens,
            );
            let Some(output) = output else { continue };
            seq.push_token(output.token, hash_block_size);
            seq.timings.token_times.push(now);
            let reason = if output.is_stop {
                Some(FinishReason::Stop)
            } else if seq.num_output_tokens() >= seq.max_tokens
                || seq.num_tokens() >= self.config.max_model_len
            {
                Some(FinishReason::Length)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.finish(scheduled.seq_id, reason, now);
            }
        }
        Ok(())
    }

    fn preempt(&mut self, id: SeqId) {
        let Some(seq) = self.sequences.get_mut(&id) else {
            return;
        };
        let key = seq.key();
        if !self.running.remove(&key) {
            return;
        }
        self.pool.free(&mut seq.block_table);
        seq.num_computed_tokens = 0;
        seq.num_cached_tokens = 0;
        seq.num_preemptions += 1;
        seq.status = SequenceStatus::Waiting;
        self.waiting.insert(key);
        self.stats.num_preemptions += 1;
    }

    fn view(&self) -> SchedulerView<'_> {
        SchedulerView {
            config: &self.config,
            pool: &self.pool,
            sequences: &self.sequences,
            waiting: &self.waiting,
            running: &self.running,
            static_batch_cutoff: self.static_batch_cutoff(),
        }
    }
}
