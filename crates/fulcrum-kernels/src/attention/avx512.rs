//! AVX-512 attention: the arithmetic of `portable.rs`, 16 lanes at a time.
//!
//! The task's keys are widened to f32 once (`[position][dim]`) and its values
//! once, transposed (`[dim][position]`, positions from a multiple of 16).
//! A score is `head_dim/16` fused multiply-adds and one tree reduction; an
//! output dimension is one fused multiply-add per 16 visible positions and
//! one tree reduction.

use std::arch::x86_64::*;

use super::{head_passes, visible_lanes, widen_task_kv, Task};
use crate::const_width::const_width;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn exp16(x: __m512) -> __m512 {
    let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
    let r = c(0x4b40_0000);
    let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(j, n);
    if big == 0 {
        return res;
    }
    let nonpos = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
    let alt = _mm512_mask_blend_ps(nonpos, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
    _mm512_mask_blend_ps(big, res, alt)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn tree16(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
}

/// Lane `k` of the result = `op` over all 16 lanes of `v[k]`, by a
/// transposing network: pairs `i, i+8`, then `i, i+4`, `i, i+2`, `0, 1` of
/// every vector, in 2.9 instructions per vector instead of 8. With `add`
/// these are exactly [`tree16`]'s additions ([`tree16x16`]); the activation
/// quantizer uses it for maxima and integer sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn reduce16x16(v: &[__m512; 16], op: impl Fn(__m512, __m512) -> __m512) -> __m512 {
    // Pairs (2j, 2j+1): [lanes 0-7 op 8-15 of 2j | same of 2j+1].
    let b: [__m512; 8] = std::array::from_fn(|j| {
        let (x, y) = (v[2 * j], v[2 * j + 1]);
        op(
            _mm512_shuffle_f32x4::<0b0100_0100>(x, y),
            _mm512_shuffle_f32x4::<0b1110_1110>(x, y),
        )
    });
    // Quads: 128-bit lane t holds vector 4m+t's four partial results.
    let c: [__m512; 4] = std::array::from_fn(|m| {
        let (x, y) = (b[2 * m], b[2 * m + 1]);
        op(
            _mm512_shuffle_f32x4::<0b1000_1000>(x, y),
            _mm512_shuffle_f32x4::<0b1101_1101>(x, y),
        )
    });
    // Lane j: [vector 4(2n)+j: two partials, vector 4(2n+1)+j: two partials].
    let d: [__m512; 2] = std::array::from_fn(|n| {
        let (x, y) = (c[2 * n], c[2 * n + 1]);
        op(
            _mm512_shuffle_ps::<0x44>(x, y),
            _mm512_shuffle_ps::<0xEE>(x, y),
        )
    });
    // Element 4j + t is vector j + 4t.
    let e = op(
        _mm512_shuffle_ps::<0x88>(d[0], d[1]),
        _mm512_shuffle_ps::<0xDD>(d[0], d[1]),
    );
    let idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    _mm512_permutexvar_ps(idx, e)
}

/// The [`tree16`] sums of 16 vectors at once, lane `k` = `tree16(v[k])`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn tree16x16(v: &[__m512; 16]) -> __m512 {
    reduce16x16(v, |a, b| _mm512_add_ps(a, b))
}

/// `dst = f32(f16(src))`, as llama.cpp rounds q to the keys' precision;
/// `hd`-long slices (a multiple of 16).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn round_to_f16(dst: &mut [f32], src: &[f32]) {
    for (d, chunk) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
        // SAFETY: 16 floats each.
        unsafe {
            let h16 = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_loadu_ps(chunk.as_ptr()),
            );
            _mm512_storeu_ps(d.as_mut_ptr(), _mm512_cvtph_ps(h16));
        }
    }
}

