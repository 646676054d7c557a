//! Quick paged-attention probe with SmolLM2's shape (9 query heads, 3 KV
//! heads, 64 dims): `attn_speed SEQS CONTEXT NEW THREADS`. Each of SEQS
//! sequences has CONTEXT tokens cached and NEW query rows (1 = a decode
//! step, more = a prefill chunk ending at CONTEXT + NEW); prints the time per
//! call (one layer) and the KV bytes it reads. `FULCRUM_KV=q8` measures the
//! 8-bit cache. The calls cycle through ~400 MB of layer caches, so the data
//! comes from memory as in a model; `LAYERS=1` keeps one (hot in cache when
//! it is small), which separates the kernel's arithmetic from its waits.
use fulcrum_kernels::attention::{
    paged_attention, paged_attention_q8, q8_scales_len, write_kv, write_kv_q8_batch,
    AttentionParams, AttentionSeq, KvShape, Q8Layer, Q8LayerMut,
};
use fulcrum_kernels::WorkerPool;
use half::f16;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("numbers"))
        .collect();
    let (seqs, ctx, new, threads) = (a[0], a[1], a[2], a[3]);
    let p = AttentionParams {
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        scale: 0.125,
        window: None,
    };
    let bs: usize = std::env::var("BS").map_or(16, |v| v.parse().unwrap());
    let total = ctx + new;
    let per = total.div_ceil(bs);
    let shape = KvShape {
        num_blocks: per * seqs,
        block_size: bs,
        num_kv_heads: p.num_kv_heads,
        head_dim: p.head_dim,
    };
    // FULCRUM_SCATTER=1: block i of every sequence side by side, as decode
    // allocation leaves them; otherwise each sequence's blocks are contiguous,
    // as a prompt's are.
    let scatter = std::env::var("FULCRUM_SCATTER").is_ok_and(|v| v == "1");
    let tables: Vec<Vec<u32>> = (0..seqs)
        .map(|s| {
            (0..per)
                .map(|i| if scatter { i * seqs + s } else { s * per + i } as u32)
                .collect()
        })
        .collect();
    let mut k = vec![f16::ZERO; shape.layer_len()];
    let mut v = vec![f16::ZERO; shape.layer_len()];
    let kvw = p.num_kv_heads * p.head_dim;
    let row = |i: usize| -> Vec<f32> {
        (0..kvw)
            .map(|j| (((i * 131 + j * 17) % 199) as f32 - 99.0) / 50.0)
            .collect()
    };
    for (s, t) in tables.iter().enumerate() {
        for pos in 0..total {
            write_kv(
                &shape,
                &mut k,
                &mut v,
                t,
                pos,
                &row(s + pos),
                &row(s + 2 * pos),
            );
        }
    }
    let stride = p.num_heads * p.head_dim;
    let q: Vec<f32> = (0..seqs * new * stride)
        .map(|i| ((i % 37) as f32 - 18.0) / 20.0)
        .collect();
    let batch: Vec<AttentionSeq> = tables
        .iter()
        .enumerate()
        .map(|(s, t)| AttentionSeq {
            first_row: s * new,
            num_rows: new,
            num_computed_tokens: ctx,
            block_table: t,
        })
        .collect();
    let mut out = vec![0f32; seqs * new * stride];
    let pool = WorkerPool::new(threads);
    let mut times = Vec::new();
    let q8 = std::env::var("FULCRUM_KV").is_ok_and(|v| v == "q8");
    // Several layers' caches, so the data comes from memory as in a model.
    let layer_bytes = if q8 {
        shape.layer_len() + 4 * q8_scales_len(&shape)
    } else {
        2 * shape.layer_len()
    };
    // LAYERS=1 keeps one layer's cache, hot in cache for small SEQS.
    let layers = std::env::var("LAYERS").map_or((400 << 20) / (2 * layer_bytes) + 1, |v| {
        v.parse().expect("LAYERS: a count")
    });
    if q8 {
        let kvd = kvw;
        let all: Vec<AttentionSeq> = tables
            .iter()
            .map(|t| AttentionSeq {
                first_row: 0,
                num_rows: total,
                num_computed_tokens: 0,
                block_table: t,
            })
            .collect();
        let mut caches = Vec::new();
        for _ in 0..layers {
            let (mut k8, mut ks) = (
                vec![0u8; shape.layer_len()],
                vec![0f32; q8_scales_len(&shape)],
            );
            let (mut v8, mut vs) = (
                vec![0i8; shape.layer_len()],
                vec![0f32; q8_scales_len(&shape)],
            );
            for (s, seq) in all.iter().enumerate() {
                let kr: Vec<f32> = (0..total).flat_map(|pos| row(s + pos)).collect();
                let vr: Vec<f32> = (0..total).flat_map(|pos| row(s + 2 * pos)).collect();
                debug_assert_eq!(kr.len(), total * kvd);
                let layer = Q8LayerMut {
                    k: &mut k8,
                    k_scales: &mut ks,
                    v: &mut v8,
                    v_scales: &mut vs,
                };
                write_kv_q8_batch(&pool, &shape, layer, std::slice::from_ref(seq), &kr, &vr);
            }
            caches.push((k8, ks, v8, vs));
        }
        for i in 0..20 * layers {
            let (k, ks, v, vs) = &caches[i % layers];
            let layer = Q8Layer {
                k,
                k_scales: ks,
                v,
                v_scales: vs,
            };
            let t = Instant::now();
            paged_attention_q8(&pool, &p, &shape, &q, layer, &batch, &mut out);
            times.push(t.elapsed().as_secs_f64());
        }
    } else {
        let caches: Vec<(Vec<f16>, Vec<f16>)> =
            (0..layers).map(|_| (k.clone(), v.clone())).collect();
        for i in 0..20 * layers {
            let (k, v) = &caches[i % layers];
            let t = Instant::now();
            paged_attention(&pool, &p, &shape, &q, k, v, &batch, &mut out);
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let bytes = (seqs * total * kvw * 2 * if q8 { 1 } else { 2 }) as f64;
    println!(
        "seqs {seqs} ctx {ctx} new {new}: {:.3} ms per layer call, {:.1} GB/s of K/V, {:.2} µs per query row",
        med * 1e3,
        bytes / med / 1e9,
        med * 1e6 / (seqs * new) as f64
    );
}
