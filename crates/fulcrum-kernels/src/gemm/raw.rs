//! Unaligned reads of little-endian fields inside packed weight and
//! activation records, for the SIMD kernels (which walk records by pointer).
//!
//! # Safety
//! Every function requires `p` to point at that many readable bytes.

#![allow(dead_code)] // each instruction set uses its own subset

#[inline]
pub(crate) unsafe fn read_i32(p: *const u8) -> i32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { p.cast::<i32>().read_unaligned() }
}

#[inline]
pub(crate) unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { p.cast::<u32>().read_unaligned() }
}

#[inline]
pub(crate) unsafe fn read_u16(p: *const u8) -> u16 {
    // SAFETY: the caller guarantees 2 readable bytes.
    unsafe { p.cast::<u16>().read_unaligned() }
}

#[inline]
pub(crate) unsafe fn read_f32(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { p.cast::<f32>().read_unaligned() }
}

/// An f16 field, widened (exactly) to f32.
#[inline]
pub(crate) unsafe fn read_f16(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    half::f16::from_bits(unsafe { read_u16(p) }).to_f32()
}
