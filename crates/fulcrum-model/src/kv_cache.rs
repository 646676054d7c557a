//! The bytes of the paged KV cache.
//!
//! Storage only: which sequence owns which block is the engine's business
//! (its block pool); the model writes and reads K/V at the block ids a batch
//! names. One f16 buffer per layer for K and one for V, each laid out as
//! [`KvShape`] says.

use fulcrum_kernels::attention::KvShape;
use half::f16;

use crate::config::ModelConfig;

pub struct KvCache {
    pub shape: KvShape,
    /// Per layer, `shape.layer_len()` f16 values, stored as their bits: a
    /// `vec![0u16; n]` is a zeroed allocation the OS maps lazily (a vector of
    /// `f16::ZERO` would be written, committing every page at start-up).
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
}

impl KvCache {
    /// A cache of `num_blocks` blocks of `block_size` tokens. The buffers are
    /// zero-initialized allocations, which the OS maps lazily: memory is
    /// committed as blocks are first written, not up front.
    pub fn new(cfg: &ModelConfig, num_blocks: usize, block_size: usize) -> KvCache {
        let shape = KvShape {
            num_blocks,
            block_size,
            n_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        };
        let layer = || vec![0u16; shape.layer_len()];
        KvCache {
            shape,
            k: (0..cfg.num_layers).map(|_| layer()).collect(),
            v: (0..cfg.num_layers).map(|_| layer()).collect(),
        }
    }

    /// How many blocks fit in `bytes` of memory for this model.
    pub fn blocks_for_bytes(cfg: &ModelConfig, block_size: usize, bytes: usize) -> usize {
        bytes / (cfg.kv_bytes_per_token() * block_size).max(1)
    }

    pub fn num_blocks(&self) -> usize {
        self.shape.num_blocks
    }

    pub fn block_size(&self) -> usize {
        self.shape.block_size
    }

    /// Total bytes of the K and V buffers.
    pub fn num_bytes(&self) -> usize {
        2 * self.k.len() * self.shape.layer_len() * 2
    }

    pub(crate) fn layer_mut(&mut self, layer: usize) -> (&mut [f16], &mut [f16]) {
        (
            bytemuck::cast_slice_mut(&mut self.k[layer]),
            bytemuck::cast_slice_mut(&mut self.v[layer]),
        )
    }
}
