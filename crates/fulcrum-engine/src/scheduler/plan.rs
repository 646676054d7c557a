//! Planning: a pure function from the scheduler's state to a [`StepPlan`].
//!
//! Principal types:
//! - [`StepPlan`]: the data contract with the step loop and the model runner:
//!   which sequences compute which tokens this step (in batch order), which are
//!   preempted, which the scheduler ends. Derives `PartialEq` so tests state
//!   whole expected plans.
//! - [`ScheduledSeq`]: one sequence's share of the step.
//! - `Planner` (private): a simulation of the step's resources (token budget,
//!   allocatable blocks, batch slots) that the policies spend through a few
//!   shared passes. It reads the pool and the sequences and mutates nothing.
//!
//! The passes, and how each policy composes them:
//! - *decodes*: every running sequence whose next step is a decode, in
//!   scheduling order (priority, then arrival), one token each. A decode that
//!   needs a block when none is allocatable preempts the newest running
//!   sequence not yet scheduled this step, possibly itself; a sequence running
//!   alone that cannot grow is finished with [`FinishReason::Capacity`].
//! - *running prefills*: running sequences with more than one token left
//!   (a partially prefilled prompt), as a chunk or whole. Never preempts.
//! - *admissions*: waiting sequences in scheduling order, strictly
//!   first-come-first-served (stop at the first that does not fit, so a large
//!   request is never overtaken forever). Each reuses its cached leading full
//!   blocks (always leaving at least one token to compute) and must leave the
//!   watermark free when others run. Skipped in a step that preempted (memory
//!   is short) or left a running prefill without tokens (it goes first).
//!
//! Ordering: both queues are ordered by (priority, arrival). A preempted
//! sequence keeps its arrival, so it re-enters the waiting queue ahead of
//! every request that arrived after it: the front within its priority, behind
//! only older preempted sequences (strict FCFS admitted everything older than
//! it before it). Priority orders admission and victim choice in every
//! policy; a waiting high-priority request does not preempt running ones.
//!
//! | policy | step |
//! |---|---|
//! | `chunked` | decodes, then running prefills and admissions as chunks into the rest of the token budget |
//! | `decode-first` | decodes, then admissions of whole prompts into the rest of the budget, keeping one extra block free per decode just scheduled (no admitted prompt takes the block a running decode will need next) |
//! | `prefill-first` | admissions of whole prompts; if none was admissible, decodes |
//! | `static` | while a batch forms, admissions of whole prompts; otherwise decodes. A batch forms when the running set is empty and takes only requests that were waiting then; it keeps forming while each step admits (the token budget may spread its prefills over several steps) and closes at the first step that admits nobody. Later arrivals wait for the next batch |

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::block_pool::{BlockId, BlockPool};
use crate::config::{Policy, SchedulerConfig};
use crate::sequence::{FinishReason, SeqId, SeqKey, Sequence};

/// One sequence's share of a step. The model runner reads the tokens
/// `seq.tokens()[num_computed_tokens..][..num_new_tokens]` at positions
/// starting at `num_computed_tokens`, through the sequence's block table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub seq_id: SeqId,
    /// One token after a fully computed sequence (else a prompt chunk,
    /// possibly of a preempted sequence recomputing).
    pub is_decode: bool,
    /// Position of the first new token (after any prefix-cache hit).
    pub num_computed_tokens: usize,
    pub num_new_tokens: usize,
    /// The step reaches the end of the sequence's known tokens, so its last
    /// position's logits are sampled.
    pub wants_logits: bool,
    /// Fresh blocks appended to the table before the step runs.
    pub num_new_blocks: usize,
    /// Prefix-cache blocks that start the table (admissions only).
    pub cached_blocks: Vec<BlockId>,
}

/// What one step does. Batch order is `scheduled` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    pub scheduled: Vec<ScheduledSeq>,
    /// Preempted by recompute: blocks freed, back to the waiting queue.
    pub preempted: Vec<SeqId>,
    /// Ended by the scheduler itself.
    pub finished: Vec<(SeqId, FinishReason)>,
}

impl StepPlan {
    /// Nothing to compute (the model need not run).
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }
    pub fn num_seqs(&self) -> usize {
        self.scheduled.len()
    }
    pub fn num_batched_tokens(&self) -> usize {
        self.scheduled.iter().map(|s| s.num_new_tokens).sum()
    }
    pub fn num_decode_tokens(&self) -> usize {
        self.scheduled.iter().filter(|s| s.is_decode).count()
    }
    pub fn num_prefill_tokens(&self) -> usize {
        self.num_batched_tokens() - self.num_decode_tokens()
    }
    /// Logits rows the model returns (one per `wants_logits`).
    pub fn num_logits(&self) -> usize {
        self.scheduled.iter().filter(|s| s.wants_logits).count()
    }
}

