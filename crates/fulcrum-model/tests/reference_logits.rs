//! Next-token distributions against llama.cpp's on the same files
//! (`tests/data/logits.jsonl`, copied from `shared/reference/`).
//!
//! With `Numerics::LlamaCpp` fulcrum computes as llama.cpp's CPU backend does
//! (its rounding and its summation order, kernel by kernel; see
//! docs/correctness.md), so for SmolLM2 (Q4_1/Q8_0) the log-probabilities are
//! *bit-identical* to the reference: the test demands agreement to 1e-4.
//!
//! Everything else differs from llama.cpp in the last bits of some sums:
//! Gemma 3 in both orders (exact agreement is not a property any
//! batch-invariant engine can have there: llama.cpp's Q4_K kernels sum in a
//! different order for groups of 4 prompt tokens than for the rest, so its
//! own results depend on how a prompt is batched), and both models with the
//! default `Numerics::Fast`. These small models amplify one-ulp differences
//! through 8-bit re-quantization at every layer (`Numerics::LlamaCppBatch`,
//! which also follows llama.cpp's batched K-quant kernels, makes Gemma's
//! logits bit-identical too: asserted to 1e-4); llama.cpp's own
//! flash-attention path moves these top-10 log-probabilities by up to 0.39
//! (measured). So the bar there is: the same top-1 token; every top-10
//! log-probability within 0.45; their mean deviation within 0.2 (measured:
//! at most 0.30 and 0.16). A real bug (wrong rope, a missing norm, an
//! off-by-one window) moves logits by whole units and fails all three.

mod common;

use common::{load_with, next_logprobs_with, NUMERICS};
use fulcrum_model::{KvDtype, Numerics};
use serde_json::Value;

#[test]
fn logits_match_llama_cpp() {
    for numerics in NUMERICS {
        check(numerics, KvDtype::F16);
    }
    check(Numerics::LlamaCppBatch, KvDtype::F16);
}

/// The 8-bit KV cache (8-bit keys, values and queries, 16-bit attention
/// weights) is held to the bar of the fast numerics: same top-1, top-10
/// log-probabilities within 0.45 of llama.cpp's, mean within 0.2.
#[test]
fn the_q8_cache_stays_within_the_fast_bar() {
    check(Numerics::Fast, KvDtype::Q8);
}

fn check(numerics: Numerics, dtype: KvDtype) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/logits.jsonl"
    ))
    .unwrap();
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let model = load_with(v["model"].as_str().unwrap(), numerics);
        let ids: Vec<u32> = v["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let lp = next_logprobs_with(&model, &ids, dtype);
        let top10 = v["top10"].as_array().unwrap();
        let best = lp
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let what = format!("{numerics} {dtype} {} {:?}", v["model"], v["prompt"]);
        assert_eq!(
            best as u64,
            top10[0]["id"].as_u64().unwrap(),
            "top-1 for {what}"
        );
        // With the batch orders (llama.cpp's 4-token Q4_K GEMM and tiled
        // Q6_K matmul) Gemma's prompt logits are llama.cpp's too.
        let exact = dtype == KvDtype::F16
            && match numerics {
                Numerics::LlamaCpp => v["model"] == "smollm2",
                Numerics::LlamaCppBatch => true,
                Numerics::Fast => false,
            };
        let (mut total, mut max) = (0f32, 0f32);
        for e in top10 {
            let id = e["id"].as_u64().unwrap() as usize;
            let want = e["logprob"].as_f64().unwrap() as f32;
            let diff = (lp[id] - want).abs();
            let bound = if exact { 1e-4 } else { 0.45 };
            assert!(
                diff < bound,
                "{what}: token {id} logprob {} vs llama.cpp {want}",
                lp[id]
            );
            total += diff;
            max = max.max(diff);
        }
        // Shown with `--nocapture`: the measured deviations quoted in docs/correctness.md.
        eprintln!(
            "{what}: top-10 log-probability deviation max {max:.3}, mean {:.3}",
            total / 10.0
        );
        let mean_bound = if exact { 1e-4 } else { 0.2 };
        assert!(
            total / 10.0 < mean_bound,
            "{what}: mean top-10 deviation {}",
            total / 10.0
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}