/// Turns a row of scores (a multiple of 16 long; invisible positions -inf)
/// into attention weights: `exp(score - max)` summed per 16 in f64, then
/// normalized and rounded to f16 as llama.cpp rounds its weights.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn softmax_to_f16(row: &mut [f32], max: f32) {
    let m = _mm512_set1_ps(max);
    let mut total = 0f64;
    for chunk in row.chunks_exact_mut(16) {
        // SAFETY: a 16-element chunk.
        unsafe {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(chunk.as_ptr()), m));
            _mm512_storeu_ps(chunk.as_mut_ptr(), e);
            total += f64::from(tree16(e));
        }
    }
    let inv = _mm512_set1_ps((1.0 / total) as f32);
    for chunk in row.chunks_exact_mut(16) {
        // SAFETY: a 16-element chunk.
        unsafe {
            let w = _mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), inv);
            let h16 = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(w);
            _mm512_storeu_ps(chunk.as_mut_ptr(), _mm512_cvtph_ps(h16));
        }
    }
}

/// Queries handled together by the single-row path.
const MAX_DIRECT: usize = 8;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ, FMA and F16C; `head_dim` must be
/// a multiple of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) unsafe fn attend(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    if t.rows.len() == 1 && t.shape.block_size == 16 && t.num_queries() <= MAX_DIRECT {
        // SAFETY: same contract.
        return unsafe { attend_one_row(t, buf, out) };
    }
    let p = t.p;
    let hd = p.head_dim;
    let (base, span) = (t.base(), t.span());
    let group = p.num_heads / p.num_kv_heads;
    let nq = group.min(8);
    let rb = row_block(nq, hd);
    // [rb*nq*row] scores | [span*hd] keys (f32, by position) |
    // [hd*row] values (f32, by dim) | [rb*nq*hd] q | [rb*nq*hd*16] value sums.
    // Rows of scores and of values are `row` floats apart: `span` padded to an
    // odd number of cache lines, so a tile's rows spread over the L1's sets
    // (at 4 000 positions they were 16 KB apart, all in the same few sets).
    let row = span + 16 * (1 - span / 16 % 2);
    // (Value passes take rows in groups of up to MAX_ROW_GROUP: room for a
    // last group that runs past the block.)
    let rows_room = rb + MAX_ROW_GROUP - 1;
    let need = rows_room * nq * row + span * hd + hd * row + rows_room * nq * hd * 17;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(rows_room * nq * row);
    let (keys, rest) = rest.split_at_mut(span * hd);
    let (vals, rest) = rest.split_at_mut(hd * row);
    let (qv, rest) = rest.split_at_mut(rows_room * nq * hd);
    let sums = &mut rest[..rows_room * nq * hd * 16];
    // Widen the task's keys and values once, 16 at a time.
    widen_task_kv(t, keys, vals, row, |src, dst| {
        for (s, d) in src.chunks(16).zip(dst.chunks_mut(16)) {
            let k = s.len();
            let mask: __mmask16 = if k == 16 { 0xFFFF } else { (1u16 << k) - 1 };
            // SAFETY: `k` elements in both chunks; lanes past them are masked.
            unsafe {
                let h = _mm256_maskz_loadu_epi16(mask, s.as_ptr().cast());
                _mm512_mask_storeu_ps(d.as_mut_ptr(), mask, _mm512_cvtph_ps(h));
            }
        }
    });
    let mut pass = BlockPass {
        t,
        keys,
        vals,
        scores,
        qv,
        sums,
        span,
        row,
        base,
        rb,
    };
    for (g0, n) in head_passes(group) {
        // SAFETY (every width): the buffers were sized above; same contract.
        unsafe {
            const_width!(n, NQ => pass.run::<
                NQ,
                { score_keys(NQ) },
                { value_rows(NQ) },
                { value_dims(NQ) },
            >(g0, out))
        }
    }
}

/// Keys a [`BlockPass`] loads together for `nq` query heads (`SL`): each
/// key load serves every head; with fewer heads, more keys are in flight.
const fn score_keys(nq: usize) -> usize {
    match nq {
        1 => 16,
        2 | 3 => 8,
        4 | 5 => 4,
        _ => 2,
    }
}

