//! # fulcrum-engine — the serving engine
//!
//! Everything between "a request was accepted" and "the model runs a ragged
//! batch": bookkeeping of the paged KV cache, the scheduling policies that
//! trade time-to-first-token against time-per-output-token and throughput,
//! turning logits into tokens and text into stops — all pure, synchronous
//! and deterministic, unit-tested with fake sequences and no model — and the
//! step loop ([`engine`]) that drives them on its own thread.
//!
//! The engine, as a server uses it:
//! - [`Engine::start`] (model + [`EngineConfig`] from [`EngineOptions`]) →
//!   [`EngineHandle`]: `add_request(`[`RequestInput`]`)` → [`RequestHandle`]
//!   streaming [`RequestEvent`]s (`recv().await` or `blocking_recv()`);
//!   `abort`, `metrics` ([`EngineMetrics`]), `shutdown`.
//!
//! The model-free core:
//! - [`Scheduler`]: waiting queue, running set, the block pool; `plan` →
//!   [`StepPlan`] → `apply` → (model) → `update`. Policies: [`Policy`].
//! - [`SchedulerConfig`]: the knobs, validated once.
//! - [`BlockPool`] / [`BlockTable`]: the index arena of KV blocks with
//!   reference counts and the LRU prefix cache ([`prefix_cache`]).
//! - [`Sequence`]: tokens, `num_computed_tokens`, block table, timings.
//! - [`SamplingParams`] / [`sample`]: logits → token, with penalties,
//!   top-k/top-p/min-p, seeded per-sequence RNG and logprobs.
//! - [`StopMatcher`]: stop strings over the detokenized stream, never leaked.
//!
//! One step, as the step loop drives it:
//! ```text
//! scheduler.add(SequenceRequest)             // between steps; finish() aborts
//! let plan = scheduler.schedule(now)          // plan() + apply(): blocks allocated
//! for s in &plan.scheduled                    // ragged batch for the model:
//!     seq = scheduler.sequence(s.seq_id)      //   tokens[s.num_computed_tokens..][..s.num_new_tokens],
//!                                             //   seq.block_table().as_slice(), s.wants_logits
//! logits = model.forward(batch)               // one row per wants_logits, plan order
//! sample(row, &params, prompt, output, &mut rng) -> SampledToken
//! scheduler.update(&plan, &[StepOutput], now) // advance, commit cached blocks, finish on length/stop
//! scheduler.take_finished()                   // blocks already released
//! ```

pub mod block_pool;
pub mod config;
pub mod engine;
pub mod prefix_cache;
pub mod sampler;
pub mod scheduler;
pub mod sequence;
pub mod stop;

pub use block_pool::{BlockId, BlockPool, BlockTable, OutOfBlocks};
pub use config::{ConfigError, Policy, SchedulerConfig};
pub use engine::{
    ChoiceFinished, ChoiceOutput, Engine, EngineConfig, EngineConfigError, EngineError,
    EngineHandle, EngineMetrics, EngineOptions, KvCacheSize, ModelRunner, Prompt, RequestEvent,
    RequestFailure, RequestHandle, RequestId, RequestInput, RequestOutput, StartError, StepRunner,
    StopReason, TokenEvent, TokenLogprobs, Usage,
};
pub use fulcrum_model::KvDtype;
pub use sampler::{sample, sampler_rng, SampledToken, SamplerRng, SamplingError, SamplingParams};
pub use scheduler::{
    AddError, ScheduledSeq, Scheduler, SchedulerStats, StepError, StepOutput, StepPlan,
};
pub use sequence::{
    FinishReason, SeqId, Sequence, SequenceRequest, SequenceStatus, SequenceTimings,
};
pub use stop::{StopMatch, StopMatcher};
