//! Time of the 8-bit KV write for a step: `kvwrite_speed SEQS ROWS [THREADS]`.
use fulcrum_kernels::attention::{
    q8_scales_len, write_kv_q8_batch, AttentionSeq, KvShape, Q8LayerMut,
};
use fulcrum_kernels::WorkerPool;
use std::time::Instant;
fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (seqs, rows, threads) = (a[0], a[1], *a.get(2).unwrap_or(&2));
    let bs = 16;
    let per = (rows + 300).div_ceil(bs);
    let shape = KvShape {
        num_blocks: per * seqs,
        block_size: bs,
        num_kv_heads: 3,
        head_dim: 64,
    };
    let tables: Vec<Vec<u32>> = (0..seqs)
        .map(|s| (0..per).map(|i| (i * seqs + s) as u32).collect())
        .collect();
    let (mut k8, mut ks) = (
        vec![0u8; shape.layer_len()],
        vec![0f32; q8_scales_len(&shape)],
    );
    let (mut v8, mut vs) = (
        vec![0i8; shape.layer_len()],
        vec![0f32; q8_scales_len(&shape)],
    );
    let kvd = 192;
    let x: Vec<f32> = (0..seqs * rows * kvd)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.01)
        .collect();
    let all: Vec<AttentionSeq> = tables
        .iter()
        .enumerate()
        .map(|(s, t)| AttentionSeq {
            first_row: s * rows,
            num_rows: rows,
            num_computed_tokens: 200,
            block_table: t,
        })
        .collect();
    let pool = WorkerPool::new(threads);
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let layer = Q8LayerMut {
            k: &mut k8,
            k_scales: &mut ks,
            v: &mut v8,
            v_scales: &mut vs,
        };
        write_kv_q8_batch(&pool, &shape, layer, &all, &x, &x);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "seqs {seqs} rows {rows}: {:.1} us per layer write (median)",
        times[100] * 1e6
    );
}
