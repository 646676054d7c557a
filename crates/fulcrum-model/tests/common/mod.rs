//! Shared helpers for the tests that run the real models.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fulcrum_kernels::ops::log_softmax_inplace;
use fulcrum_kernels::WorkerPool;
use fulcrum_model::registry::test_model_path;
use fulcrum_model::{ForwardScratch, Model, Numerics, SeqInput};

/// Reference-file model names → registry aliases.
pub fn alias(name: &str) -> &'static str {
    match name {
        "smollm2" | "smollm2-135m" => "smollm2-135m",
        "gemma3" | "gemma3-270m" => "gemma3-270m",
        other => panic!("unknown model {other}"),
    }
}

/// Loads (and caches per process) a real model with the default numerics,
/// fetching it if needed.
pub fn load(name: &str) -> Arc<Model> {
    load_with(name, Numerics::default())
}

/// Loads (and caches per process) a real model packed for `numerics`.
pub fn load_with(name: &str, numerics: Numerics) -> Arc<Model> {
    type Loaded = HashMap<(&'static str, Numerics), Arc<Model>>;
    static MODELS: OnceLock<Mutex<Loaded>> = OnceLock::new();
    let a = alias(name);
    let mut map = MODELS.get_or_init(Default::default).lock().unwrap();
    map.entry((a, numerics))
        .or_insert_with(|| Arc::new(Model::load_with(test_model_path(a), numerics).unwrap()))
        .clone()
}

/// Both summation orders, llama.cpp's first.
pub const NUMERICS: [Numerics; 2] = [Numerics::LlamaCpp, Numerics::Fast];

pub fn pool() -> &'static WorkerPool {
    static POOL: OnceLock<WorkerPool> = OnceLock::new();
    POOL.get_or_init(|| WorkerPool::new(2))
}

/// Prefills `ids` as one sequence (identity block table) and returns the
/// log-probabilities of the next token.
pub fn next_logprobs(model: &Model, ids: &[u32]) -> Vec<f32> {
    next_logprobs_with(model, ids, fulcrum_model::KvDtype::F16)
}

/// [`next_logprobs`] with the KV cache stored as `dtype`.
pub fn next_logprobs_with(model: &Model, ids: &[u32], dtype: fulcrum_model::KvDtype) -> Vec<f32> {
    let bs = 16;
    let blocks = ids.len().div_ceil(bs) + 1;
    let mut kv = model.new_kv_cache_with(blocks, bs, dtype);
    let table: Vec<u32> = (0..blocks as u32).collect();
    let mut scratch = ForwardScratch::default();
    let seq = SeqInput {
        tokens: ids,
        num_computed_tokens: 0,
        block_table: &table,
        wants_logits: true,
    };
    let mut logits = model
        .forward(pool(), &[seq], &mut kv, &mut scratch)
        .unwrap()
        .to_vec();
    log_softmax_inplace(&mut logits);
    logits
}

/// Greedy continuation of `prompt`: one prefill, then one decode per token.
/// Stops after `max_new` tokens or at a stop token (included).
pub fn greedy(model: &Model, prompt: &[u32], max_new: usize, chunk: usize) -> Vec<u32> {
    let bs = 16;
    let blocks = (prompt.len() + max_new).div_ceil(bs) + 1;
    let mut kv = model.new_kv_cache(blocks, bs);
    let table: Vec<u32> = (0..blocks as u32).rev().collect();
    let mut scratch = ForwardScratch::default();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut logits = Vec::new();
    while pos < prompt.len() {
        let n = chunk.min(prompt.len() - pos);
        let seq = SeqInput {
            tokens: &prompt[pos..pos + n],
            num_computed_tokens: pos,
            block_table: &table,
            wants_logits: pos + n == prompt.len(),
        };
        logits = model
            .forward(pool(), &[seq], &mut kv, &mut scratch)
            .unwrap()
            .to_vec();
        pos += n;
    }
    for _ in 0..max_new {
        let next = argmax(&logits);
        out.push(next);
        if model.tokenizer.is_stop_token(next) {
            break;
        }
        let tok = [next];
        let seq = SeqInput {
            tokens: &tok,
            num_computed_tokens: pos,
            block_table: &table,
            wants_logits: true,
        };
        logits = model
            .forward(pool(), &[seq], &mut kv, &mut scratch)
            .unwrap()
            .to_vec();
        pos += 1;
    }
    out
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}
