//! Q4_K: 256 weights in 8 sub-blocks of 32, 4.5 bits per weight.
//!
//! Layout (144 bytes): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (6-bit
//! scale and min per sub-block, see [`super::k_scales`]), `qs: [u8; 128]`.
//! `qs` is four chunks of 32 bytes; chunk `c` holds sub-block `2c` in its low
//! nibbles and sub-block `2c + 1` in its high nibbles.
//! Value in sub-block `j`: `d·sc[j]·q − dmin·m[j]`.

use std::mem::size_of;

use half::f16;

use super::k_scales::{quantize_min_max, unpack_scales_mins};
use super::pack::dot_i32;
use super::{sealed::Plain, BlockQ8_K, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

const _: () = assert!(size_of::<BlockQ4_K>() == 144);

// SAFETY: `#[repr(C)]`, fields 2×f16 + [u8; 12] + [u8; 128] leave no padding
// (size asserted above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ4_K {}

impl BlockQ4_K {
    /// The unsigned quants `q ∈ [0, 15]`, in weight order.
    pub fn quants(&self) -> [u8; 256] {
        std::array::from_fn(|i| {
            let (chunk, within) = (i / 64, i % 64);
            let byte = self.qs[32 * chunk + within % 32];
            if within < 32 {
                byte & 0x0F
            } else {
                byte >> 4
            }
        })
    }

    /// Sub-block scales and mins, each in `[0, 63]`.
    pub fn scales_mins(&self) -> ([u8; 8], [u8; 8]) {
        unpack_scales_mins(&self.scales)
    }
}

impl QuantBlock for BlockQ4_K {
    const BLOCK: usize = 256;
    const NAME: &'static str = "Q4_K";

    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let (sc, m) = self.scales_mins();
        let q = self.quants();
        for (j, chunk) in out[..Self::BLOCK].chunks_exact_mut(32).enumerate() {
            let (scale, min) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
            for (o, &qv) in chunk.iter_mut().zip(&q[32 * j..]) {
                *o = scale * f32::from(qv) - min;
            }
        }
    }

    fn quantize(src: &[f32]) -> Self {
        let b = quantize_min_max(src, 15);
        let qs = std::array::from_fn(|k| {
            let (chunk, l) = (k / 32, k % 32);
            b.q[64 * chunk + l] | (b.q[64 * chunk + 32 + l] << 4)
        });
        BlockQ4_K {
            d: b.d,
            dmin: b.dmin,
            scales: b.scales,
            qs,
        }
    }
}

impl WeightBlock for BlockQ4_K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    type Activation = BlockQ8_K;

    fn vec_dot(w: &[Self], x: &[BlockQ8_K]) -> f32 {
        vec_dot_q4_k_q8_k(w, x)
    }
}

/// Per block: `d_x·(d·Σ_j sc[j]·Σ q·q_x − dmin·Σ_j m[j]·Σ q_x)`, both inner
/// sums in `i32`, the sub-block sums of `q_x` taken from `bsums`.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q4_k_q8_k(w: &[BlockQ4_K], x: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q4_K row and Q8_K row differ in blocks");
    w.iter().zip(x).fold(0.0, |acc, (wb, xb)| {
        let (sc, m) = wb.scales_mins();
        let q = wb.quants();
        let mut sumi = 0i32;
        let mut summ = 0i32;
        for j in 0..8 {
            let r = 32 * j..32 * j + 32;
            sumi += i32::from(sc[j]) * dot_i32(&q[r.clone()], &xb.qs[r]);
            summ += i32::from(m[j]) * xb.sum_32(j);
        }
        acc + xb.d * (wb.d.to_f32() * sumi as f32 - wb.dmin.to_f32() * summ as f32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::k_scales::HAND_PACKED;
    use crate::quant::test_util;

    #[test]
    fn dequantizes_hand_built_block() {
        // d = 0.5, dmin = 0.25, scales = HAND_PACKED:
        // sc = [1, 2, 3, 63, 17, 33, 5, 48], m = [0, 1, 2, 3, 20, 4, 63, 1].
        // qs = 0x21 everywhere: sub-blocks 0, 2, 4, 6 (low nibbles) get q = 1,
        // sub-blocks 1, 3, 5, 7 (high nibbles) get q = 2. Value 0.5·sc·q − 0.25·m:
        let per_sub_block = [
            0.5 * 1.0 * 1.0 - 0.25 * 0.0,   //  0.5
            0.5 * 2.0 * 2.0 - 0.25 * 1.0,   //  1.75
            0.5 * 3.0 * 1.0 - 0.25 * 2.0,   //  1.0
            0.5 * 63.0 * 2.0 - 0.25 * 3.0,  // 62.25
            0.5 * 17.0 * 1.0 - 0.25 * 20.0, // 3.5
            0.5 * 33.0 * 2.0 - 0.25 * 4.0,  // 32.0
            0.5 * 5.0 * 1.0 - 0.25 * 63.0,  // −13.25
            0.5 * 48.0 * 2.0 - 0.25 * 1.0,  // 47.75
        ];
        assert_eq!(
            per_sub_block,
            [0.5, 1.75, 1.0, 62.25, 3.5, 32.0, -13.25, 47.75]
        );
        let mut qs = [0x21; 128];
        // qs[0] = 0xF0: weight 0 (sub-block 0) q = 0 → 0.0; weight 32 (sub-block 1) q = 15 → 0.5·2·15 − 0.25 = 14.75
        qs[0] = 0xF0;
        // qs[127] = 0x0F (chunk 3, byte 31): weight 223 (sub-block 6) q = 15 → 0.5·5·15 − 15.75 = 21.75;
        // weight 255 (sub-block 7) q = 0 → −0.25
        qs[127] = 0x0F;
        let block = BlockQ4_K {
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
            scales: HAND_PACKED,
            qs,
        };
        let mut out = [f32::NAN; 256];
        block.dequantize(&mut out);
        let mut want: [f32; 256] = std::array::from_fn(|i| per_sub_block[i / 32]);
        want[0] = 0.0;
        want[32] = 14.75;
        want[223] = 21.75;
        want[255] = -0.25;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        test_util::check_round_trip::<BlockQ4_K>(|blk| test_util::min_max_k_bound(blk, 15.0));
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ4_K>();
    }
}
