//! Q5_K: 256 weights in 8 sub-blocks of 32, 5.5 bits per weight.
//!
//! Layout (176 bytes): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (as Q4_K),
//! `qh: [u8; 32]`, `qs: [u8; 128]`. The low four bits are in `qs` exactly as
//! in Q4_K; the fifth bit of weight `l` of sub-block `j` is bit `j` of
//! `qh[l]`. Value in sub-block `j`: `d·sc[j]·q − dmin·m[j]`.

use std::mem::size_of;

use half::f16;

use super::k_scales::{quantize_min_max, unpack_scales_mins};
use super::pack::dot_i32;
use super::{sealed::Plain, BlockQ8_K, GgmlType, QuantBlock, WeightBlock};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

const _: () = assert!(size_of::<BlockQ5_K>() == 176);

// SAFETY: `#[repr(C)]`, fields 2×f16 + [u8; 12] + [u8; 32] + [u8; 128] leave
// no padding (size asserted above), and every bit pattern of them is valid.
unsafe impl Plain for BlockQ5_K {}

impl BlockQ5_K {
    /// The unsigned quants `q ∈ [0, 31]`, in weight order.
    pub fn quants(&self) -> [u8; 256] {
        std::array::from_fn(|i| {
            let (j, l) = (i / 32, i % 32);
            let byte = self.qs[32 * (j / 2) + l];
            let low = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
            low | (((self.qh[l] >> j) & 1) << 4)
        })
    }

    /// Sub-block scales and mins, each in `[0, 63]`.
    pub fn scales_mins(&self) -> ([u8; 8], [u8; 8]) {
        unpack_scales_mins(&self.scales)
    }
}

impl QuantBlock for BlockQ5_K {
    const BLOCK: usize = 256;
    const NAME: &'static str = "Q5_K";

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
        let b = quantize_min_max(src, 31);
        let qs = std::array::from_fn(|k| {
            let (chunk, l) = (k / 32, k % 32);
            (b.q[64 * chunk + l] & 0x0F) | ((b.q[64 * chunk + 32 + l] & 0x0F) << 4)
        });
        let qh =
            std::array::from_fn(|l| (0..8).fold(0u8, |acc, j| acc | ((b.q[32 * j + l] >> 4) << j)));
        BlockQ5_K {
            d: b.d,
            dmin: b.dmin,
            scales: b.scales,
            qh,
            qs,
        }
    }
}

impl WeightBlock for BlockQ5_K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    type Activation = BlockQ8_K;

    fn vec_dot(w: &[Self], x: &[BlockQ8_K]) -> f32 {
        vec_dot_q5_k_q8_k(w, x)
    }
}

/// As [`super::vec_dot_q4_k_q8_k`], with 5-bit quants.
///
/// # Panics
/// If `w` and `x` hold different numbers of blocks.
pub fn vec_dot_q5_k_q8_k(w: &[BlockQ5_K], x: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), x.len(), "Q5_K row and Q8_K row differ in blocks");
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
        // d = 1.0, dmin = 0.5, scales = HAND_PACKED:
        // sc = [1, 2, 3, 63, 17, 33, 5, 48], m = [0, 1, 2, 3, 20, 4, 63, 1].
        // With qs = qh = 0, every weight of sub-block j is −0.5·m[j].
        let mut qs = [0u8; 128];
        let mut qh = [0u8; 32];
        qh[0] = 0b0000_0101; // bit 0: weight 0 (sub-block 0) +16; bit 2: weight 64 (sub-block 2) +16
        qh[31] = 0b1000_0010; // bit 1: weight 63 (sub-block 1) +16; bit 7: weight 255 (sub-block 7) +16
        qs[0] = 0x3F; // weight 0: 15 | 16 = 31 → 1·31 − 0 = 31; weight 32: q = 3 → 2·3 − 0.5·1 = 5.5
        qs[32] = 0x01; // weight 64: 1 | 16 = 17 → 3·17 − 0.5·2 = 50; weight 96: q = 0 → 63·0 − 0.5·3 = −1.5
        qs[127] = 0xA0; // weight 223: q = 0 → −0.5·63 = −31.5; weight 255: 10 | 16 = 26 → 48·26 − 0.5 = 1247.5
                        // weight 63 (qs[31] = 0, qh[31] bit 1): q = 16 → 2·16 − 0.5 = 31.5
        let block = BlockQ5_K {
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(0.5),
            scales: HAND_PACKED,
            qh,
            qs,
        };
        let mut out = [f32::NAN; 256];
        block.dequantize(&mut out);
        let m = [0.0, 1.0, 2.0, 3.0, 20.0, 4.0, 63.0, 1.0];
        let mut want: [f32; 256] = std::array::from_fn(|i| -0.5 * m[i / 32]);
        want[0] = 31.0;
        want[32] = 5.5;
        want[63] = 31.5;
        want[64] = 50.0;
        want[96] = -1.5;
        want[223] = -31.5;
        want[255] = 1247.5;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_error_within_half_a_step() {
        test_util::check_round_trip::<BlockQ5_K>(|blk| test_util::min_max_k_bound(blk, 31.0));
    }

    #[test]
    fn integer_dot_matches_dequantized_dot() {
        test_util::check_vec_dot::<BlockQ5_K>();
    }
}
