//! # fulcrum-model — from tokens to logits
//!
//! - [`registry`]: model aliases (`smollm2-135m`, `gemma3-270m`), fetching and
//!   caching their GGUF files.
//! - [`tokenizer`]: byte-level BPE and SentencePiece BPE built from GGUF metadata,
//!   with streaming-safe incremental decoding.
//! - [`chat`]: chat templates rendered with minijinja.
//! - [`config`]: hyper-parameters from metadata; [`weights`]: where each weight lives.
//! - [`forward`]: the forward pass over a ragged batch ([`SeqInput`]) and a paged
//!   [`KvCache`]; [`Model`] ties it all together.

pub mod chat;
pub mod config;
pub mod forward;
pub mod kv_cache;
pub mod model;
pub mod registry;
pub mod tokenizer;
pub mod weights;

pub use config::{Arch, ModelConfig};
pub use forward::{ForwardError, ForwardScratch, SeqInput, TensorDump};
pub use fulcrum_kernels::attention::KvDtype;
pub use fulcrum_kernels::gemm::Numerics;
pub use kv_cache::KvCache;
pub use model::{LoadError, Model};
