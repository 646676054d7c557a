//! Q4_1: 32 weights as 4-bit quants with an f16 scale and min, 5 bits per weight.
//!
//! Layout (20 bytes): `d: f16`, `m: f16`, `qs: [u8; 16]` in the Q4_0 nibble
//! order. Value: `d·q + m`. The min makes one-sided blocks (all positive, say)
//! use all 16 levels, at the price of needing `Σx` in the dot product.

use std::mem::size_of;

use half::f16;

use super::pack::{dot_i32, inverse, min_max, pack_nibbles_32, round_clamp, unpack_nibbles_32};
use super::{sealed::Plain, BlockQ8_1, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

const _: () = assert!(size_of::<BlockQ4_1>() == 20);

// SAFETY: `#[repr(C)]`, fields 2×f16 + [u8; 16] leave no padding (size
// asserted above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ4_1 {}

impl BlockQ4_1 {
    /// The unsigned quants `q ∈ [0, 15]`, in weight order.
    pub fn quants(&self) -> [u8; 32] {
        unpack_nibbles_32(&self.qs)
    }
}

impl QuantBlock for BlockQ4_1 {
    const BLOCK: usize = 32;
    const NAME: &'static str = "Q4_1";

    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (o, q) in out[..Self::BLOCK].iter_mut().zip(self.quants()) {
            *o = d * f32::from(q) + m;
        }
    }

    /// `m = min`, `d = (max − min) / 15`.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let (min, max) = min_max(src);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| round_clamp((src[j] - min) * id, 0, 15) as u8);
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: pack_nibbles_32(&q),
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    type Activation = BlockQ8_1;

    fn vec_dot(w: &[Self], x: &[BlockQ8_1]) -> f32 {
        vec_dot_q4_1_q8_1(w, x)
    }
}

/// `Σ (d_w·q_w + m)·d_x·q_x = d_w·d_x·Σq_w·q_x + m·s_x`, per block.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q4_1 row and Q8_1 row differ in blocks");
    w.iter().zip(x).fold(0.0, |acc, (wb, xb)| {
        let isum = dot_i32(&wb.quants(), &xb.qs);
        acc + wb.d.to_f32() * xb.d.to_f32() * isum as f32 + wb.m.to_f32() * xb.s.to_f32()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.25, m = −1.0; q = 0 (value −1.0) except qs[0] = 0x3A:
        // weight 0 = 10·0.25 − 1 = 1.5, weight 16 = 3·0.25 − 1 = −0.25.
        let mut qs = [0; 16];
        qs[0] = 0x3A;
        let block = BlockQ4_1 {
            d: f16::from_f32(0.25),
            m: f16::from_f32(-1.0),
            qs,
        };
        let mut out = [f32::NAN; 32];
        block.dequantize(&mut out);
        let mut want = [-1.0; 32];
        want[0] = 1.5;
        want[16] = -0.25;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        // Half a step d/2, plus f16 rounding of d (15·d·2^-11 = range·2^-11) and of m.
        test_util::check_round_trip::<BlockQ4_1>(|blk| {
            let (min, max) = min_max(blk);
            (max - min) * (1.0 / 30.0 + 1e-3) + min.abs() * 1e-3
        });
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ4_1>();
    }
}
