//! Every kernel against a plain f64 reference and, bit for bit, against
//! the portable kernel; chunking, batching and thread counts leave results
//! unchanged.

use super::*;
use rand::{Rng, SeedableRng};

/// Plain attention over contiguous f16-rounded K/V, for one sequence.
fn reference(
    p: &AttentionParams,
    q: &[f32],
    k: &[Vec<f32>],
    v: &[Vec<f32>],
    num_computed_tokens: usize,
    num_rows: usize,
) -> Vec<f32> {
    let hd = p.head_dim;
    let group = p.num_heads / p.num_kv_heads;
    let mut out = vec![0f32; num_rows * p.num_heads * hd];
    for r in 0..num_rows {
        let pos = num_computed_tokens + r;
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for h in 0..p.num_heads {
            let g = h / group;
            let qv = &q[(r * p.num_heads + h) * hd..][..hd];
            let scores: Vec<f64> = (lo..=pos)
                .map(|j| {
                    qv.iter()
                        .zip(&k[j][g * hd..(g + 1) * hd])
                        .map(|(a, b)| (*a * *b) as f64)
                        .sum::<f64>()
                        * p.scale as f64
                })
                .collect();
            let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ws: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
            let tot: f64 = ws.iter().sum();
            for d in 0..hd {
                let val: f64 = (lo..=pos)
                    .zip(&ws)
                    .map(|(j, w)| w * v[j][g * hd + d] as f64)
                    .sum();
                out[(r * p.num_heads + h) * hd + d] = (val / tot) as f32;
            }
        }
    }
    out
}

