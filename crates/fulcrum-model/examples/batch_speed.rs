//! Aggregate decode throughput with B sequences decoding together (each after
//! a P-token prompt): `batch_speed MODEL.gguf [B] [P] [STEPS] [THREADS]`.
//! `FULCRUM_NUMERICS=llama-cpp` selects llama.cpp's summation order;
//! `FULCRUM_SCATTER=1` interleaves the sequences' KV blocks; `FULCRUM_KV=q8`
//! uses the 8-bit KV cache.
use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardScratch, Model, SeqInput};
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let numerics = std::env::var("FULCRUM_NUMERICS")
        .map(|s| s.parse().expect("FULCRUM_NUMERICS: fast or llama-cpp"))
        .unwrap_or_default();
    let model = Model::load_with(&a[1], numerics).unwrap();
    let arg = |i: usize, d: usize| a.get(i).map_or(d, |s| s.parse().unwrap());
    let (b, p, steps, threads) = (arg(2, 64), arg(3, 128), arg(4, 128), arg(5, 2));
    let pool = WorkerPool::new(threads);
    let bs = 16;
    let per = (p + steps).div_ceil(bs) + 1;
    let dtype = std::env::var("FULCRUM_KV")
        .map(|s| s.parse().expect("FULCRUM_KV: f16 or q8"))
        .unwrap_or_default();
    let mut kv = model.new_kv_cache_with(per * b, bs, dtype);
    // FULCRUM_SCATTER=1: block i of every sequence side by side (the engine's
    // decode blocks, allocated as sequences grow, land this way); otherwise
    // each sequence's blocks are contiguous.
    let scatter = std::env::var("FULCRUM_SCATTER").is_ok_and(|v| v == "1");
    let tables: Vec<Vec<u32>> = (0..b)
        .map(|s| {
            (0..per)
                .map(|i| if scatter { i * b + s } else { s * per + i } as u32)
                .collect()
        })
        .collect();
    let prompts: Vec<Vec<u32>> = (0..b)
        .map(|s| {
            (0..p)
                .map(|i| (100 + (i * 31 + s * 7) % 20000) as u32)
                .collect()
        })
        .collect();
    let mut scratch = ForwardScratch::default();
    let t = Instant::now();
    // Prefill 16 sequences per step.
    for group in prompts.chunks(16).enumerate() {
        let seqs: Vec<SeqInput> = group
            .1
            .iter()
            .enumerate()
            .map(|(j, pr)| SeqInput {
                tokens: pr,
                num_computed_tokens: 0,
                block_table: &tables[group.0 * 16 + j],
                wants_logits: true,
            })
            .collect();
        model.forward(&pool, &seqs, &mut kv, &mut scratch).unwrap();
    }
    let pre = t.elapsed().as_secs_f64();
    let mut last: Vec<u32> = vec![1; b];
    let t = Instant::now();
    for step in 0..steps {
        let toks: Vec<[u32; 1]> = last.iter().map(|&x| [x]).collect();
        let seqs: Vec<SeqInput> = (0..b)
            .map(|s| SeqInput {
                tokens: &toks[s],
                num_computed_tokens: p + step,
                block_table: &tables[s],
                wants_logits: true,
            })
            .collect();
        let l = model.forward(&pool, &seqs, &mut kv, &mut scratch).unwrap();
        let v = model.config.vocab_size;
        for s in 0..b {
            let row = &l[s * v..(s + 1) * v];
            last[s] = row
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .unwrap()
                .0 as u32;
        }
    }
    let dec = t.elapsed().as_secs_f64();
    println!(
        "B={b} P={p}: prefill {:.0} tok/s, decode {:.1} tok/s aggregate ({:.1} ms/step)",
        (b * p) as f64 / pre,
        (b * steps) as f64 / dec,
        dec * 1e3 / steps as f64
    );
}
