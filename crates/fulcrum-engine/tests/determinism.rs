//! Determinism on the real SmolLM2 (DESIGN.md, "Determinism as a feature"):
//! a request's greedy output is bit-identical whether it runs alone or in a
//! busy batch, under every policy, with and without the prefix cache, with
//! preemptions forced by a tiny pool, and with prompts chunked at odd sizes.
//! Plus the prefix cache's payoff: a repeated 512-token prompt is mostly not
//! prefilled again, and its output does not change.
//!
//! Kept small (prompts ≤ 40 tokens, ≤ 16 new tokens) so the suite stays
//! fast; tests take turns (`SERIAL`) because each runs the worker pool.

mod common;

use std::sync::{Mutex, OnceLock};

use common::{greedy, options, resolve, run_all, smollm2, text_request, GatedRunner};
use fulcrum_engine::engine::ModelRunner;
use fulcrum_engine::{Engine, EngineOptions, KvDtype, Policy, Prompt, RequestInput};

static SERIAL: Mutex<()> = Mutex::new(());

const PROMPTS: [(&str, usize); 5] = [
    ("The capital of France is", 12),
    ("Write a haiku about the sea:", 16),
    ("def fibonacci(n):", 12),
    (
        "In a small village at the edge of the forest there lived an old clockmaker who repaired every clock in the \
         valley. One morning a stranger",
        12,
    ),
    ("List three prime numbers:", 10),
];

fn inputs() -> Vec<RequestInput> {
    PROMPTS
        .iter()
        .map(|&(prompt, max_tokens)| text_request(prompt, greedy(max_tokens)))
        .collect()
}

/// Each request alone on a fresh engine (nothing else in the batch, nothing
/// cached): the outputs every configuration must reproduce.
fn reference() -> &'static Vec<Vec<u32>> {
    static REFERENCE: OnceLock<Vec<Vec<u32>>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let model = smollm2();
        inputs()
            .into_iter()
            .map(|input| {
                let engine =
                    Engine::start(model.clone(), resolve(&model, &options(256, 64))).unwrap();
                let out = run_all(&engine, &[input]);
                engine.shutdown(std::time::Duration::ZERO);
                out[0].choices[0].token_ids.clone()
            })
            .collect()
    })
}

#[test]
fn the_reference_agrees_with_llama_cpp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // ../shared/reference/generations.jsonl, SmolLM2, "The capital of France
    // is": " Paris.\n\nThe United States has a population of…". A pipeline
    // that fed wrong positions or blocks would still be deterministic; this
    // pins it to the right answer.
    let llama_cpp = [7042, 30, 198, 198, 504, 1797, 1918, 553];
    assert_eq!(reference()[0][..8], llama_cpp);
}

/// Runs all prompts at once under `options`; returns the outputs and the
/// number of preemptions. The schedule is fixed, not left to thread timing:
/// the first step holds the first request alone and every other request is
/// queued before it ends (on a busy CI machine the first request once ran
/// far ahead of the rest, and a tiny pool then forced no preemption).
fn run_batch(options: &EngineOptions) -> (Vec<Vec<u32>>, u64) {
    let model = smollm2();
    let config = resolve(&model, options);
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let runner = GatedRunner {
        inner: ModelRunner::new(model.clone(), &config),
        gate: Some((entered_tx, release_rx)),
    };
    let engine = Engine::start_with_runner(model.clone(), config, Box::new(runner)).unwrap();
    let mut inputs = inputs().into_iter();
    let mut handles = vec![engine
        .add_request(inputs.next().unwrap())
        .expect("accepted")];
    entered.recv().unwrap();
    handles.extend(inputs.map(|input| engine.add_request(input).expect("accepted")));
    release.send(()).unwrap();
    let outputs: Vec<_> = handles
        .into_iter()
        .map(|h| h.blocking_collect().expect("completed"))
        .collect();
    let metrics = engine.shutdown(std::time::Duration::ZERO);
    assert_eq!(metrics.num_kv_blocks_used, 0);
    (
        outputs
            .into_iter()
            .map(|o| o.choices[0].token_ids.clone())
            .collect(),
        metrics.num_preemptions,
    )
}

fn assert_matches_reference(what: &str, outputs: &[Vec<u32>]) {
    for (i, (got, expected)) in outputs.iter().zip(reference()).enumerate() {
        assert_eq!(
            got, expected,
            "{what}: prompt {i} differs from its run alone"
        );
    }
}

#[test]
fn batched_output_equals_alone_under_every_policy_with_and_without_the_prefix_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    reference();
    for policy in Policy::ALL {
        for enable_prefix_cache in [true, false] {
            let options = EngineOptions {
                policy,
                enable_prefix_cache,
                max_num_seqs: 8,
                ..options(1024, 64)
            };
            let (outputs, _) = run_batch(&options);
            assert_matches_reference(
                &format!("{policy}, prefix cache {enable_prefix_cache}"),
                &outputs,
            );
        }
    }
}

