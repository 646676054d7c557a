//! Activations quantized once per matrix product (and reused for q/k/v,
//! gate/up), laid out for the kernels.
//!
//! Per token and per 32-value block, one record:
//! `[q: 32 i8 in value order][d: f32][Σ q0..16: i32][Σ q16..32: i32][Σ q: i32][padding to 64]`
//! (the sums let a weight offset be subtracted exactly inside the integer
//! dot product). For the llama.cpp-order kernels ([`ActScheme::Block32Lanes`])
//! the record grows to 224 bytes: at 64 the sums of each 4 consecutive
//! levels (8 × i32), at 96 the levels laid out as those kernels' pair
//! register (`[q0-15, q0-15, q16-31, q16-31]`), and at 160 that copy offset
//! by 128 as unsigned bytes (formats with an integer weight offset multiply
//! unsigned activations by signed weights there). Separately, per block and
//! token, `s = d·Σq` for the float-min formats, token-contiguous so a kernel
//! loads several tokens' `s` at once.
//!
//! Two roundings, chosen by the weight format, reproduce llama.cpp's
//! (the small models fulcrum runs carry activations in the thousands, and
//! every rounding choice shows in their logits):
//! - [`ActScheme::Block32`] and `Block32Lanes` (Q4_0…Q8_0), ggml's Q8_0/Q8_1: `d = max|x|/127`
//!   per 32 values, levels rounded half to even, `d` kept at f16 precision,
//!   `s = f16(d·Σq)` with the unrounded `d`;
//! - [`ActScheme::Super256`] (K-quants), ggml's Q8_K: one f32 scale per 256
//!   values, `-127/max` with the sign of the largest-magnitude value, `s` exact.

use half::f16;

use crate::pool::{SendPtr, WorkerPool};

/// Bytes of one block record ([`ActScheme::Block32Lanes`]: [`RECORD_LANES`]).
pub const RECORD: usize = 64;
pub const RECORD_LANES: usize = 224;
/// Offsets of the lane sums and of the register-order copies (`Block32Lanes`).
pub const AT_LANE_SUMS: usize = 64;
pub const DUP_Q: usize = 96;
pub const DUP_QB: usize = 160;
/// Offsets in a record: the scale `d`, the sums of levels 0..16 and 16..32,
/// and of all 32.
pub const AT_D: usize = 32;
pub const AT_SUM_LO: usize = 36;
pub const AT_SUM_HI: usize = 40;
pub const AT_SUM: usize = 44;

/// How activations are quantized (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActScheme {
    /// Per 32 values, for the 16-row kernels.
    Block32,
    /// Per 32 values, with the extra fields of the llama.cpp-order kernels.
    Block32Lanes,
    /// Per 256 values (K-quants).
    Super256,
}

impl ActScheme {
    /// The scheme the kernels of `w` read.
    pub fn for_matrix(w: &super::PackedMatrix) -> ActScheme {
        use fulcrum_gguf::GgmlType::*;
        match (w.ty, &w.data) {
            (Q4_K | Q5_K | Q6_K, _) => ActScheme::Super256,
            (_, super::PackedData::Quant { layout, .. }) if layout.numerics.llama_order() => {
                ActScheme::Block32Lanes
            }
            _ => ActScheme::Block32,
        }
    }

    /// Bytes of one block record.
    pub fn record_bytes(self) -> usize {
        if self == ActScheme::Block32Lanes {
            RECORD_LANES
        } else {
            RECORD
        }
    }

    fn per_block(self) -> bool {
        self != ActScheme::Super256
    }
}

/// Quantized activations of `m` tokens.
#[derive(Default)]
pub struct QuantizedActivations {
    pub(crate) bytes: Vec<u8>,
    /// `[blocks, m]`: `s = d·Σq` per block and token.
    pub(crate) sums: Vec<f32>,
    pub m: usize,
    pub cols: usize,
    pub blocks: usize,
    pub scheme: Option<ActScheme>,
    /// Bytes per block record.
    pub record: usize,
}

impl QuantizedActivations {
    /// Bytes per token.
    pub fn token_stride(&self) -> usize {
        self.blocks * self.record
    }

