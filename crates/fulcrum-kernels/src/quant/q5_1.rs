//! Q5_1: 32 weights as 5-bit quants with an f16 scale and min, 6 bits per weight.
//!
//! Layout (24 bytes): `d: f16`, `m: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`, bits
//! arranged as in Q5_0. Value: `d·q + m`.

use std::mem::size_of;

use half::f16;

use super::pack::{
    dot_i32, inverse, min_max, pack_high_bits_32, pack_nibbles_32, round_clamp, unpack_nibbles_32,
    with_high_bits_32,
};
use super::{sealed::Plain, BlockQ8_1, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

const _: () = assert!(size_of::<BlockQ5_1>() == 24);

// SAFETY: `#[repr(C)]`, fields 2×f16 + [u8; 4] + [u8; 16] leave no padding
// (size asserted above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ5_1 {}

impl BlockQ5_1 {
    /// The unsigned quants `q ∈ [0, 31]`, in weight order.
    pub fn quants(&self) -> [u8; 32] {
        with_high_bits_32(unpack_nibbles_32(&self.qs), &self.qh)
    }
}

impl QuantBlock for BlockQ5_1 {
    const BLOCK: usize = 32;
    const NAME: &'static str = "Q5_1";

    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (o, q) in out[..Self::BLOCK].iter_mut().zip(self.quants()) {
            *o = d * f32::from(q) + m;
        }
    }

    /// `m = min`, `d = (max − min) / 31`.
    fn quantize(src: &[f32]) -> Self {
        let src = &src[..Self::BLOCK];
        let (min, max) = min_max(src);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| round_clamp((src[j] - min) * id, 0, 31) as u8);
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh: pack_high_bits_32(&q),
            qs: pack_nibbles_32(&q.map(|v| v & 0x0F)),
        }
    }
}

impl WeightBlock for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    type Activation = BlockQ8_1;

    fn vec_dot(w: &[Self], x: &[BlockQ8_1]) -> f32 {
        vec_dot_q5_1_q8_1(w, x)
    }
}

/// `d_w·d_x·Σq_w·q_x + m·s_x` per block, as for Q4_1.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q5_1_q8_1(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q5_1 row and Q8_1 row differ in blocks");
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
        // d = 1.0, m = 0.5; q = 0 (value 0.5) except:
        // qh = bits 3 and 20 = 0x0010_0008 → LE bytes [0x08, 0x00, 0x10, 0x00].
        // qs[3] = 0x07: weight 3 = 7 | 16 = 23 → 23.5; weight 19 = 0 (bit 19 clear) → 0.5
        // qs[4] = 0x52: weight 4 = 2 (bit 4 clear) → 2.5; weight 20 = 5 | 16 = 21 → 21.5
        let mut qs = [0; 16];
        qs[3] = 0x07;
        qs[4] = 0x52;
        let block = BlockQ5_1 {
            d: f16::from_f32(1.0),
            m: f16::from_f32(0.5),
            qh: [0x08, 0x00, 0x10, 0x00],
            qs,
        };
        let mut out = [f32::NAN; 32];
        block.dequantize(&mut out);
        let mut want = [0.5; 32];
        want[3] = 23.5;
        want[4] = 2.5;
        want[20] = 21.5;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        // Half a step d/2, plus f16 rounding of d (31·d·2^-11 = range·2^-11) and of m.
        test_util::check_round_trip::<BlockQ5_1>(|blk| {
            let (min, max) = min_max(blk);
            (max - min) * (1.0 / 62.0 + 1e-3) + min.abs() * 1e-3
        });
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ5_1>();
    }
}
