//! Activations quantized once per matrix product, in the group layout the
//! packed weights use (see `packed.rs`).
//!
//! Per token and per 128-weight group, one 384-byte record:
//! `[low-half quants: 64 i8][high-half quants: 64 i8][dx: 16 f32][Σ low: 16 i32][Σ high: 16 i32][s: 16 f32]`
//! where lane `l` of `dx` is the scale of the block lane `l` belongs to, `Σ`
//! lane `l` sums that lane's four quants (the integer correction of a weight
//! offset needs it), and the lanes of `s` sum, per block, to `d·Σq` (the
//! float-min term of Q4_1-like formats: `Σ min·s` over blocks). A half group
//! (two blocks) uses the first vector as `[b0 low, b1 low, b0 high, b1 high]`,
//! its `dx`, `Σ low` and `s` lanes matching; the rest is unused.
//!
//! Two schemes, chosen by the weight format, reproduce the rounding llama.cpp
//! uses, so results agree with it as closely as 8-bit arithmetic allows (the
//! small models fulcrum runs carry activations in the thousands, and every
//! rounding choice shows in their logits):
//! - [`ActScheme::Block32`] (Q4_0…Q8_0), ggml's Q8_0/Q8_1: `d = max|x|/127`
//!   per 32 values, levels rounded half to even, `d` kept at f16 precision,
//!   `s = f16(d·Σq)`;
//! - [`ActScheme::Super256`] (K-quants), ggml's Q8_K: one f32 scale per 256
//!   values, `-127/max` with the sign of the largest-magnitude value.

use half::f16;

use super::packed::vector_position;
use crate::pool::{SendPtr, WorkerPool};

/// Bytes of one group record.
pub const RECORD: usize = 384;

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

/// Quantized activations of `m` tokens, reused across every product with the
/// same input (q/k/v, gate/up).
#[derive(Default)]
pub struct QuantizedActivations {
    pub(crate) bytes: Vec<u8>,
    pub m: usize,
    /// Columns of the input (before padding).
    pub cols: usize,
    pub full_groups: usize,
    pub has_half: bool,
    pub scheme: Option<ActScheme>,
}

impl QuantizedActivations {
    /// Bytes per token.
    pub fn token_stride(&self) -> usize {
        (self.full_groups + self.has_half as usize) * RECORD
    }

    /// Quantizes `x` (`[m, cols]`), reusing this buffer.
    pub fn quantize(&mut self, pool: &WorkerPool, x: &[f32], m: usize, cols: usize, scheme: ActScheme) {
        assert_eq!(x.len(), m * cols, "x must be [m, cols]");
        assert_eq!(cols % 32, 0, "columns must be whole 32-weight blocks");
        assert!(scheme == ActScheme::Block32 || cols % 256 == 0, "K-quant rows are whole 256-weight super-blocks");
        self.scheme = Some(scheme);
        let padded = cols.div_ceil(64) * 64;
        self.m = m;
        self.cols = cols;
        self.full_groups = padded / 128;
        self.has_half = padded % 128 != 0;
        let stride = self.token_stride();
        if self.bytes.len() < m * stride {
            self.bytes.resize(m * stride, 0);
        }
        let (full_groups, has_half) = (self.full_groups, self.has_half);
        let out = SendPtr(self.bytes.as_mut_ptr());
        let per_task = if m >= 16 { 4 } else { m.max(1) };
        pool.run(m.div_ceil(per_task), |t| {
            for tok in t * per_task..((t + 1) * per_task).min(m) {
                // SAFETY: each token writes only its own `stride` bytes.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(tok * stride), stride) };
                quantize_token(&x[tok * cols..(tok + 1) * cols], full_groups, has_half, scheme, dst);
            }
        });
    }

    pub(crate) fn token(&self, tok: usize) -> &[u8] {
        let s = self.token_stride();
        &self.bytes[tok * s..(tok + 1) * s]
    }
}

fn quantize_token(x: &[f32], full_groups: usize, has_half: bool, scheme: ActScheme, out: &mut [u8]) {
    let nblocks = x.len() / 32;
    let groups = full_groups + has_half as usize;
    // Q8_K: one scale per 256 values, computed per super-block.
    let mut super_scale = (0f32, 0f32); // (iscale, d) of the current super-block
    for g in 0..groups {
        let blocks = if g < full_groups { 4 } else { 2 };
        let rec = &mut out[g * RECORD..(g + 1) * RECORD];
        rec.fill(0);
        let mut dx = [0f32; 16];
        let mut s = [0f32; 16];
        let mut sums = [[0i32; 16]; 2];
        for b in 0..blocks {
            let blk = 4 * g + b;
            let (q, d, s_block) = if blk >= nblocks {
                ([0i8; 32], 0.0, 0.0)
            } else {
                let xb = &x[32 * blk..32 * blk + 32];
                match scheme {
                    ActScheme::Block32 => quantize_block(xb),
                    ActScheme::Super256 => {
                        if blk % 8 == 0 {
                            super_scale = super_block_scale(&x[32 * blk..32 * blk + 256]);
                        }
                        let (iscale, d) = super_scale;
                        let q: [i8; 32] = std::array::from_fn(|i| (iscale * xb[i]).round_ties_even().min(127.0) as i8);
                        let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
                        (q, d, d * sum as f32)
                    }
                }
            };
            // Lanes of this block in the summed `s` vector: 4 in a full group
            // (low and high halves share lanes), 8 in a half group.
            let lanes = if blocks == 4 { 4.0 } else { 8.0 };
            for (i, &qv) in q.iter().enumerate() {
                let (v, byte) = vector_position(blocks, b, i);
                rec[64 * v + byte] = qv as u8;
                sums[v][byte / 4] += i32::from(qv);
                dx[byte / 4] = d;
                s[byte / 4] = s_block / lanes;
            }
        }
        for l in 0..16 {
            rec[128 + 4 * l..132 + 4 * l].copy_from_slice(&dx[l].to_le_bytes());
            rec[192 + 4 * l..196 + 4 * l].copy_from_slice(&sums[0][l].to_le_bytes());
            rec[256 + 4 * l..260 + 4 * l].copy_from_slice(&sums[1][l].to_le_bytes());
            rec[320 + 4 * l..324 + 4 * l].copy_from_slice(&s[l].to_le_bytes());
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
    fn records_hold_levels_scales_and_lane_sums() {
        let pool = WorkerPool::new(1);
        // 192 columns: one full group and a half group.
        let x: Vec<f32> = (0..192).map(|i| (i as f32 - 96.0) / 10.0).collect();
        let mut a = QuantizedActivations::default();
        a.quantize(&pool, &x, 1, 192, ActScheme::Block32);
        assert_eq!((a.full_groups, a.has_half), (1, true));
        let t = a.token(0);
        // Block 1 (x = 3.2-9.6+.. ) weight 16 sits in the high vector, lane (16 + 0)/4 = 4.
        let (q, d, _) = quantize_block(&x[32..64]);
        assert_eq!(t[64 + 16] as i8, q[16]);
        let dx_lane4 = f32::from_le_bytes(t[128 + 16..132 + 16].try_into().unwrap());
        assert_eq!(dx_lane4, d);
        let sum_lane4: i32 = (0..4).map(|j| q[16 + j] as i32).sum();
        assert_eq!(i32::from_le_bytes(t[256 + 16..260 + 16].try_into().unwrap()), sum_lane4);
        // Half group: block 4's weight 20 is at byte 16*2 + 4 of vector 0.
        let (q4, _, _) = quantize_block(&x[128..160]);
        assert_eq!(t[RECORD + 36] as i8, q4[20]);
    }
}