    /// Quantizes `x` (`[m, cols]`), reusing this buffer.
    pub fn quantize(
        &mut self,
        pool: &WorkerPool,
        x: &[f32],
        m: usize,
        cols: usize,
        scheme: ActScheme,
    ) {
        assert_eq!(x.len(), m * cols, "x must be [m, cols]");
        assert_eq!(cols % 32, 0, "columns must be whole 32-value blocks");
        assert!(
            scheme.per_block() || cols.is_multiple_of(256),
            "K-quant rows are whole 256-value super-blocks"
        );
        self.m = m;
        self.cols = cols;
        self.blocks = cols / 32;
        self.scheme = Some(scheme);
        self.record = scheme.record_bytes();
        let stride = self.token_stride();
        if self.bytes.len() < m * stride {
            self.bytes.resize(m * stride, 0);
        }
        if self.sums.len() < m * self.blocks {
            self.sums.resize(m * self.blocks, 0.0);
        }
        let out = SendPtr(self.bytes.as_mut_ptr());
        let sums = SendPtr(self.sums.as_mut_ptr());
        // 16 tokens per task: `sums` is `[blocks, m]`, so tasks of fewer
        // tokens would have both threads writing the same cache lines of it
        // (measured: 4-token tasks made two threads slower than one).
        let per_task = if m >= 32 { 16 } else { m.max(1) };
        #[cfg(target_arch = "x86_64")]
        let simd = crate::isa::Isa::active() == crate::isa::Isa::Avx512;
        pool.run(m.div_ceil(per_task), |t| {
            for tok in t * per_task..((t + 1) * per_task).min(m) {
                // SAFETY: each token writes only its own `stride` bytes and its
                // own column of `sums` (index b*m + tok).
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(out.get().add(tok * stride), stride) };
                let put = |b: usize, s: f32| unsafe { *sums.get().add(b * m + tok) = s };
                let xt = &x[tok * cols..(tok + 1) * cols];
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: `simd` is set only when the CPU has AVX-512.
                    unsafe { avx512::quantize_token(xt, scheme, dst, put) };
                    continue;
                }
                quantize_token(xt, scheme, dst, put);
            }
        });
    }

    pub(crate) fn token(&self, tok: usize) -> &[u8] {
        let s = self.token_stride();
        &self.bytes[tok * s..(tok + 1) * s]
    }

    /// `s` of block `b` for token `tok`.
    pub(crate) fn sum(&self, b: usize, tok: usize) -> f32 {
        self.sums[b * self.m + tok]
    }
}

fn quantize_token(
    x: &[f32],
    scheme: ActScheme,
    out: &mut [u8],
    mut put_sum: impl FnMut(usize, f32),
) {
    let mut super_scale = (0f32, 0f32); // (iscale, d) of the current super-block
    for (b, xb) in x.chunks_exact(32).enumerate() {
        let (q, d, s) = match scheme {
            ActScheme::Block32 | ActScheme::Block32Lanes => quantize_block(xb),
            ActScheme::Super256 => {
                if b % 8 == 0 {
                    super_scale = super_block_scale(&x[32 * b..32 * b + 256]);
                }
                let (iscale, d) = super_scale;
                let q: [i8; 32] =
                    std::array::from_fn(|i| (iscale * xb[i]).round_ties_even().min(127.0) as i8);
                let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
                (q, d, d * sum as f32)
            }
        };
        let size = scheme.record_bytes();
        let rec = &mut out[b * size..(b + 1) * size];
        for (o, &v) in rec[..32].iter_mut().zip(&q) {
            *o = v as u8;
        }
        let half_sum = |h: usize| {
            q[16 * h..16 * h + 16]
                .iter()
                .map(|&v| i32::from(v))
                .sum::<i32>()
        };
        put_record_fields(rec, d, half_sum(0), half_sum(1));
        if scheme == ActScheme::Block32Lanes {
            put_lane_fields(rec, &q);
        }
        put_sum(b, s);
    }
}

