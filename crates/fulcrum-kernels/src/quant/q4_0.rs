//! Q4_0: 32 weights as 4-bit quants with one f16 scale, 4.5 bits per weight.
//!
//! Layout (18 bytes): `d: f16`, `qs: [u8; 16]`; weight `j` sits in the low
//! nibble of `qs[j]`, weight `j + 16` in the high nibble. Value: `d·(q − 8)`.

use std::mem::size_of;

use half::f16;

use super::pack::{
    dot_i32, inverse, pack_nibbles_32, round_clamp, signed_absmax, unpack_nibbles_32,
};
use super::{sealed::Plain, BlockQ8_0, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);

// SAFETY: `#[repr(C)]`, fields f16 + [u8; 16] leave no padding (size asserted
// above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ4_0 {}

impl BlockQ4_0 {
    /// The signed quants `q − 8 ∈ [−8, 7]`, in weight order.
    pub fn quants(&self) -> [i8; 32] {
        unpack_nibbles_32(&self.qs).map(|q| q as i8 - 8)
    }
}

impl QuantBlock for BlockQ4_0 {
    const BLOCK: usize = 32;
    const NAME: &'static str = "Q4_0";

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out[..Self::BLOCK].iter_mut().zip(self.quants()) {
            *o = d * f32::from(q);
        }
    }

    /// The extreme value maps to quant −8 (scale `max / −8`), so its side of
    /// the range gets the extra level; the opposite extreme may clip by ≤ `|d|`.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let d = signed_absmax(src) / -8.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| round_clamp(src[j] * id + 8.0, 0, 15) as u8);
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs: pack_nibbles_32(&q),
        }
    }
}

impl WeightBlock for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    type Activation = BlockQ8_0;

    fn vec_dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        vec_dot_q4_0_q8_0(w, x)
    }
}

/// `Σ w·x` over a row: exact `i32` sum per block, scaled by `d_w·d_x`.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q4_0 row and Q8_0 row differ in blocks");
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
        // d = 0.5; q = 8 everywhere (value 0) except:
        // qs[0] = 0x9F: weight 0 = (15 − 8)·0.5 = 3.5, weight 16 = (9 − 8)·0.5 = 0.5
        // qs[1] = 0x08: weight 1 = (8 − 8)·0.5 = 0.0,  weight 17 = (0 − 8)·0.5 = −4.0
        let mut qs = [0x88; 16];
        qs[0] = 0x9F;
        qs[1] = 0x08;
        let block = BlockQ4_0 {
            d: f16::from_f32(0.5),
            qs,
        };
        let mut out = [f32::NAN; 32];
        block.dequantize(&mut out);
        let mut want = [0.0; 32];
        want[0] = 3.5;
        want[16] = 0.5;
        want[17] = -4.0;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_one_step() {
        // |d| = amax/8; the clipped side errs by up to |d|; the f16 scale adds
        // up to 8·|d|·2^-11 = amax·2^-11.
        test_util::check_round_trip::<BlockQ4_0>(|blk| {
            signed_absmax(blk).abs() * (1.0 / 8.0 + 1e-3)
        });
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ4_0>();
    }
}
