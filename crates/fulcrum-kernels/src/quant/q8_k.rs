//! Q8_K: the activation format for K-quant weights (256 values per block).
//!
//! Layout (292 bytes, as ggml's `block_q8_K`): `d: f32`, `qs: [i8; 256]`,
//! `bsums: [i16; 16]` where `bsums[i]` is the sum of `qs[16i..16i + 16]`.
//! The K-quant weight formats subtract a per-sub-block min; with `bsums` that
//! costs one multiply per sub-block instead of one per value. The scale is
//! f32 because this block never leaves memory: it lives for one matmul.

use std::mem::size_of;

use super::pack::{absmax, inverse, round_clamp};
use super::{sealed::Plain, QuantBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_K {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
}

const _: () = assert!(size_of::<BlockQ8_K>() == 292);

// SAFETY: `#[repr(C)]`, fields f32 + [i8; 256] + [i16; 16] sit at offsets
// 0, 4, 260 with no padding (size asserted above), and every bit pattern of
// them is valid.
unsafe impl Plain for BlockQ8_K {}

impl BlockQ8_K {
    /// `Σ qs` over 32-value sub-block `j` (the K-quant min granularity).
    pub fn sum_32(&self, j: usize) -> i32 {
        i32::from(self.bsums[2 * j]) + i32::from(self.bsums[2 * j + 1])
    }
}

impl QuantBlock for BlockQ8_K {
    const BLOCK: usize = 256;
    const NAME: &'static str = "Q8_K";

    fn dequantize(&self, out: &mut [f32]) {
        for (o, &q) in out[..Self::BLOCK].iter_mut().zip(&self.qs) {
            *o = self.d * f32::from(q);
        }
    }

    /// Symmetric, `d = amax / 127`, quants in [−127, 127]. Unlike ggml we do
    /// not use −128: keeping the range symmetric lets SIMD kernels negate
    /// quants (the sign trick for unsigned×signed multiplies) without overflow.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let d = absmax(src) / 127.0;
        let id = inverse(d);
        let qs: [i8; 256] = std::array::from_fn(|j| round_clamp(src[j] * id, -127, 127) as i8);
        // At most 16·127 = 2032 in magnitude: fits i16.
        let bsums =
            std::array::from_fn(|i| qs[16 * i..16 * i + 16].iter().map(|&q| i16::from(q)).sum());
        BlockQ8_K { d, qs, bsums }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.25: q = −128 → −32.0, q = 100 → 25.0, q = 1 → 0.25.
        let mut qs = [0; 256];
        qs[0] = -128;
        qs[128] = 100;
        qs[255] = 1;
        let block = BlockQ8_K {
            d: 0.25,
            qs,
            bsums: [0; 16],
        };
        let mut out = [f32::NAN; 256];
        block.dequantize(&mut out);
        let mut want = [0.0; 256];
        want[0] = -32.0;
        want[128] = 25.0;
        want[255] = 0.25;
        assert_eq!(out, want);
    }

    #[test]
    fn quantize_fills_bsums_per_16_values() {
        // amax = 127 → d = 1, so quants equal the (integer) inputs.
        let src: [f32; 256] = std::array::from_fn(|i| match i {
            0 => -127.0,
            1..=15 => 2.0,   // first 16: −127 + 15·2 = −97
            16..=31 => -1.0, // next 16: −16
            255 => 127.0,    // last 16: 127
            _ => 0.0,
        });
        let block = BlockQ8_K::quantize(&src);
        assert_eq!(block.d, 1.0);
        assert_eq!(block.bsums[0], -97);
        assert_eq!(block.bsums[1], -16);
        assert_eq!(block.bsums[15], 127);
        assert_eq!(block.sum_32(0), -113);
        assert!(block.bsums[2..15].iter().all(|&s| s == 0));
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        // f32 scale: only d/2 = amax/254 plus float noise.
        test_util::check_round_trip::<BlockQ8_K>(|blk| absmax(blk) * (1.0 / 254.0 + 1e-6));
    }
}