/// Rows a [`BlockPass`]'s value pass takes together for `nq` query heads
/// (`RQ`, at most [`MAX_ROW_GROUP`]).
const fn value_rows(nq: usize) -> usize {
    match nq {
        1 => 4,
        2 | 3 => 2,
        _ => 1,
    }
}

/// Output dimensions a [`BlockPass`]'s value pass accumulates together for
/// `nq` query heads (`DG`).
const fn value_dims(nq: usize) -> usize {
    match nq {
        1..=5 => 4,
        _ => 2,
    }
}

/// Query rows a [`BlockPass`] takes together: enough that each key chunk and
/// value tile, once in L1, serves several rows, few enough that the block's
/// value sums (`rows · heads · head_dim` vectors) stay in L2. Before, each
/// row swept the task's widened keys and values alone: 2 MB at 4 000
/// positions, more than a core's L2, so every row streamed them from L3.
fn row_block(nq: usize, hd: usize) -> usize {
    (1536 / (nq * hd)).clamp(1, MAX_ROW_BLOCK)
}

/// Most rows in a block (a block keeps one running maximum per query).
const MAX_ROW_BLOCK: usize = 16;

/// Most rows a value pass accumulates together (`RQ`).
const MAX_ROW_GROUP: usize = 4;

/// Chunks of 16 positions in one value tile: 1 024 positions, whose values
/// (256 KB of f32 at 64 dimensions) every row group of the block multiplies
/// from L2 before the next tile, while the group's weights for the tile
/// (24 KB for 6 queries) stay in L1. Output chains are parked in memory only
/// between tiles, once per 1 024 positions.
const TILE_CHUNKS: usize = 64;

/// The general path: a block of query rows at a time (see [`row_block`]),
/// `NQ` query heads of the group together.
///
/// Scores go chunk by chunk over the block's positions: the chunk's 16
/// widened keys are loaded by every row that sees them while they are in
/// L1, each key load shared by the `NQ` heads (`SL` keys at a time). A score
/// is the 16-lane chain of fused multiply-adds over the dimensions, reduced
/// by [`tree16x16`]. Values go tile by tile ([`TILE_CHUNKS`]), rows in
/// groups of `RQ`: `DG` output dimensions of the group's `RQ · NQ` queries
/// are accumulated in registers over the tile's chunks (each value load
/// serves every query, each weight load `DG` dimensions), and parked in
/// `sums` between tiles. Each chain runs over the chunks in position order
/// and is reduced by [`tree16x16`] at the end — the arithmetic `portable.rs`
/// states. (A group's rows see nearly the same chunks; where a row sees
/// fewer, its extra chunks add zero weights times finite values, which leave
/// the sums' bits unchanged.)
struct BlockPass<'a> {
    t: &'a Task<'a>,
    keys: &'a [f32],
    vals: &'a [f32],
    scores: &'a mut [f32],
    qv: &'a mut [f32],
    sums: &'a mut [f32],
    span: usize,
    /// Floats between rows of `scores` and of `vals` (`span`, padded).
    row: usize,
    base: usize,
    rb: usize,
}

