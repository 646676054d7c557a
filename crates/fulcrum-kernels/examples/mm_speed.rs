//! Quick matmul throughput probe: `mm_speed TYPE N K M THREADS`.
use fulcrum_gguf::GgmlType;
use fulcrum_kernels::gemm::{matmul, MatmulScratch, PackedMatrix};
use fulcrum_kernels::quant::quantize_row;
use fulcrum_kernels::{WeightMatrix, WorkerPool};
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty: GgmlType = a[1].parse().unwrap();
    let (n, k, m, th): (usize, usize, usize, usize) = (
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
        a[4].parse().unwrap(),
        a[5].parse().unwrap(),
    );
    // Several matrices so the working set exceeds the caches, as in a model.
    let copies = (256 << 20) / (n * k / 2) + 1;
    let mut mats = Vec::new();
    for c in 0..copies {
        let mut bytes = Vec::new();
        for r in 0..n {
            let row: Vec<f32> = (0..k)
                .map(|i| (((i * 31 + r * 17 + c) % 97) as f32 - 48.0) / 50.0)
                .collect();
            bytes.extend(quantize_row(ty, &row));
        }
        mats.push(PackedMatrix::pack(
            &WeightMatrix::new(ty, n, k, &bytes).unwrap(),
        ));
    }
    let pool = WorkerPool::new(th);
    let x: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
    let mut y = vec![0f32; m * n];
    let mut s = MatmulScratch::default();
    let iters = (2000 / m).max(3);
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for it in 0..iters {
            matmul(&pool, &x, m, &mats[it % copies], &mut y, &mut s);
        }
        times.push(t.elapsed().as_secs_f64() / iters as f64);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let dt = times[times.len() / 2];
    let bytes = mats[0].num_bytes() as f64;
    println!(
        "{ty} n{n} k{k} m{m} t{th}: {:.1} us/call  {:.1} GB/s  {:.1} GOP/s",
        dt * 1e6,
        bytes / dt / 1e9,
        2.0 * (n * k * m) as f64 / dt / 1e9
    );
}
