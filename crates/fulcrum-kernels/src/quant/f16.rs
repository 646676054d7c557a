//! Unquantized rows: F32, F16 and BF16, stored little-endian.
//!
//! These read bytes with `from_le_bytes` rather than casting, because rows of
//! 2-byte values need not be 4-byte aligned and the cost is irrelevant next to
//! what a model does with them (norm weights, the odd F16 embedding table).

use half::{bf16, f16};

pub(crate) fn f32_row_from_bytes(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub(crate) fn f16_row_to_f32(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(crate) fn bf16_row_to_f32(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(crate) fn f32_row_to_bytes(src: &[f32]) -> Vec<u8> {
    src.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Round-to-nearest-even; out-of-range values become ±inf.
pub(crate) fn f32_row_to_f16_bytes(src: &[f32]) -> Vec<u8> {
    src.iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

/// Round-to-nearest-even on the upper 16 bits of the f32.
pub(crate) fn f32_row_to_bf16_bytes(src: &[f32]) -> Vec<u8> {
    src.iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::quant::{dequantize_row, quantize_row, GgmlType};

    #[test]
    fn decodes_hand_written_bytes() {
        // f16: 1.0 = 0x3C00, −2.0 = 0xC000, 0.5 = 0x3800, 65504 (max) = 0x7BFF.
        let mut out = [0.0; 4];
        dequantize_row(
            GgmlType::F16,
            &[0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0xFF, 0x7B],
            &mut out,
        );
        assert_eq!(out, [1.0, -2.0, 0.5, 65504.0]);
        // bf16 is the top half of an f32: 1.0 = 0x3F80, −2.0 = 0xC000, 3.0 = 0x4040, 2^-126 = 0x0080.
        dequantize_row(
            GgmlType::BF16,
            &[0x80, 0x3F, 0x00, 0xC0, 0x40, 0x40, 0x80, 0x00],
            &mut out,
        );
        assert_eq!(out, [1.0, -2.0, 3.0, f32::MIN_POSITIVE]);
        // f32: 1.5 = 0x3FC0_0000.
        let mut one = [0.0; 1];
        dequantize_row(GgmlType::F32, &[0x00, 0x00, 0xC0, 0x3F], &mut one);
        assert_eq!(one, [1.5]);
    }

    #[test]
    fn encodes_with_the_expected_rounding() {
        // 1 + 2^-11 is halfway between f16 1.0 and 1 + 2^-10: ties to even → 1.0.
        assert_eq!(
            quantize_row(GgmlType::F16, &[1.0 + 2f32.powi(-11)]),
            vec![0x00, 0x3C]
        );
        // bf16 steps by 2^-7 near 1; 3·2^-9 is 0.75 of a step → 1 + 2^-7 = 0x3F81.
        assert_eq!(
            quantize_row(GgmlType::BF16, &[1.0 + 3.0 * 2f32.powi(-9)]),
            vec![0x81, 0x3F]
        );
        assert_eq!(
            quantize_row(GgmlType::F32, &[1.5]),
            vec![0x00, 0x00, 0xC0, 0x3F]
        );
    }
}
