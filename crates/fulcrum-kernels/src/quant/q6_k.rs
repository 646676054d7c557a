//! Q6_K: 256 weights in 16 sub-blocks of 16, 6.5625 bits per weight.
//!
//! Layout (210 bytes): `ql: [u8; 128]` (low 4 bits), `qh: [u8; 64]` (high 2
//! bits), `scales: [i8; 16]` (signed, one per 16 weights), `d: f16` — last.
//! Each half `h` of 128 weights uses `ql[64h..64h + 64]` and `qh[32h..32h + 32]`;
//! for `l < 32`, weights `l`, `l + 32`, `l + 64`, `l + 96` of the half take
//! their low bits from the low nibble of `ql[l]`, low nibble of `ql[l + 32]`,
//! high nibble of `ql[l]`, high nibble of `ql[l + 32]`, and their high bits
//! from bits 0–1, 2–3, 4–5, 6–7 of `qh[l]`.
//! Value of weight `i`: `d·scales[i / 16]·(q − 32)`.

use std::mem::size_of;

use half::f16;

use super::k_scales::f16_at_least;
use super::pack::{absmax, dot_i32, round_clamp};
use super::{sealed::Plain, BlockQ8_K, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6_K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}

const _: () = assert!(size_of::<BlockQ6_K>() == 210);

// SAFETY: `#[repr(C)]`, fields [u8; 128] + [u8; 64] + [i8; 16] + f16 (at the
// even offset 208) leave no padding (size asserted above), and every bit
// pattern of them is valid.
unsafe impl Plain for BlockQ6_K {}

/// Where the bits of weight `i` live: `(ql index, ql shift, qh index, qh shift)`.
fn bit_position(i: usize) -> (usize, u32, usize, u32) {
    let (half, within) = (i / 128, i % 128);
    let (quarter, l) = (within / 32, within % 32);
    // Quarters 0..4 → (ql offset, nibble shift): (0, 0), (32, 0), (0, 4), (32, 4).
    let ql = 64 * half + l + 32 * (quarter % 2);
    let ql_shift = 4 * (quarter / 2) as u32;
    (ql, ql_shift, 32 * half + l, 2 * quarter as u32)
}

impl BlockQ6_K {
    /// The signed quants `q − 32 ∈ [−32, 31]`, in weight order.
    pub fn quants(&self) -> [i8; 256] {
        std::array::from_fn(|i| {
            let (ql, ql_shift, qh, qh_shift) = bit_position(i);
            let low = (self.ql[ql] >> ql_shift) & 0x0F;
            let high = (self.qh[qh] >> qh_shift) & 0x03;
            (low | (high << 4)) as i8 - 32
        })
    }
}

impl QuantBlock for BlockQ6_K {
    const BLOCK: usize = 256;
    const NAME: &'static str = "Q6_K";

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let q = self.quants();
        for (i, chunk) in out[..Self::BLOCK].chunks_exact_mut(16).enumerate() {
            let scale = d * f32::from(self.scales[i]);
            for (o, &qv) in chunk.iter_mut().zip(&q[16 * i..]) {
                *o = scale * f32::from(qv);
            }
        }
    }

    /// Symmetric per 16 weights: step `amax/31` (so quants stay in [−31, 31]),
    /// the steps then quantized to `d·sc` with `sc ≤ 127` rounded up so
    /// nothing clips. Only positive scales are produced.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let steps: [f32; 16] = std::array::from_fn(|i| absmax(&src[16 * i..16 * i + 16]) / 31.0);
        let d = f16_at_least(steps.iter().fold(0.0f32, |a, &b| a.max(b)) / 127.0);
        let d_f = d.to_f32();
        let scales: [i8; 16] = std::array::from_fn(|i| {
            if d_f > 0.0 {
                round_clamp((steps[i] / d_f).ceil(), 0, 127) as i8
            } else {
                0
            }
        });
        let mut block = BlockQ6_K {
            ql: [0; 128],
            qh: [0; 64],
            scales,
            d,
        };
        for (i, &v) in src.iter().enumerate() {
            let step = d_f * f32::from(scales[i / 16]);
            let q = if step > 0.0 {
                round_clamp(v / step, -32, 31)
            } else {
                0
            };
            let biased = (q + 32) as u8;
            let (ql, ql_shift, qh, qh_shift) = bit_position(i);
            block.ql[ql] |= (biased & 0x0F) << ql_shift;
            block.qh[qh] |= (biased >> 4) << qh_shift;
        }
        block
    }
}

