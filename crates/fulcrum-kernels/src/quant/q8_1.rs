//! Q8_1: the activation format for Q4_1/Q5_1 weights.
//!
//! Layout (36 bytes, as ggml's `block_q8_1`): `d: f16`, `s: f16`,
//! `qs: [i8; 32]`, with `s = d·Σq`. A weight block with a min `m` contributes
//! `m·Σx` to the dot product; storing `s` computes that sum once per
//! activation block instead of once per weight row.

use std::mem::size_of;

use half::f16;

use super::pack::{absmax, inverse, round_clamp};
use super::{sealed::Plain, QuantBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}

const _: () = assert!(size_of::<BlockQ8_1>() == 36);

// SAFETY: `#[repr(C)]`, fields 2×f16 + [i8; 32] leave no padding (size
// asserted above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ8_1 {}

impl QuantBlock for BlockQ8_1 {
    const BLOCK: usize = 32;
    const NAME: &'static str = "Q8_1";

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out[..Self::BLOCK].iter_mut().zip(&self.qs) {
            *o = d * f32::from(q);
        }
    }

    /// As Q8_0, plus `s = d·Σq` (the sum of the *quantized* values, so the
    /// min term agrees with what the integer products see).
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let d = absmax(src) / 127.0;
        let id = inverse(d);
        let qs: [i8; 32] = std::array::from_fn(|j| round_clamp(src[j] * id, -127, 127) as i8);
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        BlockQ8_1 {
            d: f16::from_f32(d),
            s: f16::from_f32(d * sum as f32),
            qs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.5: q = 3 → 1.5, q = −127 → −63.5; s plays no part in the values.
        let mut qs = [0; 32];
        qs[5] = 3;
        qs[6] = -127;
        let block = BlockQ8_1 {
            d: f16::from_f32(0.5),
            s: f16::from_f32(-62.0),
            qs,
        };
        let mut out = [f32::NAN; 32];
        block.dequantize(&mut out);
        let mut want = [0.0; 32];
        want[5] = 1.5;
        want[6] = -63.5;
        assert_eq!(out, want);
    }

    #[test]
    fn sum_is_scale_times_sum_of_quants() {
        // amax = 12.7 → d = 0.1; quants 127, −50, 10 → Σq = 87 → s = 8.7.
        let mut src = [0.0; 32];
        src[0] = 12.7;
        src[1] = -5.0;
        src[2] = 1.0;
        let block = BlockQ8_1::quantize(&src);
        assert_eq!(&block.qs[..4], &[127, -50, 10, 0]);
        assert_eq!(block.s, f16::from_f32(0.1 * 87.0));
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        test_util::check_round_trip::<BlockQ8_1>(|blk| absmax(blk) * (1.0 / 254.0 + 1e-3));
    }
}
