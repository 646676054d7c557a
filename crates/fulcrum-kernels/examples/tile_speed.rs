//! The quantized product alone, activations quantized once and every
//! operand cache-resident: `tile_speed TYPE N K M THREADS` prints the
//! median time per call and GOP/s — the kernel's own speed, without the
//! memory traffic and quantization `mm_speed` includes. `COLD=N` cycles
//! through N copies of the matrix instead (N = 200: 110 MB for 1536 × 576
//! Q4_1, so weights come from memory as in a model's decode step).
use fulcrum_gguf::GgmlType;
use fulcrum_kernels::gemm::{matmul_quantized, ActScheme, PackedMatrix, QuantizedActivations};
use fulcrum_kernels::quant::quantize_row;
use fulcrum_kernels::{WeightMatrix, WorkerPool};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty: GgmlType = a[1].parse().expect("type");
    let num = |i: usize| -> usize { a[i].parse().expect("number") };
    let (n, k, m, th) = (num(2), num(3), num(4), num(5));
    let mut bytes = Vec::new();
    for r in 0..n {
        let row: Vec<f32> = (0..k)
            .map(|i| (((i * 31 + r * 17) % 97) as f32 - 48.0) / 50.0)
            .collect();
        bytes.extend(quantize_row(ty, &row));
    }
    let w0 = PackedMatrix::pack(&WeightMatrix::new(ty, n, k, &bytes).expect("matrix"));
    let copies: usize = std::env::var("COLD").map_or(1, |s| s.parse().expect("COLD: a count"));
    let ws: Vec<PackedMatrix> = (0..copies).map(|_| w0.clone()).collect();
    let w = &ws[0];
    let pool = WorkerPool::new(th);
    let x: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
    let mut acts = QuantizedActivations::default();
    acts.quantize(&pool, &x, m, k, ActScheme::for_matrix(w));
    let mut y = vec![0f32; m * n];
    let iters = (200_000_000 / (n * k * m)).max(3) * copies.max(1);
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for i in 0..iters {
            matmul_quantized(&pool, &acts, &ws[i % copies], &mut y);
        }
        times.push(t.elapsed().as_secs_f64() / iters as f64);
    }
    times.sort_by(f64::total_cmp);
    let dt = times[times.len() / 2];
    println!(
        "{ty} n{n} k{k} m{m} t{th}: {:.1} us/call  {:.1} GOP/s",
        dt * 1e6,
        2.0 * (n * k * m) as f64 / dt / 1e9
    );
}