impl BlockPass<'_> {
    /// Heads `g0..g0 + NQ` of the group, for all the task's rows.
    ///
    /// # Safety
    /// As [`attend`]; the group has at least `g0 + NQ` heads; the buffers
    /// hold what [`attend`] sizes for `rb` rows of `NQ` queries; `SL` divides
    /// 16, `DG` divides `head_dim`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn run<const NQ: usize, const SL: usize, const RQ: usize, const DG: usize>(
        &mut self,
        g0: usize,
        out: &mut [f32],
    ) {
        let t = self.t;
        let rows = t.rows.clone();
        let mut r0 = rows.start;
        while r0 < rows.end {
            let r1 = (r0 + self.rb).min(rows.end);
            // SAFETY: same contract, rows r0..r1 (at most `rb`).
            unsafe { self.block::<NQ, SL, RQ, DG>(g0, r0..r1, out) };
            r0 = r1;
        }
    }

    /// Rows `rows` (at most `rb`), heads `g0..g0 + NQ`.
    ///
    /// # Safety
    /// As [`BlockPass::run`].
    #[allow(clippy::needless_range_loop)] // indices run over several queries' accumulators
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn block<const NQ: usize, const SL: usize, const RQ: usize, const DG: usize>(
        &mut self,
        g0: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let t = self.t;
        let (p, span, rs, base) = (t.p, self.span, self.row, self.base);
        let hd = p.head_dim;
        let stride = p.num_heads * hd;
        let scale_v = _mm512_set1_ps(p.scale);
        let (keys, vals) = (self.keys, self.vals);
        let group = p.num_heads / p.num_kv_heads;
        let head = |gi: usize| t.kv_head * group + g0 + gi;
        let nr = rows.len();
        // Query `(row i of the block, head gi)` is number `i·NQ + gi`.
        for (i, r) in rows.clone().enumerate() {
            for gi in 0..NQ {
                let src = &t.q[(t.s.first_row + r) * stride + head(gi) * hd..][..hd];
                let at = (i * NQ + gi) * hd;
                round_to_f16(&mut self.qv[at..at + hd], src);
            }
        }
        let qv = &*self.qv;
        // Row i sees chunks c0[i]..c1[i] of the score rows.
        let bounds = |i: usize| {
            let r = rows.start + i;
            let (lo, hi) = (t.lo_of(r), t.pos_of(r));
            (lo, hi, (lo - base) / 16, (hi - base) / 16 + 1)
        };
        // Rows later in the block see later positions: the first row's first
        // chunk and the last row's last one bound the block.
        let (first_chunk, end_chunk) = (bounds(0).2, bounds(nr - 1).3);
        // The value pass takes rows in groups of RQ; a last group's rows past
        // the block get zero weights.
        let nr_room = nr.div_ceil(RQ) * RQ;
        let scores = &mut self.scores[..nr_room * NQ * rs];
        scores[..nr * NQ * rs].fill(f32::NEG_INFINITY);
        scores[nr * NQ * rs..].fill(0.0);
        debug_assert!(nr <= MAX_ROW_BLOCK && RQ <= MAX_ROW_GROUP);
        let mut maxv = [[_mm512_set1_ps(f32::NEG_INFINITY); NQ]; MAX_ROW_BLOCK];
        for chunk in first_chunk..end_chunk {
            let first = base + 16 * chunk;
            for i in 0..nr {
                let (lo, hi, c0, c1) = bounds(i);
                if chunk < c0 || chunk >= c1 {
                    continue;
                }
                // Lane l of dots[gi][k] = key k's chain of fused
                // multiply-adds over dimensions l, l+16, …; each key load
                // serves the NQ heads, SL keys at a time.
                let mut dots = [[_mm512_setzero_ps(); 16]; NQ];
                for s0 in (0..16).step_by(SL) {
                    let mut acc = [[_mm512_setzero_ps(); SL]; NQ];
                    for cc in (0..hd).step_by(16) {
                        // SAFETY: the chunk's 16 keys and the row's queries hold `hd` floats each.
                        unsafe {
                            let q: [__m512; NQ] = std::array::from_fn(|gi| {
                                _mm512_loadu_ps(qv.as_ptr().add((i * NQ + gi) * hd + cc))
                            });
                            for k in 0..SL {
                                let kv = _mm512_loadu_ps(
                                    keys.as_ptr().add((16 * chunk + s0 + k) * hd + cc),
                                );
                                for gi in 0..NQ {
                                    acc[gi][k] = _mm512_fmadd_ps(kv, q[gi], acc[gi][k]);
                                }
                            }
                        }
                    }
                    for gi in 0..NQ {
                        dots[gi][s0..s0 + SL].copy_from_slice(&acc[gi]);
                    }
                }
                let vis = visible_lanes(lo, hi, first);
                for gi in 0..NQ {
                    let sc = _mm512_mul_ps(tree16x16(&dots[gi]), scale_v);
                    // SAFETY: the chunk lies inside the query's score row.
                    unsafe {
                        _mm512_mask_storeu_ps(
                            scores.as_mut_ptr().add((i * NQ + gi) * rs + 16 * chunk),
                            vis,
                            sc,
                        )
                    };
                    // The maximum is exact in any order: one reduction per
                    // query at the end instead of one per chunk. (Only a NaN
                    // score could tell the orders apart, and it makes the
                    // row's output NaN either way.)
                    maxv[i][gi] = _mm512_mask_max_ps(maxv[i][gi], vis, maxv[i][gi], sc);
                }
            }
        }
        for i in 0..nr {
            for gi in 0..NQ {
                let at = (i * NQ + gi) * rs;
                softmax_to_f16(
                    &mut scores[at..at + span],
                    _mm512_reduce_max_ps(maxv[i][gi]),
                );
            }
        }
        let groups = nr_room / RQ;
        let sums = &mut self.sums[..groups * RQ * NQ * hd * 16];
        let mut t0 = first_chunk;
        while t0 < end_chunk {
            let t1 = (t0 + TILE_CHUNKS).min(end_chunk);
            for g in 0..groups {
                let i0 = g * RQ;
                // The group's rows see chunks u0..u1 together; a row's chunks
                // outside its own range carry zero weights times finite
                // values, which leave its sums' bits unchanged.
                let (u0, u1) = (bounds(i0).2, bounds((i0 + RQ).min(nr) - 1).3);
                let (a, b) = (t0.max(u0), t1.min(u1));
                if a >= b {
                    continue;
                }
                let query = |ri: usize, gi: usize| (i0 + ri) * NQ + gi;
                for d0 in (0..hd).step_by(DG) {
                    let at = |ri: usize, gi: usize, k: usize| (query(ri, gi) * hd + d0 + k) * 16;
                    // A chain starts from zero at the group's first chunk and
                    // is parked in `sums` at the end of every tile.
                    // SAFETY (these loads and stores): `sums` holds `hd`
                    // vectors per query of every group, and chunks a..b lie
                    // inside the rows.
                    let mut acc: [[[__m512; DG]; NQ]; RQ] = std::array::from_fn(|ri| {
                        std::array::from_fn(|gi| {
                            std::array::from_fn(|k| {
                                if a == u0 {
                                    _mm512_setzero_ps()
                                } else {
                                    unsafe { _mm512_loadu_ps(sums.as_ptr().add(at(ri, gi, k))) }
                                }
                            })
                        })
                    });
                    for c in a..b {
                        // SAFETY: rows of `vals` and `scores` hold `row` floats, past chunk c.
                        unsafe {
                            let v: [__m512; DG] = std::array::from_fn(|k| {
                                _mm512_loadu_ps(vals.as_ptr().add((d0 + k) * rs + 16 * c))
                            });
                            for ri in 0..RQ {
                                for gi in 0..NQ {
                                    let w = _mm512_loadu_ps(
                                        scores.as_ptr().add(query(ri, gi) * rs + 16 * c),
                                    );
                                    for k in 0..DG {
                                        acc[ri][gi][k] = _mm512_fmadd_ps(v[k], w, acc[ri][gi][k]);
                                    }
                                }
                            }
                        }
                    }
                    for ri in 0..RQ {
                        for gi in 0..NQ {
                            for k in 0..DG {
                                // SAFETY: as above.
                                unsafe {
                                    _mm512_storeu_ps(
                                        sums.as_mut_ptr().add(at(ri, gi, k)),
                                        acc[ri][gi][k],
                                    )
                                };
                            }
                        }
                    }
                }
            }
            t0 = t1;
        }
        for (i, r) in rows.enumerate() {
            for gi in 0..NQ {
                for d0 in (0..hd).step_by(16) {
                    // SAFETY: 16 of the query's `hd` parked vectors.
                    let v: [__m512; 16] = std::array::from_fn(|k| unsafe {
                        _mm512_loadu_ps(sums.as_ptr().add(((i * NQ + gi) * hd + d0 + k) * 16))
                    });
                    let dst = &mut out[(t.s.first_row + r) * stride + head(gi) * hd + d0..][..16];
                    // SAFETY: 16 floats of the row's output.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), tree16x16(&v)) };
                }
            }
        }
    }
}

