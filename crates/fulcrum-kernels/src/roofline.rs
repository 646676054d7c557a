//! Measures what this machine can do: memory read bandwidth (one thread and
//! all), and peak int8 dot-product and f32 fused multiply-add throughput, with
//! short micro-kernels. The kernel benchmarks report their speed as a
//! fraction of these figures, and `fulcrum roofline` prints them.

use std::time::Instant;

use crate::isa::Isa;
use crate::pool::WorkerPool;

/// The machine's measured limits (best of a few runs each).
#[derive(Clone, Copy, Debug)]
pub struct Roofline {
    pub isa: Isa,
    pub threads: usize,
    /// DRAM read bandwidth, bytes/s, one thread and all threads.
    pub mem_bw_1: f64,
    pub mem_bw_all: f64,
    /// int8 multiply-accumulate throughput in ops/s (a MAC counts 2), all threads.
    pub int8_ops: f64,
    /// f32 FMA throughput in flop/s (an FMA counts 2), all threads.
    pub f32_flops: f64,
}

impl Roofline {
    /// Runs the probes (about a second). `buffer_bytes` should exceed the caches
    /// (256 MiB or more).
    pub fn measure(pool: &WorkerPool, buffer_bytes: usize) -> Roofline {
        let words = buffer_bytes / 8;
        let buf: Vec<u64> = (0..words as u64).collect();
        let mem_bw_1 = best_of(3, || read_bandwidth(&WorkerPool::new(1), &buf));
        let mem_bw_all = best_of(3, || read_bandwidth(pool, &buf));
        let int8_ops = best_of(3, || compute_rate(pool, Probe::Int8));
        let f32_flops = best_of(3, || compute_rate(pool, Probe::F32));
        Roofline {
            isa: Isa::active(),
            threads: pool.num_threads(),
            mem_bw_1,
            mem_bw_all,
            int8_ops,
            f32_flops,
        }
    }
}

fn best_of(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..n).map(|_| f()).fold(0.0, f64::max)
}

/// Bytes per second reading `buf` once, split across the pool's threads.
fn read_bandwidth(pool: &WorkerPool, buf: &[u64]) -> f64 {
    let chunks = pool.num_threads() * 16;
    let per = buf.len().div_ceil(chunks);
    let sink = std::sync::atomic::AtomicU64::new(0);
    let t = Instant::now();
    pool.run(chunks, |i| {
        let part = &buf[(i * per).min(buf.len())..((i + 1) * per).min(buf.len())];
        // Eight independent sums so the loop is bound by loads, not adds.
        let mut acc = [0u64; 8];
        for c in part.chunks_exact(8) {
            for j in 0..8 {
                acc[j] = acc[j].wrapping_add(c[j]);
            }
        }
        sink.fetch_add(
            acc.iter().fold(0, |a, &b| a.wrapping_add(b)),
            std::sync::atomic::Ordering::Relaxed,
        );
    });
    let dt = t.elapsed().as_secs_f64();
    std::hint::black_box(sink.into_inner());
    std::mem::size_of_val(buf) as f64 / dt
}

#[derive(Clone, Copy)]
enum Probe {
    Int8,
    F32,
}

/// Operations per second of a register-only loop on every thread.
fn compute_rate(pool: &WorkerPool, probe: Probe) -> f64 {
    const ITERS: u64 = 2_000_000;
    let threads = pool.num_threads();
    let t = Instant::now();
    let ops_per_thread = pool_run_each(pool, |_| match probe {
        Probe::Int8 => int8_loop(ITERS),
        Probe::F32 => f32_loop(ITERS),
    });
    let dt = t.elapsed().as_secs_f64();
    ops_per_thread * threads as f64 / dt
}

/// Runs `f` once on each thread of the pool; returns its result (the op count).
fn pool_run_each(pool: &WorkerPool, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let out = std::sync::Mutex::new(0.0);
    pool.run(pool.num_threads(), |i| {
        let v = f(i);
        *out.lock().unwrap() = v;
    });
    out.into_inner().unwrap()
}

/// Returns the number of int8 ops (2 per multiply-accumulate) performed.
fn int8_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::active() == Isa::Avx512 {
        // SAFETY: AVX-512 VNNI is supported (the active ISA says so).
        return unsafe { x86::int8_avx512(iters) };
    }
    // Portable: 8 independent multiply-adds on i32 per iteration.
    let mut acc = [1i32; 8];
    for i in 0..iters {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = a.wrapping_add((i as i32 ^ j as i32).wrapping_mul(3));
        }
        std::hint::black_box(&mut acc);
    }
    (iters * 8 * 2) as f64
}

/// Returns the number of f32 flops (2 per FMA) performed.
fn f32_loop(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::active() >= Isa::Avx2 {
        // SAFETY: FMA (with AVX2, and AVX-512 when active) is supported.
        return unsafe { x86::f32_fma(iters, Isa::active() == Isa::Avx512) };
    }
    let mut acc = [1.0f32; 8];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
        std::hint::black_box(&mut acc);
    }
    (iters * 8 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 12 independent `vpdpbusd` chains, 64 MACs each, per iteration.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn int8_avx512(iters: u64) -> f64 {
        let a = _mm512_set1_epi8(3);
        let b = _mm512_set1_epi8(-2);
        let mut acc = [_mm512_setzero_si512(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_si512();
        for x in acc {
            s = _mm512_add_epi32(s, x);
        }
        std::hint::black_box(s);
        (iters * 12 * 64 * 2) as f64
    }

    /// 12 independent FMA chains per iteration (16 or 8 lanes).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn f32_fma(iters: u64, wide: bool) -> f64 {
        if wide {
            let m = _mm512_set1_ps(0.999_999);
            let c = _mm512_set1_ps(1e-7);
            let mut acc = [_mm512_set1_ps(1.0); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm512_fmadd_ps(*x, m, c);
                }
            }
            std::hint::black_box(acc);
            (iters * 12 * 16 * 2) as f64
        } else {
            let m = _mm256_set1_ps(0.999_999);
            let c = _mm256_set1_ps(1e-7);
            let mut acc = [_mm256_set1_ps(1.0); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm256_fmadd_ps(*x, m, c);
                }
            }
            std::hint::black_box(acc);
            (iters * 12 * 8 * 2) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_report_positive_rates() {
        let pool = WorkerPool::new(2);
        let r = Roofline {
            isa: Isa::active(),
            threads: 2,
            mem_bw_1: 0.0,
            mem_bw_all: 0.0,
            int8_ops: 0.0,
            f32_flops: 0.0,
        };
        assert!(read_bandwidth(&pool, &vec![1u64; 1 << 16]) > 0.0);
        assert!(compute_rate(&pool, Probe::Int8) > 0.0 && compute_rate(&pool, Probe::F32) > 0.0);
        assert_eq!(r.threads, 2);
    }
}
