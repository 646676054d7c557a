//! A loaded model: the file, its config, weights, tokenizer and chat template.

use std::path::Path;
use std::sync::Arc;

use fulcrum_gguf::{GgufError, GgufFile};
use fulcrum_kernels::attention::KvDtype;
use fulcrum_kernels::gemm::Numerics;
use fulcrum_kernels::WorkerPool;

use crate::chat::{ChatError, ChatTemplate};
use crate::config::{ConfigError, ModelConfig};
use crate::forward::{forward, ForwardError, ForwardScratch, SeqInput};
use crate::kv_cache::KvCache;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::weights::{Weights, WeightsError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("chat template: {0}")]
    Chat(#[from] ChatError),
    #[error("the tokenizer has {tokenizer} tokens but the model's vocabulary is {model}")]
    VocabMismatch { tokenizer: usize, model: usize },
}

/// Weights and everything needed to turn text into logits. Holds no KV cache
/// and no execution state: the cache and the worker pool are passed in.
pub struct Model {
    pub file: Arc<GgufFile>,
    pub config: ModelConfig,
    pub weights: Weights,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: ChatTemplate,
    /// A display name (`general.name`, or the file name).
    pub name: String,
    /// The summation order the matrix products were packed for.
    pub numerics: Numerics,
}

impl Model {
    /// Loads a GGUF file with the default (fast) numerics.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, LoadError> {
        Model::load_with(path, Numerics::default())
    }

    /// Loads a GGUF file, packing its matrices for `numerics`.
    pub fn load_with(path: impl AsRef<Path>, numerics: Numerics) -> Result<Model, LoadError> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        let name = file
            .metadata
            .opt("general.name", |m, k| m.get_str(k).map(str::to_string))?
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        Self::from_file(file, name, numerics)
    }

    pub fn from_file(file: GgufFile, name: String, numerics: Numerics) -> Result<Model, LoadError> {
        let config = ModelConfig::from_metadata(&file.metadata)?;
        let weights = Weights::load(&file, &config, numerics)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(LoadError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: config.vocab_size,
            });
        }
        let chat_template = ChatTemplate::from_gguf(&file, &tokenizer)?;
        Ok(Model {
            file: Arc::new(file),
            config,
            weights,
            tokenizer: Arc::new(tokenizer),
            chat_template,
            name,
            numerics,
        })
    }

    /// A KV cache for this model.
    pub fn new_kv_cache(&self, num_blocks: usize, block_size: usize) -> KvCache {
        KvCache::new(&self.config, num_blocks, block_size)
    }

    /// A KV cache storing keys and values as `dtype`.
    pub fn new_kv_cache_with(
        &self,
        num_blocks: usize,
        block_size: usize,
        dtype: KvDtype,
    ) -> KvCache {
        KvCache::with_dtype(&self.config, num_blocks, block_size, dtype)
    }

    /// Runs one step over a ragged batch; see [`crate::forward`].
    pub fn forward<'s>(
        &self,
        pool: &WorkerPool,
        seqs: &[SeqInput],
        kv: &mut KvCache,
        scratch: &'s mut ForwardScratch,
    ) -> Result<&'s [f32], ForwardError> {
        // SAFETY: the cache is exclusively borrowed: no other thread uses it.
        unsafe { forward(self, pool, seqs, kv, scratch) }
    }

    /// [`Model::forward`] over a cache other forward passes may be using at
    /// the same time (one step split over threads by sequence), writing the
    /// logits (`[L, vocab]` for the `L` sequences that want them) into `out`.
    ///
    /// # Safety
    /// No concurrent pass runs over any of these sequences, and no two
    /// sequences running concurrently write a common block: the engine's
    /// block tables guarantee it (a block is written only by the sequence
    /// that owns it; shared prefix blocks are full and only read).
    pub unsafe fn forward_shared_into(
        &self,
        pool: &WorkerPool,
        seqs: &[SeqInput],
        kv: &KvCache,
        scratch: &mut ForwardScratch,
        out: &mut [f32],
    ) -> Result<(), ForwardError> {
        // SAFETY: the caller's promise is `forward_into`'s contract.
        unsafe { crate::forward::forward_into(self, pool, seqs, kv, scratch, out) }
    }
}
