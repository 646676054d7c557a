//! Small helpers shared by the block formats: scale search, bit packing and
//! the integer dot product every scalar kernel reduces to.

/// The element of largest magnitude, with its sign (the first one on ties).
///
/// The symmetric formats map this element to their most negative quant
/// (−8, −16) so the asymmetric range [−8, 7] is used fully on the side where
/// the extreme value lies.
pub(crate) fn signed_absmax(src: &[f32]) -> f32 {
    src.iter().fold(
        0.0f32,
        |best, &v| if v.abs() > best.abs() { v } else { best },
    )
}

/// Largest magnitude, ignoring sign.
pub(crate) fn absmax(src: &[f32]) -> f32 {
    src.iter().fold(0.0f32, |best, &v| best.max(v.abs()))
}

/// `(min, max)` of a non-empty slice; NaNs are skipped by `f32::min`/`max`.
pub(crate) fn min_max(src: &[f32]) -> (f32, f32) {
    src.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// `1 / d`, or 0 for a zero scale (an all-zero block quantizes to the zero quant).
pub(crate) fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Rounds to the nearest integer and clamps into `[lo, hi]`; NaN becomes `lo`.
pub(crate) fn round_clamp(v: f32, lo: i32, hi: i32) -> i32 {
    let r = v.round();
    if r >= lo as f32 {
        (r as i32).min(hi)
    } else {
        lo
    }
}

/// Splits 32 four-bit values into the ggml nibble order: value `j` in the low
/// nibble of byte `j`, value `j + 16` in the high nibble.
pub(crate) fn pack_nibbles_32(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0x0F) | (q[j + 16] << 4))
}

/// Inverse of [`pack_nibbles_32`].
pub(crate) fn unpack_nibbles_32(qs: &[u8; 16]) -> [u8; 32] {
    std::array::from_fn(|j| {
        if j < 16 {
            qs[j] & 0x0F
        } else {
            qs[j - 16] >> 4
        }
    })
}

/// Bit 4 of each of 32 five-bit values, as the little-endian `qh` word of
/// Q5_0/Q5_1 (bit `j` belongs to value `j`).
pub(crate) fn pack_high_bits_32(q: &[u8; 32]) -> [u8; 4] {
    let qh = q
        .iter()
        .enumerate()
        .fold(0u32, |acc, (j, &v)| acc | (u32::from(v >> 4) & 1) << j);
    qh.to_le_bytes()
}

/// Adds the fifth bit from `qh` to 32 four-bit values.
pub(crate) fn with_high_bits_32(mut q: [u8; 32], qh: &[u8; 4]) -> [u8; 32] {
    let qh = u32::from_le_bytes(*qh);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> j) & 1) as u8) << 4;
    }
    q
}

/// `Σ a[i]·b[i]` in `i32`: the exact integer core of every scalar kernel.
///
/// No overflow for any block: at most 256 products of magnitude ≤ 127·128.
pub(crate) fn dot_i32<A: Copy + Into<i32>>(a: &[A], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.into() * i32::from(y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_and_high_bit_packing_round_trips() {
        let q: [u8; 32] = std::array::from_fn(|j| (j as u8 * 7) % 32);
        let lo: [u8; 32] = std::array::from_fn(|j| q[j] & 0x0F);
        assert_eq!(unpack_nibbles_32(&pack_nibbles_32(&lo)), lo);
        assert_eq!(with_high_bits_32(lo, &pack_high_bits_32(&q)), q);
    }

    #[test]
    fn round_clamp_handles_nan_and_range() {
        assert_eq!(round_clamp(f32::NAN, -8, 7), -8);
        assert_eq!(round_clamp(7.6, -8, 7), 7);
        assert_eq!(round_clamp(-100.0, -8, 7), -8);
        assert_eq!(round_clamp(2.5, 0, 15), 3); // half away from zero
    }

    #[test]
    fn signed_absmax_keeps_the_sign() {
        assert_eq!(signed_absmax(&[1.0, -3.0, 2.0]), -3.0);
        assert_eq!(signed_absmax(&[0.0; 4]), 0.0);
    }
}
