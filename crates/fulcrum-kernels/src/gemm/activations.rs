//! Activations quantized once per matrix product (and reused for q/k/v,
//! gate/up), laid out for the kernels.
//!
//! Per token and per 32-value block, one 96-byte record:
//! `[q: 32 i8 in value order][Σ: 8 i32, the sums of each 4 consecutive q][d: f32][Σ q0..16: i32][Σ q16..32: i32][padding]`
//! (the lane sums let a weight offset be subtracted exactly inside the
//! integer dot product). Separately, per block and token, `s = d·Σq` for the
//! float-min formats, token-contiguous so a kernel loads several tokens' `s`
//! at once.
//!
//! Two schemes, chosen by the weight format, reproduce llama.cpp's rounding
//! (the small models fulcrum runs carry activations in the thousands, and
//! every rounding choice shows in their logits):
//! - [`ActScheme::Block32`] (Q4_0…Q8_0), ggml's Q8_0/Q8_1: `d = max|x|/127`
//!   per 32 values, levels rounded half to even, `d` kept at f16 precision,
//!   `s = f16(d·Σq)` with the unrounded `d`;
//! - [`ActScheme::Super256`] (K-quants), ggml's Q8_K: one f32 scale per 256
//!   values, `-127/max` with the sign of the largest-magnitude value, `s` exact.

use half::f16;

use crate::pool::{SendPtr, WorkerPool};

/// Bytes of one block record.
pub const RECORD: usize = 96;

/// How activations are quantized (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActScheme {
    Block32,
    Super256,
}

impl ActScheme {
    pub fn for_type(ty: fulcrum_gguf::GgmlType) -> ActScheme {
        use fulcrum_gguf::GgmlType::*;
        match ty {
            Q4_K | Q5_K | Q6_K => ActScheme::Super256,
            _ => ActScheme::Block32,
        }
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
}

impl QuantizedActivations {
    /// Bytes per token.
    pub fn token_stride(&self) -> usize {
        self.blocks * RECORD
    }

    /// Quantizes `x` (`[m, cols]`), reusing this buffer.
    pub fn quantize(&mut self, pool: &WorkerPool, x: &[f32], m: usize, cols: usize, scheme: ActScheme) {
        assert_eq!(x.len(), m * cols, "x must be [m, cols]");
        assert_eq!(cols % 32, 0, "columns must be whole 32-value blocks");
        assert!(scheme == ActScheme::Block32 || cols % 256 == 0, "K-quant rows are whole 256-value super-blocks");
        self.m = m;
        self.cols = cols;
        self.blocks = cols / 32;
        self.scheme = Some(scheme);
        let stride = self.token_stride();
        if self.bytes.len() < m * stride {
            self.bytes.resize(m * stride, 0);
        }
        if self.sums.len() < m * self.blocks {
            self.sums.resize(m * self.blocks, 0.0);
        }
        let out = SendPtr(self.bytes.as_mut_ptr());
        let sums = SendPtr(self.sums.as_mut_ptr());
        let per_task = if m >= 16 { 4 } else { m.max(1) };
        pool.run(m.div_ceil(per_task), |t| {
            for tok in t * per_task..((t + 1) * per_task).min(m) {
                // SAFETY: each token writes only its own `stride` bytes and its
                // own column of `sums` (index b*m + tok).
                let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(tok * stride), stride) };
                quantize_token(&x[tok * cols..(tok + 1) * cols], scheme, dst, |b, s| unsafe { *sums.get().add(b * m + tok) = s });
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

fn quantize_token(x: &[f32], scheme: ActScheme, out: &mut [u8], mut put_sum: impl FnMut(usize, f32)) {
    let mut super_scale = (0f32, 0f32); // (iscale, d) of the current super-block
    for (b, xb) in x.chunks_exact(32).enumerate() {
        let (q, d, s) = match scheme {
            ActScheme::Block32 => quantize_block(xb),
            ActScheme::Super256 => {
                if b % 8 == 0 {
                    super_scale = super_block_scale(&x[32 * b..32 * b + 256]);
                }
                let (iscale, d) = super_scale;
                let q: [i8; 32] = std::array::from_fn(|i| (iscale * xb[i]).round_ties_even().min(127.0) as i8);
                let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
                (q, d, d * sum as f32)
            }
        };
        let rec = &mut out[b * RECORD..(b + 1) * RECORD];
        for (o, &v) in rec[..32].iter_mut().zip(&q) {
            *o = v as u8;
        }
        for l in 0..8 {
            let ls: i32 = q[4 * l..4 * l + 4].iter().map(|&v| i32::from(v)).sum();
            rec[32 + 4 * l..36 + 4 * l].copy_from_slice(&ls.to_le_bytes());
        }
        rec[64..68].copy_from_slice(&d.to_le_bytes());
        let half_sum = |h: usize| q[16 * h..16 * h + 16].iter().map(|&v| i32::from(v)).sum::<i32>();
        rec[68..72].copy_from_slice(&half_sum(0).to_le_bytes());
        rec[72..76].copy_from_slice(&half_sum(1).to_le_bytes());
        put_sum(b, s);
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
    let q: [i8; 32] = std::array::from_fn(|i| (x[i] * id).round_ties_even().clamp(-127.0, 127.0) as i8);
    let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
    (q, f16::from_f32(d).to_f32(), f16::from_f32(d * sum as f32).to_f32())
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
        assert_eq!(t[RECORD + 5] as i8, q[5]);
        let lane2: i32 = (8..12).map(|j| q[j] as i32).sum();
        assert_eq!(i32::from_le_bytes(t[RECORD + 40..RECORD + 44].try_into().unwrap()), lane2);
        assert_eq!(f32::from_le_bytes(t[RECORD + 64..RECORD + 68].try_into().unwrap()), d);
        assert_eq!(a.sum(1, 0), s);
        // Levels: 127 at the block's largest magnitude, rounding half to even.
        assert_eq!(q.iter().map(|v| v.abs()).max(), Some(127));
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
            let d = f32::from_le_bytes(t[b * RECORD + 64..b * RECORD + 68].try_into().unwrap());
            assert_eq!(d, 1.0 / (127.0f32 / 4.0));
        }
    }
}
