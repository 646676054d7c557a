//! The seam between the step loop and the forward pass.
//!
//! The loop hands a [`StepRunner`] one ragged batch per step and gets logits
//! back; it never sees the KV bytes or the worker threads. [`ModelRunner`] is
//! the real one (the model's forward pass over its own KV cache and worker
//! pool). The trait exists so that another execution strategy (tensor
//! parallelism) can slot in, and so that tests can wrap the real runner to
//! inject faults. The loop's side of the seam: [`batch_inputs`] turns a
//! step's plan into the batch, [`run_batch`] runs it and checks the shape of
//! the logits.

use std::sync::Arc;

use fulcrum_kernels::pool::SendPtr;
use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardError, ForwardScratch, KvCache, Model, SeqInput};

use super::options::EngineConfig;
use super::request::RequestFailure;
use crate::scheduler::{Scheduler, StepPlan};

/// Runs one step's batch.
pub trait StepRunner: Send {
    /// `[num wanting logits, vocab]` logits, in batch order.
    fn forward(&mut self, seqs: &[SeqInput<'_>]) -> Result<&[f32], ForwardError>;
}

/// The runner's view of the step: each scheduled sequence's new tokens,
/// where they start, and its block table.
pub(super) fn batch_inputs<'a>(
    scheduler: &'a Scheduler,
    plan: &StepPlan,
) -> Result<Vec<SeqInput<'a>>, RequestFailure> {
    plan.scheduled
        .iter()
        .map(|s| {
            let seq = scheduler
                .sequence(s.seq_id)
                .ok_or_else(|| RequestFailure::Internal(format!("{} is not live", s.seq_id)))?;
            let end = s.num_computed_tokens + s.num_new_tokens;
            let tokens = seq
                .tokens()
                .get(s.num_computed_tokens..end)
                .ok_or_else(|| RequestFailure::Internal("plan past the tokens".into()))?;
            Ok(SeqInput {
                tokens,
                num_computed_tokens: s.num_computed_tokens,
                block_table: seq.block_table().as_slice(),
                wants_logits: s.wants_logits,
            })
        })
        .collect()
}

/// Runs the batch: `[num_logits, vocab]` logits, checked for shape.
pub(super) fn run_batch<'r>(
    runner: &'r mut dyn StepRunner,
    inputs: &[SeqInput<'_>],
    num_logits: usize,
    vocab: usize,
) -> Result<&'r [f32], RequestFailure> {
    let logits = runner
        .forward(inputs)
        .map_err(|e| RequestFailure::Forward(e.to_string()))?;
    if vocab == 0 || logits.len() != num_logits * vocab {
        return Err(RequestFailure::Internal(format!(
            "{} logits for {num_logits} rows of {vocab}",
            logits.len(),
        )));
    }
    Ok(logits)
}

/// The model's forward pass on this machine's cores.
///
/// A step of many sequences runs as one forward pass per thread, each over
/// a contiguous share of the sequences with a one-thread pool, all at once
/// over the shared KV cache ([`split`]): a decode step of 64 sequences then
/// has no hand-off between its few hundred operations, no thread waits on
/// another's share of a small product, and one thread's memory-bound
/// attention overlaps the other's arithmetic. Measured with two processes
/// of 32 sequences against one of 64 on two threads: 1188 vs 998 decode
/// tok/s. Steps that do not split evenly (a long prompt chunk, a few
/// sequences) run as one pass with every thread on each operation. Outputs
/// are the same either way: every kernel's result for a row is independent
/// of the batch and the thread count.
pub struct ModelRunner {
    model: Arc<Model>,
    pool: WorkerPool,
    kv: KvCache,
    scratch: ForwardScratch,
    /// One per thread, for split steps.
    groups: Vec<Group>,
    /// A split step's logits, in batch order.
    logits: Vec<f32>,
    /// Per KV block, which group writes it (0: none), for the disjointness check.
    marks: Vec<u8>,
    num_split_steps: u64,
}

struct Group {
    /// The calling thread alone (no workers).
    pool: WorkerPool,
    scratch: ForwardScratch,
}

