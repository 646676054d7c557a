//! Model aliases and the local model cache (being written).

use std::path::PathBuf;

/// Path of a real model for tests, fetched into the cache on first use.
/// (Temporary stub: points at files already on this machine.)
pub fn test_model_path(alias: &str) -> PathBuf {
    match alias {
        "smollm2-135m" => PathBuf::from("/work/dl/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "gemma3-270m" => PathBuf::from("/work/dl/gemma-3-270m-q4_k_m.gguf"),
        other => panic!("unknown test model alias {other}"),
    }
}
