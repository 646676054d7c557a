//! Rough single-sequence speed: prefill N tokens, then decode M tokens.
//! `cargo run --release -p fulcrum-model --example speed -- MODEL.gguf [N] [M] [threads]`
use fulcrum_kernels::WorkerPool;
use fulcrum_model::{ForwardScratch, Model, SeqInput};
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let model = Model::load(&a[1]).unwrap();
    let n: usize = a.get(2).map_or(512, |s| s.parse().unwrap());
    let m: usize = a.get(3).map_or(128, |s| s.parse().unwrap());
    let threads: usize = a.get(4).map_or(2, |s| s.parse().unwrap());
    let pool = WorkerPool::new(threads);
    let bs = 16;
    let blocks = (n + m).div_ceil(bs) + 1;
    let mut kv = model.new_kv_cache(blocks, bs);
    let table: Vec<u32> = (0..blocks as u32).collect();
    let mut s = ForwardScratch::default();
    let prompt: Vec<u32> = (0..n as u32).map(|i| 100 + (i * 37) % 20000).collect();
    // warm-up
    let _ = model
        .forward(
            &pool,
            &[SeqInput {
                tokens: &prompt[..16],
                num_computed_tokens: 0,
                block_table: &table,
                wants_logits: true,
            }],
            &mut kv,
            &mut s,
        )
        .unwrap();
    let t = Instant::now();
    let _ = model
        .forward(
            &pool,
            &[SeqInput {
                tokens: &prompt,
                num_computed_tokens: 0,
                block_table: &table,
                wants_logits: true,
            }],
            &mut kv,
            &mut s,
        )
        .unwrap();
    let pre = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tok = [1u32];
    for i in 0..m {
        let l = model
            .forward(
                &pool,
                &[SeqInput {
                    tokens: &tok,
                    num_computed_tokens: n + i,
                    block_table: &table,
                    wants_logits: true,
                }],
                &mut kv,
                &mut s,
            )
            .unwrap();
        tok[0] = (l
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0) as u32;
    }
    let dec = t.elapsed().as_secs_f64();
    println!(
        "prefill {n}: {:.1} tok/s   decode {m}: {:.1} tok/s   (weights {:.1} MB/step → {:.1} GB/s)",
        n as f64 / pre,
        m as f64 / dec,
        model.weights.bytes_per_step() as f64 / 1e6,
        model.weights.bytes_per_step() as f64 * m as f64 / dec / 1e9
    );
}