impl ModelRunner {
    /// Allocates the KV cache `config` asks for and starts the worker pool.
    pub fn new(model: Arc<Model>, config: &EngineConfig) -> ModelRunner {
        let kv = model.new_kv_cache_with(
            config.scheduler.num_blocks,
            config.scheduler.block_size,
            config.kv_cache_dtype,
        );
        let pool = WorkerPool::new(config.num_threads);
        let groups = (0..pool.num_threads())
            .map(|_| Group {
                pool: WorkerPool::new(1),
                scratch: ForwardScratch::default(),
            })
            .collect();
        ModelRunner {
            marks: vec![0; kv.num_blocks()],
            model,
            pool,
            kv,
            scratch: ForwardScratch::default(),
            groups,
            logits: Vec::new(),
            num_split_steps: 0,
        }
    }

    /// Steps run as one forward pass per thread so far.
    pub fn num_split_steps(&self) -> u64 {
        self.num_split_steps
    }

    /// Whether no group writes a block another group reads or writes (the
    /// engine's block tables guarantee it; checked, so that a caller passing
    /// overlapping tables gets a plain step instead of a data race).
    fn disjoint(&mut self, seqs: &[SeqInput], cuts: &[usize]) -> bool {
        let bs = self.kv.block_size();
        let marks = &mut self.marks;
        let last_block =
            |s: &SeqInput| (s.num_computed_tokens + s.tokens.len()).saturating_sub(1) / bs;
        let shares = || {
            cuts.windows(2)
                .enumerate()
                .flat_map(|(g, w)| seqs[w[0]..w[1]].iter().map(move |s| (g as u8 + 1, s)))
        };
        // Mark the blocks each share writes; a block written by two shares,
        // or a table too short or naming a block outside the cache, fails
        // (the plain path then reports the bad table).
        let mut ok = shares().all(|(g, s)| {
            s.block_table
                .get(s.num_computed_tokens / bs..=last_block(s))
                .is_some_and(|written| {
                    written.iter().all(|&b| match marks.get_mut(b as usize) {
                        Some(m) if *m == 0 || *m == g => {
                            *m = g;
                            true
                        }
                        _ => false,
                    })
                })
        });
        // No share reads a block another one writes.
        ok = ok
            && shares().all(|(g, s)| {
                s.block_table[..=last_block(s)]
                    .iter()
                    .all(|&b| marks.get(b as usize).is_some_and(|&m| m == 0 || m == g))
            });
        for s in seqs {
            let end = (last_block(s) + 1).min(s.block_table.len());
            for &b in s
                .block_table
                .get(s.num_computed_tokens / bs..end)
                .unwrap_or(&[])
            {
                if let Some(m) = marks.get_mut(b as usize) {
                    *m = 0;
                }
            }
        }
        ok
    }

    fn forward_split(&mut self, seqs: &[SeqInput], cuts: &[usize]) -> Result<&[f32], ForwardError> {
        let vocab = self.model.config.vocab_size;
        let rows: Vec<usize> = cuts
            .windows(2)
            .map(|w| seqs[w[0]..w[1]].iter().filter(|s| s.wants_logits).count())
            .collect();
        let total: usize = rows.iter().sum();
        self.logits.resize(total * vocab, 0.0);
        let offsets: Vec<usize> = rows
            .iter()
            .scan(0, |acc, &r| {
                let at = *acc;
                *acc += r;
                Some(at)
            })
            .collect();
        let out = SendPtr(self.logits.as_mut_ptr());
        let groups = SendPtr(self.groups.as_mut_ptr());
        let (model, kv) = (&self.model, &self.kv);
        let error = std::sync::OnceLock::new();
        self.pool.run(rows.len(), |g| {
            // SAFETY: task g alone uses group g, and rows offsets[g].. of the
            // logits (disjoint ranges of the buffer sized above).
            let (group, out) = unsafe {
                (
                    &mut *groups.get().add(g),
                    std::slice::from_raw_parts_mut(
                        out.get().add(offsets[g] * vocab),
                        rows[g] * vocab,
                    ),
                )
            };
            // SAFETY: the groups' sequences are distinct and `disjoint`
            // checked that no group writes a block another one uses.
            let result = unsafe {
                model.forward_shared_into(
                    &group.pool,
                    &seqs[cuts[g]..cuts[g + 1]],
                    kv,
                    &mut group.scratch,
                    out,
                )
            };
            if let Err(e) = result {
                let _ = error.set(e);
            }
        });
        match error.into_inner() {
            Some(e) => Err(e),
            None => Ok(&self.logits),
        }
    }
}

