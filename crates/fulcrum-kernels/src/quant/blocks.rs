//! Viewing raw tensor bytes as block structs, and back.
//!
//! Weight data arrives as `&[u8]` (a memory-mapped GGUF file, a `Vec<u8>` from
//! a test writer). GGUF aligns tensor data to 32 bytes, so the zero-copy view
//! [`blocks_from_bytes`] almost always succeeds; [`load_blocks`] falls back to
//! an unaligned copy so that callers handing us an odd slice still get the
//! right numbers instead of a panic.

use std::borrow::Cow;
use std::mem::{align_of, size_of};

/// Marker for block structs that may be viewed as bytes and built from bytes.
///
/// Kept in a private module so no type outside this crate can claim it: the
/// casts below are only sound for the structs this crate defines.
pub(crate) mod sealed {
    /// # Safety
    /// The implementor is `#[repr(C)]`, has no padding bytes (its size equals
    /// the sum of its fields' sizes, checked by a `const` assert next to each
    /// struct), and every bit pattern of its fields is a valid value (only
    /// `u8`, `i8`, `i16`, `f32` and `half::f16` arrays).
    pub unsafe trait Plain: Copy + 'static {}
}

use sealed::Plain;

/// Why a byte slice cannot be viewed as blocks without copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CastError {
    /// The length is not a whole number of blocks.
    Length { len: usize, block_bytes: usize },
    /// The start address does not meet the block struct's alignment.
    Alignment { align: usize },
}

/// Views `bytes` as a slice of blocks without copying.
///
/// Fails when the slice is not a whole number of blocks or is misaligned for
/// `B` (at most 4 bytes; GGUF tensor data is 32-byte aligned).
pub fn blocks_from_bytes<B: Plain>(bytes: &[u8]) -> Result<&[B], CastError> {
    let block_bytes = size_of::<B>();
    let num_blocks = bytes.len() / block_bytes;
    if num_blocks * block_bytes != bytes.len() {
        return Err(CastError::Length {
            len: bytes.len(),
            block_bytes,
        });
    }
    // Alignments are powers of two; `is_multiple_of` is newer than our MSRV.
    if bytes.as_ptr() as usize & (align_of::<B>() - 1) > 0 {
        return Err(CastError::Alignment {
            align: align_of::<B>(),
        });
    }
    // SAFETY: the pointer is aligned for `B` (checked above), the slice covers
    // exactly `len / size_of::<B>()` whole blocks (checked above), and `B: Plain`
    // guarantees every bit pattern is a valid `B`. The lifetime is tied to `bytes`.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), num_blocks) })
}

/// Like [`blocks_from_bytes`], but copies when the slice is misaligned.
///
/// # Panics
/// If `bytes.len()` is not a multiple of `size_of::<B>()`.
pub fn load_blocks<B: Plain>(bytes: &[u8]) -> Cow<'_, [B]> {
    match blocks_from_bytes(bytes) {
        Ok(blocks) => Cow::Borrowed(blocks),
        Err(CastError::Alignment { .. }) => Cow::Owned(
            bytes
                .chunks_exact(size_of::<B>())
                // SAFETY: each chunk holds exactly `size_of::<B>()` readable bytes,
                // `read_unaligned` has no alignment requirement, and `B: Plain`
                // makes any bit pattern a valid `B`.
                .map(|chunk| unsafe { chunk.as_ptr().cast::<B>().read_unaligned() })
                .collect(),
        ),
        Err(CastError::Length { len, block_bytes }) => {
            panic!("{len} bytes is not a whole number of {block_bytes}-byte blocks")
        }
    }
}

/// Views blocks as their raw little-endian bytes (the GGUF encoding).
pub fn blocks_as_bytes<B: Plain>(blocks: &[B]) -> &[u8] {
    // SAFETY: `B: Plain` has no padding, so all `size_of_val(blocks)` bytes are
    // initialized; `u8` has alignment 1; the lifetime is tied to `blocks`.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{BlockQ4_0, BlockQ8_K, QuantBlock};

    #[test]
    fn misaligned_bytes_are_copied_not_rejected() {
        // Q8_K holds an f32, so its alignment is 4: offset 1 is misaligned.
        let block = BlockQ8_K::quantize(&[1.5; 256]);
        let mut buf = vec![0u8; 1 + size_of::<BlockQ8_K>()];
        buf[1..].copy_from_slice(blocks_as_bytes(&[block]));
        let view = &buf[1..];
        if view.as_ptr() as usize & 3 > 0 {
            assert_eq!(
                blocks_from_bytes::<BlockQ8_K>(view).unwrap_err(),
                CastError::Alignment { align: 4 }
            );
        }
        let loaded = load_blocks::<BlockQ8_K>(view);
        assert_eq!(blocks_as_bytes(&loaded), blocks_as_bytes(&[block]));
    }

    #[test]
    fn partial_block_is_a_length_error() {
        let bytes = [0u8; 19];
        assert_eq!(
            blocks_from_bytes::<BlockQ4_0>(&bytes).unwrap_err(),
            CastError::Length {
                len: 19,
                block_bytes: 18
            }
        );
    }
}
