//! The seam between the step loop and the forward pass.
//!
//! The loop hands a [`StepRunner`] one ragged batch per step and gets logits
//! back; it never sees the KV bytes or the worker threads. [`ModelRunner`] is
//! the real one (the model's forward pass over its own KV cache and worker
//! pool). The trait exists so that another execution strategy (tensor
//! parallelism) can slot in, and so that tests can wrap the real runner to
//! inject faults.

use std::sync::Arc;

use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardError, ForwardScratch, KvCache, Model, SeqInput};

use super::options::EngineConfig;

/// Runs one step's batch.
pub trait StepRunner: Send {
    /// `[num wanting logits, vocab]` logits, in batch order.
    fn forward(&mut self, seqs: &[SeqInput<'_>]) -> Result<&[f32], ForwardError>;
}

/// The model's forward pass on this machine's cores.
pub struct ModelRunner {
    model: Arc<Model>,
    pool: WorkerPool,
    kv: KvCache,
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
        ModelRunner {
            model,
            pool: WorkerPool::new(config.num_threads),
            kv,
            scratch: ForwardScratch::default(),
        }
    }
}

impl StepRunner for ModelRunner {
    fn forward(&mut self, seqs: &[SeqInput<'_>]) -> Result<&[f32], ForwardError> {
        self.model
            .forward(&self.pool, seqs, &mut self.kv, &mut self.scratch)
    }
}
