//! # fulcrum-model — from tokens to logits
//!
//! - [`registry`]: model aliases (`smollm2-135m`, `gemma3-270m`), fetching and
//!   caching their GGUF files.
//! - [`tokenizer`]: byte-level BPE and SentencePiece BPE built from GGUF metadata,
//!   with streaming-safe incremental decoding.
//! - [`chat`]: chat templates rendered with minijinja.

pub mod chat;
pub mod registry;
pub mod tokenizer;
