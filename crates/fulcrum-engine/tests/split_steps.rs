//! Steps split over threads by sequence (`runner::split`): the same logits,
//! bit for bit, as one forward pass with every thread on each operation —
//! for prompt chunks and for decodes, with the f16 and the q8 KV cache —
//! and the split is taken only where the shares come out even.

mod common;

use common::{options, resolve, smollm2};
use fulcrum_engine::engine::{split, ModelRunner, StepRunner};
use fulcrum_engine::{EngineOptions, KvDtype};
use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardScratch, SeqInput};

/// 32 sequences: an 8-token prompt each, then one decode step; returns both
/// steps' logits and how many steps the runner split.
fn two_steps(split_runner: bool, dtype: KvDtype) -> (Vec<f32>, Vec<f32>, u64) {
    let model = smollm2();
    let config = resolve(
        &model,
        &EngineOptions {
            kv_cache_dtype: dtype,
            ..options(32 * 32, 64)
        },
    );
    let prompts: Vec<Vec<u32>> = (0..32u32)
        .map(|s| (0..9).map(|i| 1000 + s * 37 + i * 11).collect())
        .collect();
    // Blocks interleaved between sequences, as decode allocation leaves them.
    let tables: Vec<Vec<u32>> = (0..32u32).map(|s| vec![s, 32 + s]).collect();
    let step = |prefill: bool| -> Vec<SeqInput<'_>> {
        prompts
            .iter()
            .zip(&tables)
            .map(|(p, t)| SeqInput {
                tokens: if prefill { &p[..8] } else { &p[8..9] },
                num_computed_tokens: if prefill { 0 } else { 8 },
                block_table: t,
                wants_logits: true,
            })
            .collect()
    };
    if split_runner {
        let mut runner = ModelRunner::new(model.clone(), &config);
        let a = runner.forward(&step(true)).unwrap().to_vec();
        let b = runner.forward(&step(false)).unwrap().to_vec();
        (a, b, runner.num_split_steps())
    } else {
        let pool = WorkerPool::new(2);
        let mut kv = model.new_kv_cache_with(config.scheduler.num_blocks, 16, dtype);
        let mut scratch = ForwardScratch::default();
        let a = model
            .forward(&pool, &step(true), &mut kv, &mut scratch)
            .unwrap()
            .to_vec();
        let b = model
            .forward(&pool, &step(false), &mut kv, &mut scratch)
            .unwrap()
            .to_vec();
        (a, b, 0)
    }
}

#[test]
fn split_steps_give_the_logits_of_one_pass() {
    for dtype in [KvDtype::F16, KvDtype::Q8] {
        let (a, b, splits) = two_steps(true, dtype);
        let (a1, b1, _) = two_steps(false, dtype);
        assert_eq!(splits, 2, "{dtype}: both steps should have split");
        let same = |x: &[f32], y: &[f32]| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        };
        assert!(same(&a, &a1), "{dtype}: prompt step differs");
        assert!(same(&b, &b1), "{dtype}: decode step differs");
        assert_eq!(a.len(), 32 * smollm2().config.vocab_size);
    }
}

#[test]
fn only_even_shares_split() {
    let table = [0u32; 4];
    let toks = [1u32; 600];
    let seq = |n: usize, start: usize| SeqInput {
        tokens: &toks[..n],
        num_computed_tokens: start,
        block_table: &table,
        wants_logits: true,
    };
    // 64 decodes at equal contexts: halves.
    let decodes: Vec<SeqInput> = (0..64).map(|_| seq(1, 200)).collect();
    assert_eq!(split(&decodes, 2), Some(vec![0, 32, 64]));
    assert_eq!(split(&decodes, 4), Some(vec![0, 16, 32, 48, 64]));
    // Longer contexts cost more: the cut moves toward them.
    let mixed: Vec<SeqInput> = (0..64)
        .map(|i| seq(1, if i < 32 { 100 } else { 3000 }))
        .collect();
    let cuts = split(&mixed, 2).expect("splits");
    assert!(cuts[1] > 32, "{cuts:?}");
    // One long prompt chunk beside a few decodes: no even split.
    let mut lopsided = vec![seq(512, 0)];
    lopsided.extend((0..20).map(|_| seq(1, 50)));
    assert_eq!(split(&lopsided, 2), None);
    // Too few tokens per share to be worth reading the weights twice.
    let few: Vec<SeqInput> = (0..8).map(|_| seq(1, 10)).collect();
    assert_eq!(split(&few, 2), None);
    // One thread, or fewer sequences than threads: never.
    assert_eq!(split(&decodes, 1), None);
    assert_eq!(split(&decodes[..1], 2), None);
}