fn put_record_fields(rec: &mut [u8], d: f32, sum_lo: i32, sum_hi: i32) {
    rec[AT_D..AT_D + 4].copy_from_slice(&d.to_le_bytes());
    rec[AT_SUM_LO..AT_SUM_LO + 4].copy_from_slice(&sum_lo.to_le_bytes());
    rec[AT_SUM_HI..AT_SUM_HI + 4].copy_from_slice(&sum_hi.to_le_bytes());
    rec[AT_SUM..AT_SUM + 4].copy_from_slice(&(sum_lo + sum_hi).to_le_bytes());
}

/// The llama.cpp-order kernels' fields: lane sums and register-order copies.
fn put_lane_fields(rec: &mut [u8], q: &[i8; 32]) {
    for l in 0..8 {
        let ls: i32 = q[4 * l..4 * l + 4].iter().map(|&v| i32::from(v)).sum();
        rec[AT_LANE_SUMS + 4 * l..AT_LANE_SUMS + 4 * l + 4].copy_from_slice(&ls.to_le_bytes());
    }
    for (i, &v) in q.iter().enumerate() {
        let at = (i / 16) * 32 + i % 16;
        for copy in [DUP_Q + at, DUP_Q + at + 16] {
            rec[copy] = v as u8;
        }
        for copy in [DUP_QB + at, DUP_QB + at + 16] {
            rec[copy] = (v as u8) ^ 0x80;
        }
    }
}

/// ggml's Q8_0/Q8_1 block: levels in [-127, 127], the f16-rounded scale, and
/// `s = f16(d·Σq)` with the unrounded `d`.
fn quantize_block(x: &[f32]) -> ([i8; 32], f32, f32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        return ([0; 32], 0.0, 0.0);
    }
    let d = amax / 127.0;
    let id = 127.0 / amax;
    let q: [i8; 32] =
        std::array::from_fn(|i| (x[i] * id).round_ties_even().clamp(-127.0, 127.0) as i8);
    let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
    (
        q,
        f16::from_f32(d).to_f32(),
        f16::from_f32(d * sum as f32).to_f32(),
    )
}

/// ggml's Q8_K scale: `iscale = -127/max` where `max` is the value of largest
/// magnitude (sign kept), `d = 1/iscale`; zeros give zeros.
fn super_block_scale(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 || !amax.is_finite() {
        return (0.0, 0.0);
    }
    let iscale = -127.0 / max;
    (iscale, 1.0 / iscale)
}

