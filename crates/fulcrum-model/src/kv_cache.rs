//! The bytes of the paged KV cache.
//!
//! Storage only: which sequence owns which block is the engine's business
//! (its block pool); the model writes and reads K/V at the block ids a batch
//! names. Per layer one buffer for K and one for V, each laid out as
//! [`KvShape`] says, in f16 or (`KvDtype::Q8`) as 8-bit rows with a scale
//! per row.

use fulcrum_kernels::attention::{
    cells_from_vec, q8_scales_len, KvCell, KvDtype, KvShape, KvSlice, Q8Cells,
};
use half::f16;

use crate::config::ModelConfig;

pub struct KvCache {
    pub shape: KvShape,
    storage: Storage,
}

/// Every buffer is a zeroed `vec![0; n]` of a plain integer (or float)
/// type: a zeroed allocation the OS maps lazily, so memory is committed as
/// blocks are first written, not up front (a vector of `f16::ZERO` would be
/// written through at start-up). The elements are [`KvCell`]s so that
/// concurrent forward passes over disjoint sequences may share the cache
/// (see `fulcrum_kernels::attention::KvSlice`).
enum Storage {
    F16 {
        k: Vec<Box<[KvCell<f16>]>>,
        v: Vec<Box<[KvCell<f16>]>>,
    },
    Q8 {
        k: Vec<Box<[KvCell<u8>]>>,
        k_scales: Vec<Box<[KvCell<f32>]>>,
        v: Vec<Box<[KvCell<i8>]>>,
        v_scales: Vec<Box<[KvCell<f32>]>>,
    },
}

/// One layer's cells, for the forward pass.
#[derive(Clone, Copy)]
pub(crate) enum KvLayer<'a> {
    F16 {
        k: KvSlice<'a, f16>,
        v: KvSlice<'a, f16>,
    },
    Q8(Q8Cells<'a>),
}

/// `n` zeroed f16 cells (allocated as `u16`s, which the OS maps lazily).
fn zeroed_f16(n: usize) -> Box<[KvCell<f16>]> {
    let mut bits = std::mem::ManuallyDrop::new(vec![0u16; n]);
    // SAFETY: `f16` is a transparent `u16`, zero bits are 0.0; the vector's
    // allocation moves into the new one unchanged.
    let v = unsafe {
        Vec::from_raw_parts(bits.as_mut_ptr().cast::<f16>(), bits.len(), bits.capacity())
    };
    cells_from_vec(v)
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
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        };
        let layers = cfg.num_layers;
        let n = shape.layer_len();
        let storage = match dtype {
            KvDtype::F16 => Storage::F16 {
                k: (0..layers).map(|_| zeroed_f16(n)).collect(),
                v: (0..layers).map(|_| zeroed_f16(n)).collect(),
            },
            KvDtype::Q8 => {
                let ns = q8_scales_len(&shape);
                Storage::Q8 {
                    k: (0..layers).map(|_| cells_from_vec(vec![0u8; n])).collect(),
                    k_scales: (0..layers)
                        .map(|_| cells_from_vec(vec![0f32; ns]))
                        .collect(),
                    v: (0..layers).map(|_| cells_from_vec(vec![0i8; n])).collect(),
                    v_scales: (0..layers)
                        .map(|_| cells_from_vec(vec![0f32; ns]))
                        .collect(),
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
        2 * layers
            * s.num_kv_heads
            * s.num_blocks
            * s.block_size
            * self.dtype().row_bytes(s.head_dim)
    }

    /// Layer `layer`'s cells. The forward pass writes and reads through
    /// them under the contracts of the kernels' `*_cells` functions.
    pub(crate) fn layer(&self, layer: usize) -> KvLayer<'_> {
        match &self.storage {
            Storage::F16 { k, v } => KvLayer::F16 {
                k: KvSlice::new(&k[layer]),
                v: KvSlice::new(&v[layer]),
            },
            Storage::Q8 {
                k,
                k_scales,
                v,
                v_scales,
            } => KvLayer::Q8(Q8Cells {
                k: KvSlice::new(&k[layer]),
                k_scales: KvSlice::new(&k_scales[layer]),
                v: KvSlice::new(&v[layer]),
                v_scales: KvSlice::new(&v_scales[layer]),
            }),
        }
    }
}