#[test]
fn preemption_by_recompute_does_not_change_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    reference();
    // 16 blocks of 4 tokens: five sequences of up to 56 tokens cannot all fit.
    for policy in [Policy::Chunked, Policy::DecodeFirst] {
        let options = EngineOptions {
            policy,
            block_size: 4,
            max_num_seqs: 5,
            watermark: 0.0,
            ..options(64, 64)
        };
        let (outputs, num_preemptions) = run_batch(&options);
        assert!(
            num_preemptions > 0,
            "{policy}: the tiny pool forced no preemption"
        );
        assert_matches_reference(
            &format!("{policy} with {num_preemptions} preemptions"),
            &outputs,
        );
    }
}

#[test]
fn prompts_chunked_at_odd_sizes_give_the_same_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    reference();
    let options = EngineOptions {
        max_batched_tokens: Some(7),
        max_num_seqs: 3,
        block_size: 5,
        ..options(1024, 64)
    };
    let (outputs, _) = run_batch(&options);
    assert_matches_reference("chunks of at most 7 tokens", &outputs);
}

/// The 8-bit KV cache keeps the guarantees: each request alone (16-token
/// blocks: the AVX-512 kernel where the CPU has it) equals all of them
/// batched, and batched with prompts chunked at odd sizes in 5-token blocks
/// (the portable kernel, bit-identical by contract); and it still answers.
#[test]
fn the_q8_cache_is_deterministic_and_still_answers_paris() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = smollm2();
    let q8 = |o: EngineOptions| EngineOptions {
        kv_cache_dtype: KvDtype::Q8,
        ..o
    };
    let alone: Vec<Vec<u32>> = inputs()
        .into_iter()
        .map(|input| {
            let engine =
                Engine::start(model.clone(), resolve(&model, &q8(options(256, 64)))).unwrap();
            let out = run_all(&engine, &[input]);
            engine.shutdown(std::time::Duration::ZERO);
            out[0].choices[0].token_ids.clone()
        })
        .collect();
    // " Paris." as llama.cpp (f16 cache) says it.
    assert_eq!(alone[0][..2], [7042, 30]);
    for (what, options) in [
        (
            "batched",
            q8(EngineOptions {
                max_num_seqs: 8,
                ..options(1024, 64)
            }),
        ),
        (
            "chunks of at most 7 tokens, blocks of 5",
            q8(EngineOptions {
                max_batched_tokens: Some(7),
                max_num_seqs: 3,
                block_size: 5,
                ..options(1024, 64)
            }),
        ),
    ] {
        let (outputs, _) = run_batch(&options);
        for (i, (got, expected)) in outputs.iter().zip(&alone).enumerate() {
            assert_eq!(
                got, expected,
                "q8, {what}: prompt {i} differs from its run alone"
            );
        }
    }
}

#[test]
fn a_repeated_long_prompt_is_served_from_the_prefix_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = smollm2();
    let engine = Engine::start(model.clone(), resolve(&model, &options(2048, 1024))).unwrap();
    let mut system = String::from("You are a meticulous assistant. ");
    let mut i = 0;
    while engine.tokenize(&Prompt::Text(system.clone())).len() < 512 {
        system.push_str(&format!(
            "Rule {i}: answer precisely, cite the rule number, and never invent facts. "
        ));
        i += 1;
    }
    let prompt = format!("{system}\nQuestion: what is the first rule?\nAnswer:");
    let num_prompt_tokens = engine.tokenize(&Prompt::Text(prompt.clone())).len();

    let prefilled_before = engine.metrics().num_prefill_tokens_computed;
    let first = run_all(&engine, &[text_request(&prompt, greedy(6))]).remove(0);
    let prefilled_first = engine.metrics().num_prefill_tokens_computed - prefilled_before;
    let second = run_all(&engine, &[text_request(&prompt, greedy(6))]).remove(0);
    let prefilled_second =
        engine.metrics().num_prefill_tokens_computed - prefilled_before - prefilled_first;

    assert_eq!(prefilled_first, num_prompt_tokens as u64);
    // Every full block is served from the cache; only the partial tail block
    // (and at least the last token) is computed again.
    let num_cached = (num_prompt_tokens - 1) / 16 * 16;
    assert_eq!(second.choices[0].num_cached_tokens, num_cached);
    assert_eq!(second.usage.cached_tokens, num_cached);
    assert_eq!(prefilled_second, (num_prompt_tokens - num_cached) as u64);
    assert!(
        prefilled_second < 17,
        "{prefilled_second} prompt tokens prefilled again"
    );
    assert_eq!(second.choices[0].token_ids, first.choices[0].token_ids);
    let metrics = engine.shutdown(std::time::Duration::ZERO);
    assert_eq!(metrics.prefix_cache_hits, num_cached as u64);
}