impl WeightBlock for BlockQ6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    type Activation = BlockQ8_K;

    fn vec_dot(w: &[Self], x: &[BlockQ8_K]) -> f32 {
        vec_dot_q6_k_q8_k(w, x)
    }
}

/// Per block: `d·d_x·Σ_i scales[i]·Σ (q − 32)·q_x` over the 16 sub-blocks,
/// in `i32` (at most 16·16·32·127·128 ≈ 1.3·10⁸, no overflow).
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q6_k_q8_k(w: &[BlockQ6_K], x: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q6_K row and Q8_K row differ in blocks");
    w.iter().zip(x).fold(0.0, |acc, (wb, xb)| {
        let q = wb.quants();
        let sumi: i32 = (0..16)
            .map(|i| {
                let r = 16 * i..16 * i + 16;
                i32::from(wb.scales[i]) * dot_i32(&q[r.clone()], &xb.qs[r])
            })
            .sum();
        acc + wb.d.to_f32() * xb.d * sumi as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.5; signed scales per 16 weights; value = 0.5·sc·(q − 32).
        let scales: [i8; 16] = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -128];
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        // First half, l = 0: ql[0] = 0xA5, ql[32] = 0x3C, qh[0] = 0b11_10_01_00.
        //   weight 0  (sc 1): 0x5 | 0b00 << 4 = 5  → 5 − 32 = −27 → 0.5·1·−27 = −13.5
        //   weight 32 (sc 2): 0xC | 0b01 << 4 = 28 → −4  → 0.5·2·−4  = −4.0
        //   weight 64 (sc 3): 0xA | 0b10 << 4 = 42 → 10  → 0.5·3·10  = 15.0
        //   weight 96 (sc 4): 0x3 | 0b11 << 4 = 51 → 19  → 0.5·4·19  = 38.0
        ql[0] = 0xA5;
        ql[32] = 0x3C;
        qh[0] = 0b11_10_01_00;
        // Second half, l = 31: ql[64 + 31] = 0x0F, ql[64 + 63] = 0xF1, qh[32 + 31] = 0b01_00_11_10.
        //   weight 159 (sc −5):   0xF | 0b10 << 4 = 47 → 15  → 0.5·−5·15    = −37.5
        //   weight 191 (sc −6):   0x1 | 0b11 << 4 = 49 → 17  → 0.5·−6·17    = −51.0
        //   weight 223 (sc −7):   0x0 | 0b00 << 4 = 0  → −32 → 0.5·−7·−32   = 112.0
        //   weight 255 (sc −128): 0xF | 0b01 << 4 = 31 → −1  → 0.5·−128·−1 = 64.0
        ql[95] = 0x0F;
        ql[127] = 0xF1;
        qh[63] = 0b01_00_11_10;
        let block = BlockQ6_K {
            ql,
            qh,
            scales,
            d: f16::from_f32(0.5),
        };
        let mut out = [f32::NAN; 256];
        block.dequantize(&mut out);
        // Everything else has q = 0 → 0.5·sc·−32 = −16·sc.
        let mut want: [f32; 256] = std::array::from_fn(|i| -16.0 * f32::from(scales[i / 16]));
        for (i, v) in [
            (0, -13.5),
            (32, -4.0),
            (64, 15.0),
            (96, 38.0),
            (159, -37.5),
            (191, -51.0),
            (223, 112.0),
            (255, 64.0),
        ] {
            want[i] = v;
        }
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        // step = d·sc ≤ amax_16/31 + d with d ≤ amax/(31·127)·(1 + 2^-10): ≤ 0.51·amax/31.
        test_util::check_round_trip::<BlockQ6_K>(|blk| absmax(blk) / 31.0 * 0.52);
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ6_K>();
    }
}
