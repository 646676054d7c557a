//! The 8-bit cache against its float reference and the AVX-512 kernel against
//! the plain one, bit for bit.

use super::*;
#[cfg(target_arch = "x86_64")]
use crate::attention::Task;
use rand::{Rng, SeedableRng};

/// One layer's 8-bit cache; unwritten cells hold `fill` bytes and NaN
/// scales, so a kernel that lets them into a sum fails.
struct Cache {
    k: Vec<u8>,
    ks: Vec<f32>,
    v: Vec<i8>,
    vs: Vec<f32>,
}

impl Cache {
    fn new(shape: &KvShape, fill: u8) -> Cache {
        Cache {
            k: vec![fill; shape.layer_len()],
            ks: vec![f32::NAN; q8_scales_len(shape)],
            v: vec![fill as i8; shape.layer_len()],
            vs: vec![f32::NAN; q8_scales_len(shape)],
        }
    }

    fn layer(&self) -> Q8Layer<'_> {
        Q8Layer {
            k: &self.k,
            k_scales: &self.ks,
            v: &self.v,
            v_scales: &self.vs,
        }
    }

    fn write(&mut self, shape: &KvShape, seqs: &[AttentionSeq], k: &[f32], v: &[f32]) {
        let layer = Q8LayerMut {
            k: &mut self.k,
            k_scales: &mut self.ks,
            v: &mut self.v,
            v_scales: &mut self.vs,
        };
        write_kv_q8_batch(&WorkerPool::new(2), shape, layer, seqs, k, v);
    }
}

struct Case {
    p: AttentionParams,
    shape: KvShape,
    table: Vec<u32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    total: usize,
}

fn case(
    seed: u64,
    bs: usize,
    window: Option<usize>,
    heads: (usize, usize),
    hd: usize,
    total: usize,
) -> Case {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (num_heads, num_kv_heads) = heads;
    let shape = KvShape {
        num_blocks: total.div_ceil(bs) + 3,
        block_size: bs,
        num_kv_heads,
        head_dim: hd,
    };
    let mut table: Vec<u32> = (0..shape.num_blocks as u32).rev().collect();
    table.rotate_left(1);
    let mut gen = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.5..1.5)).collect() };
    Case {
        p: AttentionParams {
            num_heads,
            num_kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window,
        },
        table,
        q: gen(total * num_heads * hd),
        k: gen(total * num_kv_heads * hd),
        v: gen(total * num_kv_heads * hd),
        shape,
        total,
    }
}

/// The whole sequence through the cache `chunk` tokens per call.
fn run(c: &Case, pool: &WorkerPool, chunk: usize, fill: u8) -> Vec<f32> {
    let mut cache = Cache::new(&c.shape, fill);
    let (stride, kvd) = (
        c.p.num_heads * c.p.head_dim,
        c.p.num_kv_heads * c.p.head_dim,
    );
    let mut out = vec![0f32; c.total * stride];
    let mut start = 0;
    while start < c.total {
        let n = chunk.min(c.total - start);
        let seqs = [AttentionSeq {
            first_row: 0,
            num_rows: n,
            num_computed_tokens: start,
            block_table: &c.table,
        }];
        cache.write(
            &c.shape,
            &seqs,
            &c.k[start * kvd..(start + n) * kvd],
            &c.v[start * kvd..(start + n) * kvd],
        );
        let layer = cache.layer();
        let q = &c.q[start * stride..(start + n) * stride];
        paged_attention_q8(
            pool,
            &c.p,
            &c.shape,
            q,
            layer,
            &seqs,
            &mut out[start * stride..(start + n) * stride],
        );
        start += n;
    }
    out
}

