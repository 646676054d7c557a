//! Block quantization formats, byte-for-byte compatible with ggml/GGUF.
//!
//! Each format is one `#[repr(C)]` block struct in its own file, implementing
//! [`QuantBlock`] (quantize/dequantize one block) and, for weight formats,
//! [`WeightBlock`] (the scalar integer dot product against the activation
//! format it pairs with). Those scalar kernels are the numerical reference
//! that every SIMD kernel is tested against, so they favour obviousness:
//! decode the quants, multiply in `i32`, scale once per block in `f32`.
//!
//! Activations are quantized on the fly to one of three 8-bit formats:
//! - [`BlockQ8_0`] against Q4_0, Q5_0, Q8_0 (symmetric weights);
//! - [`BlockQ8_1`] against Q4_1, Q5_1, whose per-block min needs `Σx`,
//!   precomputed once per activation block as `s = d·Σq`;
//! - [`BlockQ8_K`] against the 256-weight K-quants, carrying per-16 sums of
//!   quants (`bsums`) so the weight mins cost one multiply per sub-block.

mod blocks;
mod f16;
mod k_scales;
mod pack;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod q8_1;
mod q8_k;
#[cfg(test)]
pub(crate) mod test_util;

pub use fulcrum_gguf::GgmlType;

pub(crate) use blocks::sealed;
pub use blocks::{blocks_as_bytes, blocks_from_bytes, load_blocks, CastError};
pub use q4_0::{vec_dot_q4_0_q8_0, BlockQ4_0};
pub use q4_1::{vec_dot_q4_1_q8_1, BlockQ4_1};
pub use q4_k::{vec_dot_q4_k_q8_k, BlockQ4_K};
pub use q5_0::{vec_dot_q5_0_q8_0, BlockQ5_0};
pub use q5_1::{vec_dot_q5_1_q8_1, BlockQ5_1};
pub use q5_k::{vec_dot_q5_k_q8_k, BlockQ5_K};
pub use q6_k::{vec_dot_q6_k_q8_k, BlockQ6_K};
pub use q8_0::{vec_dot_q8_0_q8_0, BlockQ8_0};
pub use q8_1::BlockQ8_1;
pub use q8_k::BlockQ8_K;

/// One block of a quantization format: `BLOCK` values stored in
/// `size_of::<Self>()` bytes, exactly as in a GGUF file.
///
/// The trait is sealed: the byte casts in this module rely on the layout
/// guarantees of the structs defined here.
pub trait QuantBlock: sealed::Plain + std::fmt::Debug + Send + Sync {
    /// Values per block.
    const BLOCK: usize;
    /// The format's name, as ggml spells it.
    const NAME: &'static str;

    /// Writes the block's `BLOCK` values to `out[..BLOCK]`.
    ///
    /// # Panics
    /// If `out` is shorter than `BLOCK`.
    fn dequantize(&self, out: &mut [f32]);

    /// Reference quantizer (round to nearest with the format's scale rule)
    /// of `src[..BLOCK]`.
    ///
    /// Values beyond the f16 range make the block's scale infinite; that is a
    /// limit of the format, not a panic.
    ///
    /// # Panics
    /// If `src` is shorter than `BLOCK`.
    fn quantize(src: &[f32]) -> Self;
}

/// A weight format, with the scalar integer kernel against its activation format.
pub trait WeightBlock: QuantBlock {
    /// The GGUF tensor type stored with this block.
    const TYPE: GgmlType;
    /// The 8-bit format activations are quantized to for this weight format.
    type Activation: QuantBlock;

    /// `Σ w·x` over one row of blocks.
    ///
    /// # Panics
    /// If `w.len() != x.len()`.
    fn vec_dot(w: &[Self], x: &[Self::Activation]) -> f32;
}

/// Dequantizes consecutive blocks into `out` (`blocks.len() * B::BLOCK` values).
///
/// # Panics
/// If `out.len() != blocks.len() * B::BLOCK`.
pub fn dequantize_blocks<B: QuantBlock>(blocks: &[B], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * B::BLOCK,
        "{} output length",
        B::NAME
    );
    for (block, chunk) in blocks.iter().zip(out.chunks_exact_mut(B::BLOCK)) {
        block.dequantize(chunk);
    }
}

