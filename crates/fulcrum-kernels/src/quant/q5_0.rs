//! Q5_0: 32 weights as 5-bit quants with one f16 scale, 5.5 bits per weight.
//!
//! Layout (22 bytes): `d: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`. The low four
//! bits are in `qs` in the Q4_0 nibble order; bit `j` of the little-endian
//! word `qh` is the fifth bit of weight `j`. Value: `d·(q − 16)`.

use std::mem::size_of;

use half::f16;

use super::pack::{
    dot_i32, inverse, pack_high_bits_32, pack_nibbles_32, round_clamp, signed_absmax,
    unpack_nibbles_32, with_high_bits_32,
};
use super::{sealed::Plain, BlockQ8_0, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

const _: () = assert!(size_of::<BlockQ5_0>() == 22);

// SAFETY: `#[repr(C)]`, fields f16 + [u8; 4] + [u8; 16] leave no padding
// (size asserted above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ5_0 {}

impl BlockQ5_0 {
    /// The signed quants `q − 16 ∈ [−16, 15]`, in weight order.
    pub fn quants(&self) -> [i8; 32] {
        with_high_bits_32(unpack_nibbles_32(&self.qs), &self.qh).map(|q| q as i8 - 16)
    }
}

impl QuantBlock for BlockQ5_0 {
    const BLOCK: usize = 32;
    const NAME: &'static str = "Q5_0";

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out[..Self::BLOCK].iter_mut().zip(self.quants()) {
            *o = d * f32::from(q);
        }
    }

    /// As Q4_0 with twice the levels: the extreme value maps to quant −16.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let d = signed_absmax(src) / -16.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| round_clamp(src[j] * id + 16.0, 0, 31) as u8);
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh: pack_high_bits_32(&q),
            qs: pack_nibbles_32(&q.map(|v| v & 0x0F)),
        }
    }
}

impl WeightBlock for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    type Activation = BlockQ8_0;

    fn vec_dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        vec_dot_q5_0_q8_0(w, x)
    }
}

/// `Σ w·x` over a row: exact `i32` sum per block, scaled by `d_w·d_x`.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q5_0_q8_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q5_0 row and Q8_0 row differ in blocks");
    w.iter().zip(x).fold(0.0, |acc, (wb, xb)| {
        let isum = dot_i32(&wb.quants(), &xb.qs);
        acc + wb.d.to_f32() * xb.d.to_f32() * isum as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.5; qs = 0 and no high bit give q = 0 → (0 − 16)·0.5 = −8.0, except:
        // qh = bits 0, 16, 31 = 0x8001_0001 → LE bytes [0x01, 0x00, 0x01, 0x80].
        // qs[0]  = 0x21: weight 0  = (1 | 16) − 16 = 1  → 0.5;  weight 16 = (2 | 16) − 16 = 2 → 1.0
        // qs[15] = 0xF0: weight 15 = 0 − 16 (bit 15 clear) → −8.0; weight 31 = (15 | 16) − 16 = 15 → 7.5
        let mut qs = [0; 16];
        qs[0] = 0x21;
        qs[15] = 0xF0;
        let block = BlockQ5_0 {
            d: f16::from_f32(0.5),
            qh: [0x01, 0x00, 0x01, 0x80],
            qs,
        };
        let mut out = [f32::NAN; 32];
        block.dequantize(&mut out);
        let mut want = [-8.0; 32];
        want[0] = 0.5;
        want[16] = 1.0;
        want[31] = 7.5;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_one_step() {
        // |d| = amax/16; the clipped side errs by up to |d|; the f16 scale adds
        // up to 16·|d|·2^-11 = amax·2^-11.
        test_util::check_round_trip::<BlockQ5_0>(|blk| {
            signed_absmax(blk).abs() * (1.0 / 16.0 + 1e-3)
        });
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ5_0>();
    }
}