/// Plain softmax attention in f64 over the unquantized inputs.
fn reference(c: &Case) -> Vec<f32> {
    let (hd, nh) = (c.p.head_dim, c.p.num_heads);
    let group = nh / c.p.num_kv_heads;
    let kvd = c.p.num_kv_heads * hd;
    let mut out = vec![0f32; c.total * nh * hd];
    for pos in 0..c.total {
        let lo = c.p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for h in 0..nh {
            let g = h / group;
            let q = &c.q[(pos * nh + h) * hd..][..hd];
            let s: Vec<f64> = (lo..=pos)
                .map(|j| {
                    let k = &c.k[j * kvd + g * hd..][..hd];
                    q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum::<f64>()
                        * f64::from(c.p.scale)
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let tot: f64 = e.iter().sum();
            for d in 0..hd {
                let val: f64 = (lo..=pos)
                    .zip(&e)
                    .map(|(j, w)| w * f64::from(c.v[j * kvd + g * hd + d]))
                    .sum();
                out[(pos * nh + h) * hd + d] = (val / tot) as f32;
            }
        }
    }
    out
}

#[test]
fn quantized_rows_round_trip_within_half_a_step() {
    let x: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0)
        .collect();
    let mut q = [0i8; 64];
    let s = quantize_i8(&x, |i, v| q[i] = v);
    assert!(q.iter().any(|&v| v.abs() == 127));
    for (a, &b) in x.iter().zip(&q) {
        assert!(
            (a - f32::from(b) * s).abs() <= s * 0.5 + 1e-6,
            "{a} vs {b}·{s}"
        );
    }
    // Ties go to even, as the SIMD conversions round.
    for i in -600..600 {
        let x = i as f32 * 0.25;
        assert_eq!(round_even(x), x.round_ties_even(), "{x}");
    }
    // An all-zero row: scale 0, bytes 0 (no division by zero).
    assert_eq!(quantize_i8(&[0.0; 8], |_, v| assert_eq!(v, 0)), 0.0);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn simd_row_quantizer_equals_portable() {
    if !crate::isa::Isa::Avx512.is_supported() {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut rows: Vec<Vec<f32>> = (0..200)
        .map(|i| {
            let mag = 10f32.powi(i % 9 - 4);
            (0..64).map(|_| rng.gen_range(-1.0f32..1.0) * mag).collect()
        })
        .collect();
    // Edge rows: zeros, ties at half steps, NaN, infinities, a scale so
    // small that its reciprocal overflows, huge values.
    rows.push(vec![0.0; 64]);
    rows.push((0..64).map(|i| (i as f32 - 32.0) * 0.5).collect());
    let mut r = rows[0].clone();
    r[3] = f32::NAN;
    rows.push(r);
    let mut r = rows[1].clone();
    (r[5], r[9]) = (f32::INFINITY, f32::NEG_INFINITY);
    rows.push(r);
    rows.push((0..64).map(|i| f32::from_bits(1 + i as u32)).collect());
    rows.push((0..64).map(|i| (i as f32 - 30.0) * 1e37).collect());
    for (i, x) in rows.iter().enumerate() {
        let (mut a, mut b) = ([0i8; 64], [0i8; 64]);
        let sa = quantize_i8(x, |d, v| a[d] = v);
        // SAFETY: checked above that the CPU supports AVX-512.
        let sb = unsafe { super::avx512::quantize_row_i8(x, &mut b) };
        assert_eq!((sa.to_bits(), a), (sb.to_bits(), b), "row {i}");
    }
}

#[test]
fn close_to_float_attention() {
    let pool = WorkerPool::new(2);
    for (seed, bs, window, heads, hd) in [
        (1, 16, None, (9, 3), 64),
        (2, 16, Some(20), (4, 1), 32),
        (3, 4, None, (4, 2), 8),
        (4, 32, Some(7), (6, 2), 16),
    ] {
        let c = case(seed, bs, window, heads, hd, 45);
        let want = reference(&c);
        let got = run(&c, &pool, 45, 0);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // 8-bit q and K (scores), 8-bit V, 16-bit weights.
        assert!(worst < 0.015, "seed {seed}: max error {worst}");
        assert!(worst > 0.0, "seed {seed}: suspiciously exact");
    }
}

#[test]
fn chunking_and_threads_are_bit_identical() {
    let c = case(5, 16, Some(11), (6, 2), 16, 50);
    let whole = run(&c, &WorkerPool::new(1), 50, 0);
    for chunk in [1, 3, 7, 16, 33] {
        let got = run(&c, &WorkerPool::new(2), chunk, 0x5A);
        assert!(
            got.iter()
                .zip(&whole)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "chunk {chunk}"
        );
    }
}

/// The SIMD path reproduces the portable arithmetic bit for bit, with
/// garbage bytes and NaN scales in every slot no position wrote.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_equals_portable() {
    if !crate::isa::Isa::Avx512.is_supported() {
        return;
    }
    for (seed, bs, window, heads, hd, total, num_computed_tokens) in [
        (10, 16, None, (9, 3), 64, 40, 0),
        (11, 16, Some(7), (4, 1), 32, 50, 10),
        (12, 32, Some(20), (4, 2), 64, 70, 60),
        (13, 16, None, (9, 3), 64, 45, 44),
        (14, 16, Some(20), (4, 1), 256, 70, 69),
        (15, 16, None, (2, 2), 16, 33, 32),
        (16, 16, None, (6, 3), 16, 20, 19),
        (17, 16, Some(5), (5, 1), 64, 30, 29),
        (18, 64, None, (6, 1), 32, 18, 17),
        (19, 16, None, (7, 1), 32, 50, 49),
        (20, 16, None, (8, 1), 128, 40, 39),
        (21, 16, None, (10, 1), 16, 40, 3),
        (22, 32, Some(9), (12, 2), 32, 37, 0),
        // Spans of several 256-position segments (integer sums flushed).
        (23, 16, None, (9, 3), 64, 600, 560),
        (24, 16, None, (4, 1), 32, 530, 500),
    ] {
        let c = case(seed, bs, window, heads, hd, total);
        let mut cache = Cache::new(&c.shape, 0xA7);
        let kvd = heads.1 * hd;
        let all = [AttentionSeq {
            first_row: 0,
            num_rows: total,
            num_computed_tokens: 0,
            block_table: &c.table,
        }];
        cache.write(&c.shape, &all, &c.k[..total * kvd], &c.v[..total * kvd]);
        let rows = total - num_computed_tokens;
        let seq = AttentionSeq {
            first_row: 0,
            num_rows: rows,
            num_computed_tokens,
            block_table: &c.table,
        };
        let q = &c.q[num_computed_tokens * heads.0 * hd..];
        let layer = cache.layer();
        for kv_head in 0..heads.1 {
            for r0 in (0..rows).step_by(16) {
                let task = Task {
                    p: &c.p,
                    shape: &c.shape,
                    q,
                    // SAFETY: read only.
                    kv: unsafe { layer.cells() },
                    s: &seq,
                    kv_head,
                    rows: r0..(r0 + 16).min(rows),
                };
                let (mut a, mut b) = (vec![0f32; q.len()], vec![0f32; q.len()]);
                portable::attend(&task, &mut Q8Scratch::default(), &mut a);
                // SAFETY: checked above that the CPU supports AVX-512.
                unsafe { super::avx512::attend(&task, &mut Q8Scratch::default(), &mut b) };
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "seed {seed} bs {bs} window {window:?} hd {hd} rows {r0}.."
                );
                assert!(a.iter().all(|x| x.is_finite()));
            }
        }
    }
}