/// The same quantization with AVX-512, value for value.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{put_record_fields, ActScheme, AT_LANE_SUMS, DUP_Q, DUP_QB};
    use crate::attention::reduce16x16;

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
    pub unsafe fn quantize_token(
        x: &[f32],
        scheme: ActScheme,
        out: &mut [u8],
        mut put_sum: impl FnMut(usize, f32),
    ) {
        let abs = |v: __m512| _mm512_abs_ps(v);
        let mut iscale_super = 0f32;
        let mut d_super = 0f32;
        // Block32: 16 blocks at a time, every reduction vertical.
        let mut first = 0;
        if scheme == ActScheme::Block32 {
            let size = scheme.record_bytes();
            while first + 16 <= x.len() / 32 {
                let mut s16 = [0f32; 16];
                // SAFETY: 512 values from block `first`; 16 records from its record.
                unsafe {
                    sixteen_blocks(
                        x.as_ptr().add(32 * first),
                        out[first * size..(first + 16) * size].as_mut_ptr(),
                        &mut s16,
                    )
                };
                for (i, &s) in s16.iter().enumerate() {
                    put_sum(first + i, s);
                }
                first += 16;
            }
        }
        for (b, xb) in x.chunks_exact(32).enumerate().skip(first) {
            // SAFETY: 32 floats per block.
            let (v0, v1) = unsafe {
                (
                    _mm512_loadu_ps(xb.as_ptr()),
                    _mm512_loadu_ps(xb.as_ptr().add(16)),
                )
            };
            let (scale, d) = match scheme {
                ActScheme::Block32 | ActScheme::Block32Lanes => {
                    let amax = _mm512_reduce_max_ps(_mm512_max_ps(abs(v0), abs(v1)));
                    if amax == 0.0 || !amax.is_finite() {
                        (0.0, 0.0)
                    } else {
                        (127.0 / amax, amax / 127.0)
                    }
                }
                ActScheme::Super256 => {
                    if b % 8 == 0 {
                        (iscale_super, d_super) =
                            super::super_block_scale(&x[32 * b..32 * b + 256]);
                    }
                    (iscale_super, d_super)
                }
            };
            let sv = _mm512_set1_ps(scale);
            // Round half to even (the default rounding mode), then clamp.
            let lim_hi = _mm512_set1_epi32(127);
            let lim_lo = _mm512_set1_epi32(if scheme.per_block() { -127 } else { -128 });
            let q0 = _mm512_max_epi32(
                _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, sv)), lim_hi),
                lim_lo,
            );
            let q1 = _mm512_max_epi32(
                _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, sv)), lim_hi),
                lim_lo,
            );
            let (q0, q1) = if d == 0.0 {
                (_mm512_setzero_si512(), _mm512_setzero_si512())
            } else {
                (q0, q1)
            };
            let qb = _mm256_set_m128i(_mm512_cvtepi32_epi8(q1), _mm512_cvtepi32_epi8(q0));
            let size = scheme.record_bytes();
            let rec = &mut out[b * size..(b + 1) * size];
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            let half0 = _mm512_reduce_add_epi32(q0);
            // SAFETY: the record has room for 32 levels.
            unsafe { _mm256_storeu_si256(rec.as_mut_ptr().cast(), qb) };
            if scheme == ActScheme::Block32Lanes {
                // Lane sums of 4 consecutive levels (a dot with ones) and the
                // register-order copies: 128-bit lanes [q0-15, q0-15, q16-31, q16-31].
                let ls = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), qb);
                let qdup = _mm512_shuffle_i64x2::<0b0101_0000>(
                    _mm512_castsi256_si512(qb),
                    _mm512_castsi256_si512(qb),
                );
                let qbias = _mm512_xor_si512(qdup, _mm512_set1_epi8(-128));
                // SAFETY: a Block32Lanes record has room for all fields.
                unsafe {
                    _mm256_storeu_si256(rec.as_mut_ptr().add(AT_LANE_SUMS).cast(), ls);
                    _mm512_storeu_si512(rec.as_mut_ptr().add(DUP_Q).cast(), qdup);
                    _mm512_storeu_si512(rec.as_mut_ptr().add(DUP_QB).cast(), qbias);
                }
            }
            let d_stored = if scheme.per_block() {
                half::f16::from_f32(d).to_f32()
            } else {
                d
            };
            put_record_fields(rec, d_stored, half0, sum - half0);
            let s = if scheme.per_block() {
                half::f16::from_f32(d * sum as f32).to_f32()
            } else {
                d * sum as f32
            };
            put_sum(b, s);
        }
    }
    /// Block32 quantization of 16 consecutive blocks (`x`: 512 values;
    /// `out`: 16 records of 64 bytes), value for value what the per-block
    /// loop computes: maxima, scales and sums are found for all 16 blocks
    /// at once in vector lanes instead of one horizontal reduction each.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/DQ and F16C; `x` holds 512 floats, `out` 1024 bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
    pub(super) unsafe fn sixteen_blocks(x: *const f32, out: *mut u8, s16: &mut [f32; 16]) {
        let as_f = _mm512_castsi512_ps;
        let as_i = _mm512_castps_si512;
        // SAFETY (block): 32 values per block inside `x`.
        let halves: [[__m512; 2]; 16] = std::array::from_fn(|i| unsafe {
            [
                _mm512_loadu_ps(x.add(32 * i)),
                _mm512_loadu_ps(x.add(32 * i + 16)),
            ]
        });
        let peaks: [__m512; 16] = std::array::from_fn(|i| {
            _mm512_max_ps(_mm512_abs_ps(halves[i][0]), _mm512_abs_ps(halves[i][1]))
        });
        let amax = reduce16x16(&peaks, |a, b| _mm512_max_ps(a, b));
        // Blocks of zeros or with a non-finite value get d = 0 and zero levels.
        let ok = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(amax, _mm512_setzero_ps())
            & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax, _mm512_set1_ps(f32::INFINITY));
        let c127 = _mm512_set1_ps(127.0);
        let scale = _mm512_maskz_div_ps(ok, c127, amax);
        let d = _mm512_maskz_div_ps(ok, amax, c127);
        let (lim_hi, lim_lo) = (_mm512_set1_epi32(127), _mm512_set1_epi32(-127));
        let mut lo = [_mm512_setzero_ps(); 16];
        let mut hi = [_mm512_setzero_ps(); 16];
        for i in 0..16 {
            if ok & (1 << i) == 0 {
                // SAFETY: record i holds 32 level bytes.
                unsafe { _mm256_storeu_si256(out.add(64 * i).cast(), _mm256_setzero_si256()) };
                continue;
            }
            let sv = _mm512_permutexvar_ps(_mm512_set1_epi32(i as i32), scale);
            let level = |v: __m512| {
                _mm512_max_epi32(
                    _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, sv)), lim_hi),
                    lim_lo,
                )
            };
            let (q0, q1) = (level(halves[i][0]), level(halves[i][1]));
            let qb = _mm256_set_m128i(_mm512_cvtepi32_epi8(q1), _mm512_cvtepi32_epi8(q0));
            // SAFETY: record i holds 32 level bytes.
            unsafe { _mm256_storeu_si256(out.add(64 * i).cast(), qb) };
            (lo[i], hi[i]) = (as_f(q0), as_f(q1));
        }
        let add = |a: __m512, b: __m512| as_f(_mm512_add_epi32(as_i(a), as_i(b)));
        let (sum_lo, sum_hi) = (as_i(reduce16x16(&lo, add)), as_i(reduce16x16(&hi, add)));
        let sum = _mm512_add_epi32(sum_lo, sum_hi);
        let round16 = |v: __m512| {
            _mm512_cvtph_ps(_mm512_cvtps_ph::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(v))
        };
        let d_stored = as_i(round16(d));
        _mm512_storeu_ps(
            s16.as_mut_ptr(),
            round16(_mm512_mul_ps(d, _mm512_cvtepi32_ps(sum))),
        );
        // Records' fields [d, Σ lo, Σ hi, Σ] (16 bytes at AT_D): 128-bit lane
        // L of r[j] is block 4L + j's.
        let t0 = _mm512_unpacklo_epi32(d_stored, sum_lo);
        let t1 = _mm512_unpacklo_epi32(sum_hi, sum);
        let t2 = _mm512_unpackhi_epi32(d_stored, sum_lo);
        let t3 = _mm512_unpackhi_epi32(sum_hi, sum);
        let r = [
            _mm512_unpacklo_epi64(t0, t1),
            _mm512_unpackhi_epi64(t0, t1),
            _mm512_unpacklo_epi64(t2, t3),
            _mm512_unpackhi_epi64(t2, t3),
        ];
        // SAFETY (block): record 4L + j has its fields at AT_D.
        unsafe {
            let field = |blk: usize| out.add(64 * blk + super::AT_D).cast::<__m128i>();
            for (j, rj) in r.iter().enumerate() {
                _mm_storeu_si128(field(j), _mm512_extracti32x4_epi32::<0>(*rj));
                _mm_storeu_si128(field(4 + j), _mm512_extracti32x4_epi32::<1>(*rj));
                _mm_storeu_si128(field(8 + j), _mm512_extracti32x4_epi32::<2>(*rj));
                _mm_storeu_si128(field(12 + j), _mm512_extracti32x4_epi32::<3>(*rj));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_hold_levels_lane_sums_and_scales() {
        let pool = WorkerPool::new(1);
        let x: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 10.0).collect();
        let mut a = QuantizedActivations::default();
        a.quantize(&pool, &x, 1, 128, ActScheme::Block32);
        let t = a.token(0);
        let (q, d, s) = quantize_block(&x[32..64]);
        let mut lanes = QuantizedActivations::default();
        lanes.quantize(&pool, &x, 1, 128, ActScheme::Block32Lanes);
        let l = lanes.token(0);
        let lane2: i32 = (8..12).map(|j| i32::from(q[j])).sum();
        assert_eq!(
            i32::from_le_bytes(
                l[RECORD_LANES + AT_LANE_SUMS + 8..RECORD_LANES + AT_LANE_SUMS + 12]
                    .try_into()
                    .unwrap()
            ),
            lane2
        );
        assert_eq!(l[RECORD_LANES + DUP_Q + 16 + 5] as i8, q[5]);
        assert_eq!(l[RECORD_LANES + DUP_QB + 32 + 2] ^ 0x80, q[18] as u8);
        assert_eq!(t[RECORD + 5] as i8, q[5]);
        let at = |o: usize| i32::from_le_bytes(t[RECORD + o..RECORD + o + 4].try_into().unwrap());
        let sum = |r: std::ops::Range<usize>| q[r].iter().map(|&v| i32::from(v)).sum::<i32>();
        assert_eq!(
            (at(AT_SUM_LO), at(AT_SUM_HI), at(AT_SUM)),
            (sum(0..16), sum(16..32), sum(0..32))
        );
        assert_eq!(
            f32::from_le_bytes(t[RECORD + AT_D..RECORD + AT_D + 4].try_into().unwrap()),
            d
        );
        assert_eq!(a.sum(1, 0), s);
        // Levels: 127 at the block's largest magnitude, rounding half to even.
        assert_eq!(q.iter().map(|v| v.abs()).max(), Some(127));
    }

    /// The SIMD quantizer writes the same bytes as the portable one.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quantizer_matches_portable() {
        if !crate::isa::Isa::Avx512.is_supported() {
            return;
        }
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
        };
        for scheme in [
            ActScheme::Block32,
            ActScheme::Block32Lanes,
            ActScheme::Super256,
        ] {
            // 16 blocks, 16 + a tail (the vector path's groups), 32 + 4.
            for (case, len) in (0..5).flat_map(|c| [(c, 512), (c, 576), (c, 1152)]) {
                // (Infinite values are left out for K-quants, whose two
                // quantizers round an infinite block differently.)
                if scheme == ActScheme::Super256 && (len % 256 != 0 || case == 4) {
                    continue;
                }
                let mut x: Vec<f32> = (0..len).map(|_| next()).collect();
                match case {
                    1 => x[..64].fill(0.0),
                    2 => x.iter_mut().step_by(3).for_each(|v| *v *= 1000.0),
                    3 => x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0), // ties
                    4 => {
                        // A non-finite value zeroes its block only.
                        x[40] = f32::INFINITY;
                        x[len - 3] = f32::NEG_INFINITY;
                    }
                    _ => {}
                }
                let blocks = len / 32;
                let (mut a, mut b) = (
                    vec![0u8; blocks * RECORD_LANES],
                    vec![0u8; blocks * RECORD_LANES],
                );
                let (mut sa, mut sb) = (vec![0f32; blocks], vec![0f32; blocks]);
                quantize_token(&x, scheme, &mut a, |i, s| sa[i] = s);
                // SAFETY: checked above.
                unsafe { avx512::quantize_token(&x, scheme, &mut b, |i, s| sb[i] = s) };
                assert_eq!(a, b, "{scheme:?} case {case} len {len}");
                assert_eq!(sa, sb, "{scheme:?} case {case} len {len}");
            }
        }
    }

    #[test]
    fn super_blocks_share_one_signed_scale() {
        let pool = WorkerPool::new(1);
        let mut x = vec![0.5f32; 256];
        x[7] = -4.0; // largest magnitude, negative: iscale = -127 / -4 > 0
        let mut a = QuantizedActivations::default();
        a.quantize(&pool, &x, 1, 256, ActScheme::Super256);
        let t = a.token(0);
        assert_eq!(t[7] as i8, -127);
        for b in 0..8 {
            let d = f32::from_le_bytes(
                t[b * RECORD + AT_D..b * RECORD + AT_D + 4]
                    .try_into()
                    .unwrap(),
            );
            assert_eq!(d, 1.0 / (127.0f32 / 4.0));
        }
    }
}
