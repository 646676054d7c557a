//! The bytes of the paged KV cache.
//!
//! Storage only: which sequence owns which block is the engine's business
//! (its block pool); the model writes and reads K/V at the block ids a batch
//! names. Per layer one buffer for K and one for V, each laid out as
//! [`KvShape`] says, in f16 or (`KvDtype::Q8`) as 8-bit rows with a scale
//! per row.

use fulcrum_kernels::attention::{q8_scales_len, KvDtype, KvShape, Q8LayerMut};
use half::f16;

use crate::config::ModelConfig;

pub struct KvCache {
    pub shape: KvShape,
    storage: Storage,
}

/// Every buffer is a zeroed `vec![0; n]` of a plain integer (or float)
/// type: a zeroed allocation the OS maps lazily, so memory is committed as
/// blocks are first written, not up front (a vector of `f16::ZERO` would be
/// written through at start-up). f16 values are kept as their bits.
enum Storage {
    F16 {
        k: Vec<Vec<u16>>,
        v: Vec<Vec<u16>>,
    },
    Q8 {
        k: Vec<Vec<u8>>,
        k_scales: Vec<Vec<f32>>,
        v: Vec<Vec<i8>>,
        v_scales: Vec<Vec<f32>>,
    },
}

/// One layer's buffers, for the forward pass.
pub(crate) enum KvLayerMut<'a> {
    F16 { k: &'a mut [f16], v: &'a mut [f16] },
    Q8(Q8LayerMut<'a>),
}

impl KvCache {
    /// A cache of `num_blocks` blocks of `block_size` tokens, f16.
    pub fn new(cfg: &ModelConfig, num_blocks: usize, block_size: usize) -> KvCache {
        KvCache::with_dtype(cfg, num_blocks, block_size, KvDtype::F16)
    }

    /// A cache of `num_blocks` blocks of `block_size` tokens stored as
    /// `dtype` (whose head-dimension limits the caller checked with
    /// [`KvDtype::check_head_dim`]).
    pub fn with_dtype(
        cfg: &ModelConfig,
        num_blocks: usize,
        block_size: usize,
        dtype: KvDtype,
    ) -> KvCache {
        let shape = KvShape {
            num_blocks,
            block_size,
            n_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        };
        let layers = cfg.num_layers;
        let n = shape.layer_len();
        let storage = match dtype {
            KvDtype::F16 => Storage::F16 {
                k: (0..layers).map(|_| vec![0u16; n]).collect(),
                v: (0..layers).map(|_| vec![0u16; n]).collect(),
            },
            KvDtype::Q8 => {
                let ns = q8_scales_len(&shape);
                Storage::Q8 {
                    k: (0..layers).map(|_| vec![0u8; n]).collect(),
                    k_scales: (0..layers).map(|_| vec![0f32; ns]).collect(),
                    v: (0..layers).map(|_| vec![0i8; n]).collect(),
                    v_scales: (0..layers).map(|_| vec![0f32; ns]).collect(),
                }
            }
        };
        KvCache { shape, storage }
    }

    /// How many blocks fit in `bytes` of memory for this model.
    pub fn blocks_for_bytes(
        cfg: &ModelConfig,
        block_size: usize,
        bytes: usize,
        dtype: KvDtype,
    ) -> usize {
        bytes / (cfg.kv_bytes_per_token(dtype) * block_size).max(1)
    }

    pub fn num_blocks(&self) -> usize {
        self.shape.num_blocks
    }

    pub fn block_size(&self) -> usize {
        self.shape.block_size
    }

    pub fn dtype(&self) -> KvDtype {
        match self.storage {
            Storage::F16 { .. } => KvDtype::F16,
            Storage::Q8 { .. } => KvDtype::Q8,
        }
    }

    /// Total bytes of the K and V buffers (and their scales).
    pub fn num_bytes(&self) -> usize {
        let layers = match &self.storage {
            Storage::F16 { k, .. } => k.len(),
            Storage::Q8 { k, .. } => k.len(),
        };
        let s = &self.shape;
        2 * layers * s.n_kv_heads * s.num_blocks * s.block_size * self.dtype().row_bytes(s.head_dim)
    }

    pub(crate) fn layer_mut(&mut self, layer: usize) -> KvLayerMut<'_> {
        match &mut self.storage {
            Storage::F16 { k, v } => KvLayerMut::F16 {
                k: bytemuck::cast_slice_mut(&mut k[layer]),
                v: bytemuck::cast_slice_mut(&mut v[layer]),
            },
            Storage::Q8 {
                k,
                k_scales,
                v,
                v_scales,
            } => KvLayerMut::Q8(Q8LayerMut {
                k: &mut k[layer],
                k_scales: &mut k_scales[layer],
                v: &mut v[layer],
                v_scales: &mut v_scales[layer],
            }),
        }
    }
}
