//! Paged-attention benchmarks with SmolLM2's shape (9 query heads, 3 KV
//! heads, 64 dimensions), f16 and 8-bit caches: a decode step of 64
//! sequences 256 tokens deep (one query row each, blocks scattered as decode
//! allocation leaves them) and a 512-token prompt chunk of one sequence.
//! Each call is one layer; the caches are hot only as far as they fit.
//!
//! `cargo bench -p fulcrum-kernels --bench attention` (2 threads by default;
//! `FULCRUM_BENCH_THREADS` overrides).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fulcrum_kernels::attention::{
    paged_attention, paged_attention_q8, q8_scales_len, write_kv_batch, write_kv_q8_batch,
    AttentionParams, AttentionSeq, KvShape, Q8Layer, Q8LayerMut,
};
use fulcrum_kernels::WorkerPool;
use half::f16;

const BLOCK_SIZE: usize = 16;

/// One benchmark case: `num_seqs` sequences with `context` cached tokens
/// and `num_new` query rows each.
struct Case {
    name: &'static str,
    num_seqs: usize,
    context: usize,
    num_new: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "decode-64x256",
        num_seqs: 64,
        context: 256,
        num_new: 1,
    },
    Case {
        name: "prefill-1x512",
        num_seqs: 1,
        context: 0,
        num_new: 512,
    },
];

fn params() -> AttentionParams {
    AttentionParams {
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        scale: 0.125,
        window: None,
    }
}

/// Deterministic values in [-2, 2).
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 131 + seed * 17) % 199) as f32 - 99.0) / 50.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("FULCRUM_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let pool = WorkerPool::new(threads);
    let p = params();
    let kv_width = p.num_kv_heads * p.head_dim;
    let q_width = p.num_heads * p.head_dim;
    let mut group = c.benchmark_group("attention");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for case in CASES {
        let total = case.context + case.num_new;
        let per_seq = total.div_ceil(BLOCK_SIZE);
        let shape = KvShape {
            num_blocks: per_seq * case.num_seqs,
            block_size: BLOCK_SIZE,
            num_kv_heads: p.num_kv_heads,
            head_dim: p.head_dim,
        };
        // Block i of every sequence side by side, as decode allocation leaves them.
        let tables: Vec<Vec<u32>> = (0..case.num_seqs)
            .map(|s| {
                (0..per_seq)
                    .map(|i| (i * case.num_seqs + s) as u32)
                    .collect()
            })
            .collect();
        // Fill every position of every sequence, then query the last `num_new`.
        let fill: Vec<AttentionSeq> = tables
            .iter()
            .enumerate()
            .map(|(s, t)| AttentionSeq {
                first_row: s * total,
                num_rows: total,
                num_computed_tokens: 0,
                block_table: t,
            })
            .collect();
        let k_rows = values(case.num_seqs * total * kv_width, 1);
        let v_rows = values(case.num_seqs * total * kv_width, 2);
        let query: Vec<AttentionSeq> = tables
            .iter()
            .enumerate()
            .map(|(s, t)| AttentionSeq {
                first_row: s * case.num_new,
                num_rows: case.num_new,
                num_computed_tokens: case.context,
                block_table: t,
            })
            .collect();
        let q = values(case.num_seqs * case.num_new * q_width, 3);
        let mut out = vec![0f32; q.len()];
        group.throughput(Throughput::Elements((case.num_seqs * case.num_new) as u64));

        let mut k16 = vec![f16::ZERO; shape.layer_len()];
        let mut v16 = vec![f16::ZERO; shape.layer_len()];
        write_kv_batch(&pool, &shape, &mut k16, &mut v16, &fill, &k_rows, &v_rows);
        group.bench_function(BenchmarkId::new("f16", case.name), |b| {
            b.iter(|| paged_attention(&pool, &p, &shape, &q, &k16, &v16, &query, &mut out))
        });

        let (mut k8, mut k_scales) = (
            vec![0u8; shape.layer_len()],
            vec![0f32; q8_scales_len(&shape)],
        );
        let (mut v8, mut v_scales) = (
            vec![0i8; shape.layer_len()],
            vec![0f32; q8_scales_len(&shape)],
        );
        let layer = Q8LayerMut {
            k: &mut k8,
            k_scales: &mut k_scales,
            v: &mut v8,
            v_scales: &mut v_scales,
        };
        write_kv_q8_batch(&pool, &shape, layer, &fill, &k_rows, &v_rows);
        let layer = Q8Layer {
            k: &k8,
            k_scales: &k_scales,
            v: &v8,
            v_scales: &v_scales,
        };
        group.bench_function(BenchmarkId::new("q8", case.name), |b| {
            b.iter(|| paged_attention_q8(&pool, &p, &shape, &q, layer, &query, &mut out))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
