//! Matrix-product benchmarks, per weight format: effective weight bandwidth
//! at m = 1 (single-token decode, bound by memory) and int8 throughput at
//! m = 64 and m = 512 (batched decode and prefill chunks, bound by compute),
//! each also printed as a fraction of this machine's measured roofline.
//!
//! `cargo bench -p fulcrum-kernels --bench matmul` (release build, 2 threads by
//! default; `FULCRUM_BENCH_THREADS` overrides).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fulcrum_gguf::GgmlType;
use fulcrum_kernels::gemm::{matmul, MatmulScratch, PackedMatrix};
use fulcrum_kernels::quant::quantize_row;
use fulcrum_kernels::roofline::Roofline;
use fulcrum_kernels::{WeightMatrix, WorkerPool};

const FORMATS: [GgmlType; 8] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Copies of a 2048 × 2048 matrix, enough that m = 1 streams from memory.
fn matrices(ty: GgmlType, copies: usize) -> Vec<PackedMatrix> {
    let (n, k) = (2048, 2048);
    (0..copies)
        .map(|c| {
            let mut bytes = Vec::new();
            for r in 0..n {
                let row: Vec<f32> = (0..k)
                    .map(|i| (((i * 31 + r * 17 + c * 7) % 97) as f32 - 48.0) / 50.0)
                    .collect();
                bytes.extend(quantize_row(ty, &row));
            }
            PackedMatrix::pack(&WeightMatrix::new(ty, n, k, &bytes).unwrap())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("FULCRUM_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let pool = WorkerPool::new(threads);
    let roof = Roofline::measure(&pool, 512 << 20);
    eprintln!(
        "roofline: {:.1} GB/s memory ({} threads), {:.0} GOP/s int8, isa {}",
        roof.mem_bw_all / 1e9,
        threads,
        roof.int8_ops / 1e9,
        roof.isa
    );
    let mut summary = Vec::new();
    for ty in FORMATS {
        let mats = matrices(ty, 48);
        let (n, k) = (mats[0].rows, mats[0].cols);
        let mut group = c.benchmark_group(format!("matmul/{ty}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(300));
        for m in [1usize, 64, 512] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
            let mut y = vec![0f32; m * n];
            let mut s = MatmulScratch::default();
            if m == 1 {
                group.throughput(Throughput::Bytes(mats[0].num_bytes() as u64));
            } else {
                group.throughput(Throughput::Elements((2 * m * n * k) as u64));
            }
            let mut i = 0;
            let mut best = f64::MAX;
            group.bench_with_input(BenchmarkId::from_parameter(format!("m{m}")), &m, |b, &m| {
                b.iter_custom(|iters| {
                    let t = std::time::Instant::now();
                    for _ in 0..iters {
                        matmul(&pool, &x, m, &mats[i % mats.len()], &mut y, &mut s);
                        i += 1;
                    }
                    let dt = t.elapsed();
                    best = best.min(dt.as_secs_f64() / iters as f64);
                    dt
                })
            });
            let line = if m == 1 {
                let bw = mats[0].num_bytes() as f64 / best;
                format!(
                    "{ty} m=1: {:.1} GB/s = {:.0}% of memory bandwidth",
                    bw / 1e9,
                    100.0 * bw / roof.mem_bw_all
                )
            } else {
                let ops = (2 * m * n * k) as f64 / best;
                format!(
                    "{ty} m={m}: {:.0} GOP/s = {:.0}% of int8 peak",
                    ops / 1e9,
                    100.0 * ops / roof.int8_ops
                )
            };
            summary.push(line);
        }
        group.finish();
    }
    eprintln!("\nbest run of each, against the measured roofline:");
    for l in summary {
        eprintln!("  {l}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
