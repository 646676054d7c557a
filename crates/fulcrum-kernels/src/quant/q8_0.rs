//! Q8_0: 32 values as `i8` with one f16 scale, 8.5 bits per value.
//!
//! Layout (34 bytes): `d: f16`, `qs: [i8; 32]`. Value: `d·q`. Both a weight
//! format and the activation format paired with Q4_0/Q5_0/Q8_0 weights.

use std::mem::size_of;

use half::f16;

use super::pack::{absmax, dot_i32, inverse, round_clamp};
use super::{sealed::Plain, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

const _: () = assert!(size_of::<BlockQ8_0>() == 34);

// SAFETY: `#[repr(C)]`, fields f16 + [i8; 32] leave no padding (size asserted
// above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ8_0 {}

impl QuantBlock for BlockQ8_0 {
    const BLOCK: usize = 32;
    const NAME: &'static str = "Q8_0";

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out[..Self::BLOCK].iter_mut().zip(&self.qs) {
            *o = d * f32::from(q);
        }
    }

    /// Symmetric: `d = amax / 127`, quants in [−127, 127]. Quants are computed
    /// with the exact `1/d`, as ggml does, so activations quantize the same way
    /// as in the reference logits; `d` is then stored as f16.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let d = absmax(src) / 127.0;
        let id = inverse(d);
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs: std::array::from_fn(|j| round_clamp(src[j] * id, -127, 127) as i8),
        }
    }
}

impl WeightBlock for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    type Activation = BlockQ8_0;

    fn vec_dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        vec_dot_q8_0_q8_0(w, x)
    }
}

/// `Σ w·x` over a row: exact `i32` sum per block, scaled by `d_w·d_x`.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q8_0 rows differ in blocks");
    w.iter().zip(x).fold(0.0, |acc, (wb, xb)| {
        let isum = dot_i32(&wb.qs, &xb.qs);
        acc + wb.d.to_f32() * xb.d.to_f32() * isum as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.25: −128 → −32.0, 127 → 31.75, −3 → −0.75, the rest 0.
        let mut qs = [0; 32];
        qs[0] = -128;
        qs[1] = 127;
        qs[31] = -3;
        let block = BlockQ8_0 {
            d: f16::from_f32(0.25),
            qs,
        };
        let mut out = [f32::NAN; 32];
        block.dequantize(&mut out);
        let mut want = [0.0; 32];
        want[0] = -32.0;
        want[1] = 31.75;
        want[31] = -0.75;
        assert_eq!(out, want);
    }

    #[test]
    fn quantizes_hand_computed_block() {
        // amax = 2.54 → d = 2.54/127 = 0.02 (≈ 0.020004 as f16); 1.0/0.02 = 50, −2.54 → −127.
        let mut src = [0.0; 32];
        src[0] = 1.0;
        src[1] = -2.54;
        src[2] = 0.011; // 0.55 → 1
        let block = BlockQ8_0::quantize(&src);
        assert_eq!(block.d, f16::from_f32(0.02));
        assert_eq!(&block.qs[..4], &[50, -127, 1, 0]);
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        // d/2 = amax/254, plus the f16 scale's 127·d·2^-11 = amax·2^-11.
        test_util::check_round_trip::<BlockQ8_0>(|blk| absmax(blk) * (1.0 / 254.0 + 1e-3));
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ8_0>();
    }
}