/// One query row (a decode step): keys and values are read straight from the
/// f16 cache, each 16-wide load converted once and used by every query head
/// of the group — no widened copies. Same arithmetic as [`attend`].
///
/// # Safety
/// As [`attend`], plus a block size of 16 and at most `MAX_DIRECT` queries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn attend_one_row(t: &Task, buf: &mut Vec<f32>, out: &mut [f32]) {
    let (p, shape) = (t.p, t.shape);
    let hd = p.head_dim;
    let stride = p.num_heads * hd;
    let nq = t.num_queries();
    let (base, span) = (t.base(), t.span());
    let r = t.rows.start;
    let (lo, hi) = (t.lo_of(r), t.pos_of(r));
    // [nq*span] scores | [nq*hd] q
    let need = nq * span + nq * hd;
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (scores, rest) = buf.split_at_mut(nq * span);
    let qs = &mut rest[..nq * hd];
    for qi in 0..nq {
        let (_, h) = t.query(qi);
        let src = &t.q[(t.s.first_row + r) * stride + h * hd..][..hd];
        round_to_f16(&mut qs[qi * hd..(qi + 1) * hd], src);
    }
    scores.fill(f32::NEG_INFINITY);
    let mut max = [f32::NEG_INFINITY; MAX_DIRECT];
    let block_of = |pos: usize| shape.head_offset(t.s.block_table[pos / 16] as usize, t.kv_head);
    // Scores, one 16-slot block at a time: lane k of the 16 accumulators is
    // slot k's dot product, summed as `tree16` would sum it (`tree16x16`
    // performs the same additions), so the results equal the general path's.
    // Slots outside [lo, hi] are computed but never stored: lanes do not mix.
    let (c0, c1) = ((lo - base) / 16, (hi - base) / 16 + 1);
    let scale_v = _mm512_set1_ps(p.scale);
    for c in c0..c1 {
        let first = base + 16 * c;
        let vis = visible_lanes(lo, hi, first);
        // SAFETY (these reads): blocks of the task's own sequence (see `F16Kv`).
        let kblock = unsafe { t.kv.k.range(block_of(first)..block_of(first) + 16 * hd) };
        // The blocks are scattered over the pool, out of the hardware
        // prefetcher's sight: ask for the next block's keys, and for this
        // block's values, which the second pass reads one dimension (32
        // bytes) per block at a time.
        let vblock = unsafe { t.kv.v.range(block_of(first)..block_of(first) + 16 * hd) };
        let next_k = (c + 1 < c1).then(|| unsafe {
            t.kv.k
                .range(block_of(first + 16)..block_of(first + 16) + 16 * hd)
        });
        for line in (0..16 * hd).step_by(32) {
            // SAFETY: prefetches of in-bounds addresses (a hint; no access).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(vblock.as_ptr().add(line).cast());
                if let Some(nk) = next_k {
                    _mm_prefetch::<_MM_HINT_T0>(nk.as_ptr().add(line).cast());
                }
            }
        }
        for (qi, mx) in max.iter_mut().enumerate().take(nq) {
            let mut acc = [_mm512_setzero_ps(); 16];
            for cc in (0..hd).step_by(16) {
                // SAFETY: `qs` rows hold `hd` floats; the block holds 16 keys of `hd` f16.
                unsafe {
                    let q = _mm512_loadu_ps(qs.as_ptr().add(qi * hd + cc));
                    for (k, acc_k) in acc.iter_mut().enumerate() {
                        let kv = _mm512_cvtph_ps(_mm256_loadu_si256(
                            kblock.as_ptr().add(k * hd + cc).cast(),
                        ));
                        *acc_k = _mm512_fmadd_ps(kv, q, *acc_k);
                    }
                }
            }
            let sc = _mm512_mul_ps(tree16x16(&acc), scale_v);
            // SAFETY: chunk c of the score row lies inside it.
            unsafe { _mm512_mask_storeu_ps(scores.as_mut_ptr().add(qi * span + 16 * c), vis, sc) };
            *mx = mx.max(_mm512_mask_reduce_max_ps(vis, sc));
        }
    }
    for qi in 0..nq {
        let row = &mut scores[qi * span..(qi + 1) * span];
        softmax_to_f16(row, max[qi]);
    }
    // Values: with 16-slot blocks, chunk c of the score row is block c's slots.
    let pass = ValuePass {
        t,
        scores,
        span,
        base,
        lo,
        hi,
        c0,
        c1,
    };
    // SAFETY: same contract; `nq` is 1 to MAX_DIRECT (8).
    unsafe { const_width!(nq, NQ => pass.run::<NQ, { direct_value_dims(NQ) }>(out)) }
}