/// The plain data a plan is made from.
pub(crate) struct SchedulerView<'a> {
    pub config: &'a SchedulerConfig,
    pub pool: &'a BlockPool,
    pub sequences: &'a HashMap<SeqId, Sequence>,
    pub waiting: &'a BTreeSet<SeqKey>,
    pub running: &'a BTreeSet<SeqKey>,
    /// `static` only: while a batch forms, the arrival order before which
    /// requests may join it.
    pub static_batch_cutoff: Option<u64>,
}

/// Whether a prompt may be split across steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunking {
    Chunks,
    Whole,
}

pub(crate) fn plan(view: &SchedulerView<'_>) -> StepPlan {
    let mut planner = Planner::new(view);
    match view.config.policy {
        Policy::Chunked => {
            planner.schedule_decodes();
            planner.schedule_running_prefills(Chunking::Chunks);
            planner.admit(Chunking::Chunks, 0, None);
        }
        Policy::DecodeFirst => {
            planner.schedule_decodes();
            planner.schedule_running_prefills(Chunking::Whole);
            let num_decodes = planner.plan.num_decode_tokens();
            planner.admit(Chunking::Whole, num_decodes, None);
        }
        Policy::PrefillFirst => {
            planner.admit(Chunking::Whole, 0, None);
            if planner.plan.is_empty() {
                planner.schedule_decodes();
                planner.schedule_running_prefills(Chunking::Whole);
            }
        }
        Policy::Static => {
            if let Some(cutoff) = view.static_batch_cutoff {
                planner.admit(Chunking::Whole, 0, Some(cutoff));
            }
            if planner.plan.is_empty() {
                planner.schedule_decodes();
                planner.schedule_running_prefills(Chunking::Whole);
            }
        }
    }
    planner.plan
}

/// The step's resources as the plan spends them.
struct Planner<'v, 'a> {
    view: &'v SchedulerView<'a>,
    plan: StepPlan,
    /// Running set in scheduling order.
    running: Vec<SeqId>,
    /// Blocks still allocatable after what the plan has taken or freed.
    num_free_blocks: usize,
    num_budget_tokens: usize,
    /// Running set size after the plan's preemptions and admissions.
    num_running: usize,
    /// Scheduled, preempted or finished in this plan.
    handled: HashSet<SeqId>,
    /// Unowned cached blocks an admission of this plan already claimed.
    claimed: HashSet<BlockId>,
    is_prefill_blocked: bool,
}

impl<'v, 'a> Planner<'v, 'a> {
    fn new(view: &'v SchedulerView<'a>) -> Self {
        Planner {
            view,
            plan: StepPlan::default(),
            running: view.running.iter().map(|k| k.id).collect(),
            num_free_blocks: view.pool.num_free_blocks(),
            num_budget_tokens: view.config.max_batched_tokens,
            num_running: view.running.len(),
            handled: HashSet::new(),
            claimed: HashSet::new(),
            is_prefill_blocked: false,
        }
    }

