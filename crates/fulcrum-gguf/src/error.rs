use std::path::PathBuf;

/// Everything that can be wrong with a GGUF file or a metadata lookup.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic bytes {found:02x?}, expected \"GGUF\")")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0} (fulcrum reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated: needed {needed} bytes at offset {offset} while reading {what}, file has {file_len}")]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    #[error("implausible {what}: {value} (only {limit} possible in the remaining bytes)")]
    ImplausibleCount {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    InvalidUtf8 { what: &'static str, offset: u64 },
    #[error("unknown metadata value type {type_id} for key `{key}`")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("metadata arrays nested deeper than {max} levels (key `{key}`)")]
    NestingTooDeep { key: String, max: usize },
    #[error("duplicate metadata key `{0}`")]
    DuplicateKey(String),
    #[error("duplicate tensor name `{0}`")]
    DuplicateTensor(String),
    #[error("tensor `{name}` has unsupported element type id {type_id}")]
    UnsupportedTensorType { name: String, type_id: u32 },
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("bad alignment {0} (must be a power of two, at most 1 MiB)")]
    BadAlignment(u64),
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("tensor `{0}` not found")]
    MissingTensor(String),
    #[error("writer: {0}")]
    Writer(String),
}
