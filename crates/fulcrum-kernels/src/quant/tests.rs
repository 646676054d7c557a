//! The block structs against GGUF's type table, and the row API.

use super::*;
use std::mem::size_of;

fn check_weight<W: WeightBlock>() {
    assert_eq!(W::BLOCK, W::TYPE.block_size(), "{}", W::NAME);
    assert_eq!(size_of::<W>(), W::TYPE.type_size(), "{}", W::NAME);
    assert_eq!(W::NAME, W::TYPE.name());
    assert_eq!(W::Activation::BLOCK, W::BLOCK, "{}", W::NAME);
}

#[test]
fn block_structs_agree_with_gguf_type_table() {
    check_weight::<BlockQ4_0>();
    check_weight::<BlockQ4_1>();
    check_weight::<BlockQ5_0>();
    check_weight::<BlockQ5_1>();
    check_weight::<BlockQ8_0>();
    check_weight::<BlockQ4_K>();
    check_weight::<BlockQ5_K>();
    check_weight::<BlockQ6_K>();
}

#[test]
fn row_api_round_trips_every_type_even_misaligned() {
    let src: Vec<f32> = (0..512)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    for ty in GgmlType::ALL {
        let bytes = quantize_row(ty, &src);
        assert_eq!(bytes.len(), ty.type_size() * 512 / ty.block_size(), "{ty}");
        // Shift by one byte so block structs with alignment > 1 take the copy path.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let mut out = vec![0.0; 512];
        dequantize_row(ty, &shifted[1..], &mut out);
        let max_err = src
            .iter()
            .zip(&out)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        // Range is [−2, 2]: the coarsest format (4-bit) is within ~2/7.
        assert!(max_err < 0.3, "{ty}: max error {max_err}");
    }
}

#[test]
#[should_panic(expected = "not a whole number of Q4_K blocks")]
fn partial_block_row_is_rejected() {
    quantize_row(GgmlType::Q4_K, &[0.0; 100]);
}
