//! Bit-identical results for a sequence whether it runs alone or in a ragged
//! batch with others, whatever the thread count and the prefill chunking —
//! on both real models (DESIGN.md, "Determinism as a feature").

mod common;

use common::{argmax, load_with, NUMERICS};
use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardScratch, Model, SeqInput};

const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker who",
];

/// Greedy decoding of several sequences together: prompts prefilled in
/// chunks of `chunk` tokens (all sequences in the same steps), then `steps`
/// decode steps. Returns each sequence's generated ids and final logits.
fn run(
    model: &Model,
    pool: &WorkerPool,
    prompts: &[Vec<u32>],
    chunk: usize,
    steps: usize,
) -> Vec<(Vec<u32>, Vec<f32>)> {
    let bs = 16;
    let per_seq = (prompts.iter().map(|p| p.len()).max().unwrap() + steps).div_ceil(bs) + 1;
    let mut kv = model.new_kv_cache(per_seq * prompts.len(), bs);
    // Interleaved, non-contiguous block tables.
    let tables: Vec<Vec<u32>> = (0..prompts.len())
        .map(|s| {
            (0..per_seq)
                .map(|b| (b * prompts.len() + s) as u32)
                .collect()
        })
        .collect();
    let mut scratch = ForwardScratch::default();
    let mut tokens: Vec<Vec<u32>> = prompts.to_vec();
    let mut done = vec![0usize; prompts.len()];
    let mut last_logits = vec![Vec::new(); prompts.len()];
    let mut generated = vec![Vec::new(); prompts.len()];
    loop {
        let mut seqs = Vec::new();
        let mut which = Vec::new();
        for (s, toks) in tokens.iter().enumerate() {
            if generated[s].len() >= steps {
                continue;
            }
            let n = if done[s] < prompts[s].len() {
                chunk.min(prompts[s].len() - done[s])
            } else {
                1
            };
            let end = done[s] + n;
            seqs.push(SeqInput {
                tokens: &toks[done[s]..end],
                num_computed_tokens: done[s],
                block_table: &tables[s],
                wants_logits: end == toks.len(),
            });
            which.push((s, n, end == toks.len()));
        }
        if seqs.is_empty() {
            break;
        }
        let logits = model
            .forward(pool, &seqs, &mut kv, &mut scratch)
            .unwrap()
            .to_vec();
        drop(seqs);
        let vocab = model.config.vocab_size;
        let mut row = 0;
        for (s, n, wants) in which {
            done[s] += n;
            if wants {
                let l = logits[row * vocab..(row + 1) * vocab].to_vec();
                row += 1;
                let next = argmax(&l);
                generated[s].push(next);
                tokens[s].push(next);
                last_logits[s] = l;
            }
        }
    }
    generated.into_iter().zip(last_logits).collect()
}

#[test]
fn alone_batched_threads_and_chunking_give_identical_results() {
    for (name, numerics) in ["smollm2", "gemma3"]
        .into_iter()
        .flat_map(|n| NUMERICS.map(|x| (n, x)))
    {
        let model = load_with(name, numerics);
        let name = format!("{name} ({numerics})");
        let prompts: Vec<Vec<u32>> = PROMPTS
            .iter()
            .map(|p| model.tokenizer.encode(p, true, false))
            .collect();
        let one = WorkerPool::new(1);
        let two = WorkerPool::new(2);
        let alone: Vec<_> = prompts
            .iter()
            .map(|p| run(&model, &one, std::slice::from_ref(p), 512, 6).remove(0))
            .collect();
        for (pool, chunk) in [(&two, 512), (&two, 5), (&one, 3)] {
            let batched = run(&model, pool, &prompts, chunk, 6);
            for (s, ((ids_a, logits_a), (ids_b, logits_b))) in
                alone.iter().zip(&batched).enumerate()
            {
                assert_eq!(
                    ids_a,
                    ids_b,
                    "{name} prompt {s}: tokens differ (threads {}, chunk {chunk})",
                    pool.num_threads()
                );
                assert!(
                    logits_a
                        .iter()
                        .zip(logits_b)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name} prompt {s}: logits not bit-identical (threads {}, chunk {chunk})",
                    pool.num_threads()
                );
            }
        }
    }
}
