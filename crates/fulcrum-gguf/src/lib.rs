//! # fulcrum-gguf — the GGUF model file format
//!
//! GGUF is llama.cpp's single-file model container: a header, typed key/value
//! metadata (architecture hyper-parameters, the tokenizer's vocabulary, the chat
//! template), a tensor table (name, shape, element type, offset) and an aligned
//! data section holding the weights.
//!
//! Principal types:
//! - [`GgufFile`]: a parsed file, backed by a read-only memory map (or an owned
//!   buffer). Parsing validates every count, length, offset and size against the
//!   bytes actually present, so a truncated or hostile file yields a
//!   [`GgufError`], never a panic or an out-of-bounds read.
//! - [`MetadataValue`] and the typed getters on [`Metadata`].
//! - [`TensorInfo`]: one entry of the tensor table; [`GgufFile::tensor_data`]
//!   gives its bytes without copying.
//! - [`GgmlType`]: element types and their block layouts (sizes only; the
//!   arithmetic lives in `fulcrum-kernels`).
//! - [`GgufWriter`]: writes files, used by tests to build tiny synthetic models.

mod error;
mod metadata;
mod reader;
mod types;
mod writer;

pub use error::GgufError;
pub use metadata::{Metadata, MetadataValue, ValueType};
pub use reader::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC};
pub use types::GgmlType;
pub use writer::GgufWriter;