/// Output dimensions a [`ValuePass`] accumulates together for `nq` queries
/// (`DG`): `nq · DG ≤ 24` accumulators.
const fn direct_value_dims(nq: usize) -> usize {
    match nq {
        1 => 16,
        2 | 3 => 8,
        4 | 5 => 4,
        _ => 2,
    }
}

/// The weighted sum of values for one query row: output dimension `d` of
/// query `qi` is `tree16` of the 16-lane chain, over the row's blocks in
/// order, of `fma(v[block][d][slot], weight[slot])`.
struct ValuePass<'a> {
    t: &'a Task<'a>,
    scores: &'a [f32],
    span: usize,
    base: usize,
    lo: usize,
    hi: usize,
    c0: usize,
    c1: usize,
}

impl ValuePass<'_> {
    /// `DG` dimensions at a time for all `NQ` queries, so each block's
    /// offset, mask and weights are fetched once per `DG` dimensions rather
    /// than once per dimension; the chains are the same as one at a time.
    ///
    /// # Safety
    /// As [`attend_one_row`]; `NQ` is the task's query count and `DG`
    /// divides `head_dim`.
    #[allow(clippy::needless_range_loop)] // k indexes accumulators of several queries
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn run<const NQ: usize, const DG: usize>(&self, out: &mut [f32]) {
        let t = self.t;
        let hd = t.p.head_dim;
        let stride = t.p.num_heads * hd;
        let r = t.rows.start;
        for d0 in (0..hd).step_by(DG) {
            let mut acc = [[_mm512_setzero_ps(); DG]; NQ];
            for c in self.c0..self.c1 {
                let first = self.base + 16 * c;
                // Lanes outside [lo, hi] load as zero (their weight is zero;
                // the cache there may hold another sequence's values).
                let mask = visible_lanes(self.lo, self.hi, first);
                let block = t
                    .shape
                    .head_offset(t.s.block_table[first / 16] as usize, t.kv_head);
                // SAFETY: a block of the task's own sequence (see `F16Kv`).
                let vrows = unsafe { t.kv.v.range(block + d0 * 16..block + d0 * 16 + DG * 16) };
                // SAFETY: chunk c of every score row lies inside it.
                let w: [__m512; NQ] = std::array::from_fn(|qi| unsafe {
                    _mm512_loadu_ps(self.scores.as_ptr().add(qi * self.span + 16 * c))
                });
                for k in 0..DG {
                    // SAFETY: 16 f16 of the block's dimension d0 + k, masked.
                    let v = _mm512_cvtph_ps(unsafe {
                        _mm256_maskz_loadu_epi16(mask, vrows.as_ptr().add(16 * k).cast())
                    });
                    for qi in 0..NQ {
                        acc[qi][k] = _mm512_fmadd_ps(v, w[qi], acc[qi][k]);
                    }
                }
            }
            for (qi, acc_q) in acc.iter().enumerate() {
                let (_, h) = t.query(qi);
                let dst = &mut out[(t.s.first_row + r) * stride + h * hd + d0..][..DG];
                for (o, a) in dst.iter_mut().zip(acc_q) {
                    *o = tree16(*a);
                }
            }
        }
    }
}