/// Quantizes `src` into consecutive blocks.
///
/// # Panics
/// If `src.len() != out.len() * B::BLOCK`.
pub fn quantize_blocks<B: QuantBlock>(src: &[f32], out: &mut [B]) {
    assert_eq!(src.len(), out.len() * B::BLOCK, "{} input length", B::NAME);
    for (block, chunk) in out.iter_mut().zip(src.chunks_exact(B::BLOCK)) {
        *block = B::quantize(chunk);
    }
}

/// Quantizes an activation row for Q4_0/Q5_0/Q8_0 weights.
///
/// # Panics
/// If `x.len() != 32 * out.len()`.
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    quantize_blocks(x, out);
}

/// Quantizes an activation row for Q4_1/Q5_1 weights.
///
/// # Panics
/// If `x.len() != 32 * out.len()`.
pub fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    quantize_blocks(x, out);
}

/// Quantizes an activation row for K-quant weights.
///
/// # Panics
/// If `x.len() != 256 * out.len()`.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    quantize_blocks(x, out);
}

/// Decodes a row of `ty` stored as GGUF bytes into `dst`.
///
/// Misaligned `src` is accepted (copied first), so any byte slice works.
///
/// # Panics
/// If `dst.len()` is not a whole number of blocks or `src.len()` is not the
/// byte size of `dst.len()` values of `ty`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    let expected = row_bytes(ty, dst.len());
    assert_eq!(src.len(), expected, "{ty} row of {} values", dst.len());
    fn run<B: QuantBlock>(src: &[u8], dst: &mut [f32]) {
        dequantize_blocks(&load_blocks::<B>(src), dst);
    }
    match ty {
        GgmlType::F32 => f16::f32_row_from_bytes(src, dst),
        GgmlType::F16 => f16::f16_row_to_f32(src, dst),
        GgmlType::BF16 => f16::bf16_row_to_f32(src, dst),
        GgmlType::Q4_0 => run::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => run::<BlockQ4_1>(src, dst),
        GgmlType::Q5_0 => run::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => run::<BlockQ5_1>(src, dst),
        GgmlType::Q8_0 => run::<BlockQ8_0>(src, dst),
        GgmlType::Q4_K => run::<BlockQ4_K>(src, dst),
        GgmlType::Q5_K => run::<BlockQ5_K>(src, dst),
        GgmlType::Q6_K => run::<BlockQ6_K>(src, dst),
    }
}

/// Encodes a row of values as GGUF bytes of type `ty` (reference quantizers;
/// used to build synthetic models and in tests).
///
/// # Panics
/// If `src.len()` is not a whole number of `ty` blocks.
pub fn quantize_row(ty: GgmlType, src: &[f32]) -> Vec<u8> {
    let expected = row_bytes(ty, src.len());
    fn run<B: QuantBlock>(src: &[f32]) -> Vec<u8> {
        let blocks: Vec<B> = src.chunks_exact(B::BLOCK).map(B::quantize).collect();
        blocks_as_bytes(&blocks).to_vec()
    }
    let bytes = match ty {
        GgmlType::F32 => f16::f32_row_to_bytes(src),
        GgmlType::F16 => f16::f32_row_to_f16_bytes(src),
        GgmlType::BF16 => f16::f32_row_to_bf16_bytes(src),
        GgmlType::Q4_0 => run::<BlockQ4_0>(src),
        GgmlType::Q4_1 => run::<BlockQ4_1>(src),
        GgmlType::Q5_0 => run::<BlockQ5_0>(src),
        GgmlType::Q5_1 => run::<BlockQ5_1>(src),
        GgmlType::Q8_0 => run::<BlockQ8_0>(src),
        GgmlType::Q4_K => run::<BlockQ4_K>(src),
        GgmlType::Q5_K => run::<BlockQ5_K>(src),
        GgmlType::Q6_K => run::<BlockQ6_K>(src),
    };
    debug_assert_eq!(bytes.len(), expected);
    bytes
}

/// Bytes of a row of `n` values of `ty`, panicking on a partial block.
fn row_bytes(ty: GgmlType, n: usize) -> usize {
    ty.bytes_for(n as u64)
        .and_then(|b| usize::try_from(b).ok())
        .unwrap_or_else(|| panic!("{n} values are not a whole number of {ty} blocks"))
}

#[cfg(test)]
mod tests;