    fn seq(&self, id: SeqId) -> Option<&'a Sequence> {
        self.view.sequences.get(&id)
    }

    fn block_size(&self) -> usize {
        self.view.config.block_size
    }

    fn schedule_decodes(&mut self) {
        for i in 0..self.running.len() {
            let id = self.running[i];
            let Some(seq) = self.seq(id) else { continue };
            if self.handled.contains(&id) || !seq.is_decoding() {
                continue;
            }
            self.schedule_decode(seq);
        }
    }

    fn schedule_decode(&mut self, seq: &'a Sequence) {
        let need = self
            .view
            .pool
            .num_blocks_for(seq.num_computed_tokens + 1)
            .saturating_sub(seq.block_table.len());
        while need > self.num_free_blocks {
            let Some(victim) = self.newest_unhandled_running() else {
                return;
            };
            if victim != seq.id {
                self.preempt(victim);
            } else if self.num_running > 1 {
                self.preempt(victim);
                return;
            } else {
                self.plan.finished.push((seq.id, FinishReason::Capacity));
                self.handled.insert(seq.id);
                self.num_running -= 1;
                return;
            }
        }
        // `max_batched_tokens >= max_num_seqs` (validated), so this holds.
        if self.num_budget_tokens == 0 {
            return;
        }
        self.num_free_blocks -= need;
        self.num_budget_tokens -= 1;
        self.handled.insert(seq.id);
        self.plan.scheduled.push(ScheduledSeq {
            seq_id: seq.id,
            is_decode: true,
            num_computed_tokens: seq.num_computed_tokens,
            num_new_tokens: 1,
            wants_logits: true,
            num_new_blocks: need,
            cached_blocks: Vec::new(),
        });
    }

    fn newest_unhandled_running(&self) -> Option<SeqId> {
        self.running
            .iter()
            .rev()
            .copied()
            .find(|id| !self.handled.contains(id))
    }

    /// Counts the victim's blocks that its release makes allocatable (those
    /// it alone owns; a block shared with another victim is not counted, an
    /// under-estimate that keeps the plan safe).
    fn preempt(&mut self, id: SeqId) {
        if let Some(seq) = self.seq(id) {
            let pool = self.view.pool;
            self.num_free_blocks += seq
                .block_table
                .as_slice()
                .iter()
                .filter(|&&b| pool.ref_count(b) == 1)
                .count();
        }
        self.plan.preempted.push(id);
        self.handled.insert(id);
        self.num_running -= 1;
    }

    fn schedule_running_prefills(&mut self, chunking: Chunking) {
        for i in 0..self.running.len() {
            let id = self.running[i];
            let Some(seq) = self.seq(id) else { continue };
            if self.handled.contains(&id) || seq.is_decoding() || seq.num_uncomputed_tokens() == 0 {
                continue;
            }
            let start = seq.num_computed_tokens;
            let num_tokens = self.fit_tokens(
                start,
                seq.block_table.len(),
                seq.num_tokens(),
                chunking,
                self.num_free_blocks,
            );
            if num_tokens == 0 {
                self.is_prefill_blocked = true;
                continue;
            }
            let num_new_blocks = self
                .view
                .pool
                .num_blocks_for(start + num_tokens)
                .saturating_sub(seq.block_table.len());
            self.push_prefill(seq, start, num_tokens, num_new_blocks, Vec::new());
        }
    }

    /// Admits waiting sequences in order while they fit. `num_reserved_blocks`
    /// stay free on top of the watermark; only arrivals before
    /// `arrival_cutoff` are eligible, if given.
    fn admit(
        &mut self,
        chunking: Chunking,
        num_reserved_blocks: usize,
        arrival_cutoff: Option<u64>,
    ) {
        if !self.plan.preempted.is_empty() || self.is_prefill_blocked {
            return;
        }
        let bs = self.block_size();
        for key in self.view.waiting.iter() {
            let Some(seq) = self.seq(key.id) else {
                continue;
            };
            if arrival_cutoff.is_some_and(|cutoff| key.arrival_order >= cutoff) {
                continue;
            }
            if self.num_running >= self.view.config.max_num_seqs || self.num_budget_tokens == 0 {
                break;
            }
            // A fully cached prompt still computes its last block: the step
            // needs logits, and a shared block is never written.
            let max_hit_blocks = seq.num_tokens().saturating_sub(1) / bs;
            let hit = self
                .view
                .pool
                .lookup_prefix(&seq.block_hashes, &seq.tokens, max_hit_blocks);
            let num_claims = hit
                .iter()
                .filter(|&&b| self.view.pool.ref_count(b) == 0 && !self.claimed.contains(&b))
                .count();
            let num_watermark = if self.num_running > 0 {
                self.view.config.num_watermark_blocks()
            } else {
                0
            };
            let Some(available) = self
                .num_free_blocks
                .checked_sub(num_claims + num_watermark + num_reserved_blocks)
            else {
                break;
            };
            let start = hit.len() * bs;
            let num_tokens =
                self.fit_tokens(start, hit.len(), seq.num_tokens(), chunking, available);
            if num_tokens == 0 {
                break;
            }
            let num_new_blocks = self.view.pool.num_blocks_for(start + num_tokens) - hit.len();
            self.num_free_blocks -= num_claims;
            self.claimed.extend(
                hit.iter()
                    .copied()
                    .filter(|&b| self.view.pool.ref_count(b) == 0),
            );
            self.num_running += 1;
            self.push_prefill(seq, start, num_tokens, num_new_blocks, hit);
        }
    }

    /// How many tokens from `start` (of `num_tokens`) this step can compute
    /// for a sequence holding `num_table_blocks`, given `available` blocks:
    /// all or nothing for `Whole`, as many as budget and blocks allow for
    /// `Chunks`.
    fn fit_tokens(
        &self,
        start: usize,
        num_table_blocks: usize,
        num_tokens: usize,
        chunking: Chunking,
        available: usize,
    ) -> usize {
        let remaining = num_tokens.saturating_sub(start);
        let capacity = (num_table_blocks + available)
            .saturating_mul(self.block_size())
            .saturating_sub(start);
        match chunking {
            Chunking::Whole if remaining <= self.num_budget_tokens && remaining <= capacity => {
                remaining
            }
            Chunking::Whole => 0,
            Chunking::Chunks => remaining.min(self.num_budget_tokens).min(capacity),
        }
    }

    fn push_prefill(
        &mut self,
        seq: &Sequence,
        start: usize,
        num_new_tokens: usize,
        num_new_blocks: usize,
        cached_blocks: Vec<BlockId>,
    ) {
        self.num_free_blocks -= num_new_blocks;
        self.num_budget_tokens -= num_new_tokens;
        self.handled.insert(seq.id);
        self.plan.scheduled.push(ScheduledSeq {
            seq_id: seq.id,
            is_decode: false,
            num_computed_tokens: start,
            num_new_tokens,
            wants_logits: start + num_new_tokens == seq.num_tokens(),
            num_new_blocks,
            cached_blocks,
        });
    }
}