fn rounded(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// Runs one sequence of `total` tokens through the paged kernel, `chunk`
/// tokens per call, with a shuffled block table; returns all rows' outputs.
fn run_paged(
    pool: &WorkerPool,
    p: &AttentionParams,
    bs: usize,
    q: &[f32],
    k: &[Vec<f32>],
    v: &[Vec<f32>],
    chunk: usize,
) -> Vec<f32> {
    let total = k.len();
    let nblocks = total.div_ceil(bs) + 3;
    let shape = KvShape {
        num_blocks: nblocks,
        block_size: bs,
        num_kv_heads: p.num_kv_heads,
        head_dim: p.head_dim,
    };
    let mut table: Vec<u32> = (0..nblocks as u32).rev().collect(); // non-contiguous
    table.rotate_left(1);
    let mut kc = vec![f16::ZERO; shape.layer_len()];
    let mut vc = vec![f16::ZERO; shape.layer_len()];
    let stride = p.num_heads * p.head_dim;
    let mut out = vec![0f32; total * stride];
    let mut start = 0;
    while start < total {
        let n = chunk.min(total - start);
        for pos in start..start + n {
            write_kv(&shape, &mut kc, &mut vc, &table, pos, &k[pos], &v[pos]);
        }
        let seqs = [AttentionSeq {
            first_row: 0,
            num_rows: n,
            num_computed_tokens: start,
            block_table: &table,
        }];
        let mut o = vec![0f32; n * stride];
        paged_attention(
            pool,
            p,
            &shape,
            &q[start * stride..(start + n) * stride],
            &kc,
            &vc,
            &seqs,
            &mut o,
        );
        out[start * stride..(start + n) * stride].copy_from_slice(&o);
        start += n;
    }
    out
}

fn random_case(
    seed: u64,
    total: usize,
    p: &AttentionParams,
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kvw = p.num_kv_heads * p.head_dim;
    let q = (0..total * p.num_heads * p.head_dim)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let k = (0..total)
        .map(|_| {
            (0..kvw)
                .map(|_| rounded(rng.gen_range(-1.0..1.0)))
                .collect()
        })
        .collect();
    let v = (0..total)
        .map(|_| {
            (0..kvw)
                .map(|_| rounded(rng.gen_range(-1.0..1.0)))
                .collect()
        })
        .collect();
    (q, k, v)
}

#[test]
fn matches_reference_gqa_and_window() {
    let pool = WorkerPool::new(2);
    for (window, num_heads, num_kv_heads, hd) in [
        (None, 4, 2, 8),
        (Some(5), 4, 1, 16),
        (None, 3, 3, 4),
        (Some(17), 6, 2, 32),
    ] {
        let p = AttentionParams {
            num_heads,
            num_kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
        };
        let total = 37;
        let (q, k, v) = random_case(7, total, &p);
        let want = reference(&p, &q, &k, &v, 0, total);
        let got = run_paged(&pool, &p, 4, &q, &k, &v, total);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // q and the softmax weights are rounded to f16 (as llama.cpp does).
            assert!(
                (a - b).abs() < 2e-3,
                "window {window:?} elem {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn rows_per_task_keeps_threads_busy_and_stays_in_bounds() {
    // A decode step (one row per sequence) and short prompts: 16.
    assert_eq!(rows_per_task(64, 3, 2), ROWS_PER_TASK);
    // A 1 024-token prompt chunk, 3 KV heads, 2 threads: 8 tasks per
    // thread would be 192 rows each; capped.
    assert_eq!(rows_per_task(1024, 3, 2), MAX_ROWS_PER_TASK);
    // In between: multiples of 16 that leave ~8 tasks per thread.
    let r = rows_per_task(600, 2, 2);
    assert_eq!(r % 16, 0);
    assert!((ROWS_PER_TASK..=MAX_ROWS_PER_TASK).contains(&r));
    let tasks = 600usize.div_ceil(r) * 2;
    assert!(tasks >= 8 * 2, "{r} rows per task make only {tasks} tasks");
    assert_eq!(rows_per_task(10_000, 1, 0), MAX_ROWS_PER_TASK);
}

/// Long prompts take more rows per task than short ones (see
/// [`rows_per_task`]); the rows' results must not depend on that.
#[test]
fn rows_per_task_does_not_change_results() {
    let p = AttentionParams {
        num_heads: 6,
        num_kv_heads: 2,
        head_dim: 16,
        scale: 0.25,
        window: None,
    };
    let total = 300;
    let (q, k, v) = random_case(11, total, &p);
    // One thread: 300·2/8 → 64 rows per task; two: 32; chunks of 16: 16.
    let one = run_paged(&WorkerPool::new(1), &p, 16, &q, &k, &v, total);
    let two = run_paged(&WorkerPool::new(2), &p, 16, &q, &k, &v, total);
    let small = run_paged(&WorkerPool::new(2), &p, 16, &q, &k, &v, 16);
    for other in [&two, &small] {
        assert!(one
            .iter()
            .zip(other)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn chunking_and_threads_are_bit_identical() {
    let p = AttentionParams {
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        scale: 0.25,
        window: Some(11),
    };
    let (q, k, v) = random_case(3, 45, &p);
    let one = WorkerPool::new(1);
    let two = WorkerPool::new(2);
    let whole = run_paged(&one, &p, 8, &q, &k, &v, 45);
    for chunk in [1, 3, 7, 16, 45] {
        let got = run_paged(&two, &p, 8, &q, &k, &v, chunk);
        assert!(
            got.iter()
                .zip(&whole)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "chunk {chunk}"
        );
    }
}

/// The SIMD path reproduces the portable arithmetic bit for bit.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_and_avx2_equal_portable() {
    let (has_avx512, has_avx2) = (
        crate::isa::Isa::Avx512.is_supported(),
        crate::isa::Isa::Avx2.is_supported(),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for (bs, window, num_heads, num_kv_heads, hd, total, num_computed_tokens) in [
        (16usize, None, 9usize, 3usize, 64usize, 40usize, 0usize),
        (16, Some(7), 4, 1, 32, 50, 10),
        (7, None, 2, 1, 16, 23, 3),
        (32, Some(20), 4, 2, 64, 70, 60),
        // Single rows (decode steps) take the direct path.
        (16, None, 9, 3, 64, 45, 44),
        (16, Some(20), 4, 1, 256, 70, 69),
        (16, None, 4, 1, 256, 17, 16),
        // Every group size the direct path specializes for.
        (16, None, 2, 2, 16, 33, 32),
        (16, None, 6, 3, 16, 20, 19),
        (16, Some(5), 5, 1, 64, 30, 29),
        (16, None, 6, 1, 32, 18, 17),
        (16, None, 7, 1, 32, 50, 49),
        (16, None, 8, 1, 32, 40, 39),
        // Groups past 8 heads: the general path takes them 8 at a time.
        (16, None, 10, 1, 16, 40, 3),
        (16, Some(9), 12, 2, 32, 37, 0),
        // Long spans (hundreds of positions), odd row counts, windows.
        (16, None, 9, 3, 64, 600, 563),
        (16, Some(300), 4, 1, 32, 700, 651),
        (16, None, 2, 2, 16, 530, 500),
        // Past one value tile (1 024 positions), with whole prompts in
        // tasks of up to 128 rows: several row blocks, partial groups.
        (16, None, 9, 3, 64, 1300, 1090),
        (16, Some(700), 6, 2, 32, 1250, 1150),
        (32, None, 4, 4, 16, 1100, 1000),
    ] {
        let p = AttentionParams {
            num_heads,
            num_kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
        };
        let shape = KvShape {
            num_blocks: total.div_ceil(bs) + 2,
            block_size: bs,
            num_kv_heads,
            head_dim: hd,
        };
        let mut table: Vec<u32> = (0..shape.num_blocks as u32).collect();
        table.reverse();
        // Slots no position was written to hold NaN: a kernel that lets
        // them into a sum (even times a zero weight) fails.
        let mut kc = vec![f16::NAN; shape.layer_len()];
        let mut vc = vec![f16::NAN; shape.layer_len()];
        for pos in 0..total {
            let kr: Vec<f32> = (0..num_kv_heads * hd)
                .map(|_| rng.gen_range(-2.0..2.0))
                .collect();
            let vr: Vec<f32> = (0..num_kv_heads * hd)
                .map(|_| rng.gen_range(-2.0..2.0))
                .collect();
            write_kv(&shape, &mut kc, &mut vc, &table, pos, &kr, &vr);
        }
        let rows = total - num_computed_tokens;
        let q: Vec<f32> = (0..rows * num_heads * hd)
            .map(|_| rng.gen_range(-2.0..2.0))
            .collect();
        let seq = AttentionSeq {
            first_row: 0,
            num_rows: rows,
            num_computed_tokens,
            block_table: &table,
        };
        // Tasks of the fewest rows, of an odd count, and of the most.
        for (kv_head, task_rows) in
            (0..num_kv_heads).flat_map(|h| [ROWS_PER_TASK, 37, MAX_ROWS_PER_TASK].map(|n| (h, n)))
        {
            for r0 in (0..rows).step_by(task_rows) {
                let r1 = (r0 + task_rows).min(rows);
                let task = Task {
                    p: &p,
                    shape: &shape,
                    q: &q,
                    // SAFETY: read only.
                    kv: unsafe {
                        F16Kv {
                            k: KvSlice::from_ref(&kc),
                            v: KvSlice::from_ref(&vc),
                        }
                    },
                    s: &seq,
                    kv_head,
                    rows: r0..r1,
                };
                let mut a = vec![0f32; q.len()];
                portable::attend(&task, &mut Vec::new(), &mut a);
                let same = |b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                if has_avx512 {
                    let mut b = vec![0f32; q.len()];
                    // SAFETY: checked that the CPU supports AVX-512.
                    unsafe { avx512::attend(&task, &mut Vec::new(), &mut b) };
                    assert!(
                        same(&b),
                        "avx512: bs {bs} window {window:?} hd {hd} rows {r0}..{r1}"
                    );
                }
                if has_avx2 {
                    let mut c = vec![0f32; q.len()];
                    // SAFETY: checked that the CPU supports AVX2 (with FMA, F16C).
                    unsafe { avx2::attend(&task, &mut Vec::new(), &mut c) };
                    assert!(
                        same(&c),
                        "avx2: bs {bs} window {window:?} hd {hd} rows {r0}..{r1}"
                    );
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn tree_network_equals_sixteen_trees() {
    if !crate::isa::Isa::Avx512.is_supported() {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..100 {
        let vals: Vec<[f32; 16]> = (0..16)
            .map(|_| {
                std::array::from_fn(|_| {
                    rng.gen_range(-1e3..1e3f32) * rng.gen_range(0.0..1.0f32).powi(8)
                })
            })
            .collect();
        // SAFETY: AVX-512 checked above.
        let got: [f32; 16] = unsafe {
            use std::arch::x86_64::*;
            let v: [__m512; 16] = std::array::from_fn(|k| _mm512_loadu_ps(vals[k].as_ptr()));
            let mut out = [0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), avx512::tree16x16(&v));
            out
        };
        for k in 0..16 {
            assert_eq!(
                got[k].to_bits(),
                portable::tree16(&vals[k]).to_bits(),
                "key {k}"
            );
        }
    }
}

#[test]
fn batched_kv_writes_equal_row_by_row() {
    let shape = KvShape {
        num_blocks: 9,
        block_size: 4,
        num_kv_heads: 3,
        head_dim: 8,
    };
    let kvd = shape.num_kv_heads * shape.head_dim;
    let tables: [Vec<u32>; 3] = [vec![7, 2, 5], vec![0, 8], vec![4, 1, 3, 6]];
    // (num_computed_tokens, rows): a prefill chunk, a decode row, a chunk across blocks.
    let spans = [(0usize, 9usize), (5, 1), (3, 10)];
    let mut seqs = Vec::new();
    let mut first_row = 0;
    for (table, &(num_computed_tokens, num_rows)) in tables.iter().zip(&spans) {
        seqs.push(AttentionSeq {
            first_row,
            num_rows,
            num_computed_tokens,
            block_table: table,
        });
        first_row += num_rows;
    }
    let k: Vec<f32> = (0..first_row * kvd).map(|i| i as f32 * 0.25).collect();
    let v: Vec<f32> = (0..first_row * kvd).map(|i| -(i as f32) * 0.5).collect();
    let (mut k1, mut v1) = (
        vec![f16::NAN; shape.layer_len()],
        vec![f16::NAN; shape.layer_len()],
    );
    let (mut k2, mut v2) = (k1.clone(), v1.clone());
    for s in &seqs {
        for r in 0..s.num_rows {
            let t = s.first_row + r;
            write_kv(
                &shape,
                &mut k1,
                &mut v1,
                s.block_table,
                s.num_computed_tokens + r,
                &k[t * kvd..(t + 1) * kvd],
                &v[t * kvd..(t + 1) * kvd],
            );
        }
    }
    write_kv_batch(&WorkerPool::new(2), &shape, &mut k2, &mut v2, &seqs, &k, &v);
    let bits = |x: &[f16]| x.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&k1), bits(&k2));
    assert_eq!(bits(&v1), bits(&v2));
    assert!(k2.iter().filter(|h| !h.is_nan()).count() == first_row * kvd);
}

#[test]
fn ragged_batch_equals_separate_calls() {
    let pool = WorkerPool::new(2);
    let p = AttentionParams {
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 8,
        scale: 0.3,
        window: None,
    };
    let bs = 4;
    let shape = KvShape {
        num_blocks: 20,
        block_size: bs,
        num_kv_heads: 1,
        head_dim: 8,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut kc = vec![f16::ZERO; shape.layer_len()];
    let mut vc = vec![f16::ZERO; shape.layer_len()];
    // seq A: 9 cached tokens + 1 decode; seq B: a 6-token prefill chunk after 2 cached.
    let ta: Vec<u32> = vec![5, 2, 9];
    let tb: Vec<u32> = vec![0, 7];
    for (table, n) in [(&ta, 10usize), (&tb, 8)] {
        for pos in 0..n {
            let kr: Vec<f32> = (0..8).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let vr: Vec<f32> = (0..8).map(|_| rng.gen_range(-1.0..1.0)).collect();
            write_kv(&shape, &mut kc, &mut vc, table, pos, &kr, &vr);
        }
    }
    let q: Vec<f32> = (0..7 * 16).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let seqs = [
        AttentionSeq {
            first_row: 0,
            num_rows: 1,
            num_computed_tokens: 9,
            block_table: &ta,
        },
        AttentionSeq {
            first_row: 1,
            num_rows: 6,
            num_computed_tokens: 2,
            block_table: &tb,
        },
    ];
    let mut both = vec![0f32; 7 * 16];
    paged_attention(&pool, &p, &shape, &q, &kc, &vc, &seqs, &mut both);
    let mut a = vec![0f32; 16];
    paged_attention(
        &pool,
        &p,
        &shape,
        &q[..16],
        &kc,
        &vc,
        &[AttentionSeq {
            first_row: 0,
            ..seqs[0]
        }],
        &mut a,
    );
    let mut b = vec![0f32; 6 * 16];
    paged_attention(
        &pool,
        &p,
        &shape,
        &q[16..],
        &kc,
        &vc,
        &[AttentionSeq {
            first_row: 0,
            ..seqs[1]
        }],
        &mut b,
    );
    assert_eq!(&both[..16], &a[..]);
    assert_eq!(&both[16..], &b[..]);
}