/// Sequences' share of a step's cost: new tokens, plus attention over the
/// keys they see counted as this many keys per token's matrix products
/// (measured on SmolLM2: ~1 ms of products per token per thread, ~0.9 µs
/// per key of attention).
const KEYS_PER_TOKEN_COST: f64 = 1100.0;

/// Least tokens a thread's share may have: below it a pass streams the
/// weights for few tokens, and two passes read them twice.
const MIN_TOKENS_PER_SHARE: usize = 16;

/// Largest share allowed, relative to an even split.
const MAX_IMBALANCE: f64 = 1.15;

/// Cut points `0 = c₀ < c₁ < … < c_n = seqs.len()` that give `n` threads
/// contiguous shares of about equal cost, or `None` when the step does not
/// split evenly enough (or is too small) to be worth it.
pub fn split(seqs: &[SeqInput<'_>], n: usize) -> Option<Vec<usize>> {
    // (Shares are marked with a byte, hence the 255.)
    if !(2..=255).contains(&n) || seqs.len() < n {
        return None;
    }
    let cost = |s: &SeqInput| {
        let t = s.tokens.len() as f64;
        t * (1.0 + (s.num_computed_tokens as f64 + t / 2.0) / KEYS_PER_TOKEN_COST)
    };
    let costs: Vec<f64> = seqs.iter().map(cost).collect();
    let total: f64 = costs.iter().sum();
    let mut cuts = vec![0];
    let mut acc = 0.0;
    for (i, &c) in costs.iter().enumerate() {
        let k = cuts.len();
        let target = total * k as f64 / n as f64;
        if k < n && acc + c >= target {
            // Cut before or after sequence i, whichever lands nearer the target.
            let cut = if target - acc <= acc + c - target {
                i
            } else {
                i + 1
            };
            if cut > cuts[k - 1] && cut < seqs.len() {
                cuts.push(cut);
            }
        }
        acc += c;
    }
    cuts.push(seqs.len());
    if cuts.len() != n + 1 {
        return None;
    }
    let even = total / n as f64;
    let fits = cuts.windows(2).all(|w| {
        let tokens: usize = seqs[w[0]..w[1]].iter().map(|s| s.tokens.len()).sum();
        tokens >= MIN_TOKENS_PER_SHARE
            && costs[w[0]..w[1]].iter().sum::<f64>() <= MAX_IMBALANCE * even
    });
    fits.then_some(cuts)
}

impl StepRunner for ModelRunner {
    /// With `RUST_LOG=fulcrum::steps=trace`, one line per step: its
    /// sequences, how many decode, its tokens, whether it split, its time
    /// (how a workload's steps are shaped, e.g. whether prompts arrive in
    /// waves).
    fn forward(&mut self, seqs: &[SeqInput<'_>]) -> Result<&[f32], ForwardError> {
        let started = tracing::enabled!(target: "fulcrum::steps", tracing::Level::TRACE)
            .then(std::time::Instant::now);
        let cuts = split(seqs, self.pool.num_threads()).filter(|c| self.disjoint(seqs, c));
        let was_split = cuts.is_some();
        let result = match cuts {
            Some(cuts) => {
                self.num_split_steps += 1;
                self.forward_split(seqs, &cuts)
            }
            None => self
                .model
                .forward(&self.pool, seqs, &mut self.kv, &mut self.scratch),
        };
        if let Some(t) = started {
            tracing::trace!(
                target: "fulcrum::steps",
                seqs = seqs.len(),
                decodes = seqs.iter().filter(|s| s.tokens.len() == 1).count(),
                tokens = seqs.iter().map(|s| s.tokens.len()).sum::<usize>(),
                split = was_split,
                ms = t.elapsed().as_secs_f64() * 1e3,
            );
        }
        result
    }
}
