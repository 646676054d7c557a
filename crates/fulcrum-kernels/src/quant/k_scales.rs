//! What Q4_K and Q5_K share: 8 sub-blocks of 32 values, each with a 6-bit
//! scale and a 6-bit min, packed into 12 bytes; and the reference quantizer
//! that chooses them.
//!
//! Packing of `sc[0..8]`, `m[0..8]` (each < 64) into `bytes[0..12]`:
//! - `bytes[j]`, j < 4: low 6 bits `sc[j]`, top 2 bits = bits 4–5 of `sc[j + 4]`;
//! - `bytes[j + 4]`, j < 4: low 6 bits `m[j]`, top 2 bits = bits 4–5 of `m[j + 4]`;
//! - `bytes[j + 8]`, j < 4: low nibble = bits 0–3 of `sc[j + 4]`, high nibble = bits 0–3 of `m[j + 4]`.

use half::f16;

use super::pack::round_clamp;

/// Sub-block scales and mins of a Q4_K/Q5_K block.
pub(crate) fn unpack_scales_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = packed[j] & 0x3F;
        m[j] = packed[j + 4] & 0x3F;
        sc[j + 4] = (packed[j + 8] & 0x0F) | ((packed[j] >> 6) << 4);
        m[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// Inverse of [`unpack_scales_mins`]; values must be < 64.
pub(crate) fn pack_scales_mins(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    debug_assert!(sc.iter().chain(m).all(|&v| v < 64));
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    packed
}

/// The smallest f16 not below `v` (for finite `v ≥ 0`).
///
/// Super-block scales are rounded *up* so that `max / d` never exceeds the
/// integer scale range after the f16 rounding; rounding to nearest could
/// push the largest sub-block's scale to 64 (or 128) and force clipping.
pub(crate) fn f16_at_least(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() < v {
        f16::from_bits(h.to_bits() + 1)
    } else {
        h
    }
}

/// The quantized form of one 256-value block with per-32 scale and min.
pub(crate) struct MinMaxBlock {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    /// Unsigned quants in `[0, nmax]`, in value order.
    pub q: [u8; 256],
}

/// Reference Q4_K/Q5_K quantizer: value ≈ `d·sc[j]·q − dmin·m[j]`.
///
/// Per sub-block the offset `dmin·m[j]` is rounded up to cover `−min(0, min)`
/// and the step `d·sc[j]` is rounded up to cover the shifted maximum, so no
/// value clips and the error stays within half a step. Not llama.cpp's
/// iterative search: simpler, valid, and accurate to about half a step.
pub(crate) fn quantize_min_max(src: &[f32], nmax: u8) -> MinMaxBlock {
    let src = &src[..256];
    let nmax_f = f32::from(nmax);
    // Offsets making each sub-block non-negative; the format stores −min ≥ 0.
    let offsets: [f32; 8] = std::array::from_fn(|j| {
        -src[32 * j..32 * j + 32]
            .iter()
            .fold(0.0f32, |lo, &v| lo.min(v))
    });
    let dmin = f16_at_least(offsets.iter().fold(0.0f32, |a, &b| a.max(b)) / 63.0);
    let dmin_f = dmin.to_f32();
    let m: [u8; 8] = std::array::from_fn(|j| ceil_ratio(offsets[j], dmin_f, 63));
    let shift: [f32; 8] = std::array::from_fn(|j| dmin_f * f32::from(m[j]));

    let steps: [f32; 8] = std::array::from_fn(|j| {
        let top = src[32 * j..32 * j + 32]
            .iter()
            .fold(0.0f32, |hi, &v| hi.max(v + shift[j]));
        top / nmax_f
    });
    let d = f16_at_least(steps.iter().fold(0.0f32, |a, &b| a.max(b)) / 63.0);
    let d_f = d.to_f32();
    let sc: [u8; 8] = std::array::from_fn(|j| ceil_ratio(steps[j], d_f, 63));

    let q = std::array::from_fn(|i| {
        let j = i / 32;
        let step = d_f * f32::from(sc[j]);
        if step > 0.0 {
            round_clamp((src[i] + shift[j]) / step, 0, i32::from(nmax)) as u8
        } else {
            0
        }
    });
    MinMaxBlock {
        d,
        dmin,
        scales: pack_scales_mins(&sc, &m),
        q,
    }
}

/// `ceil(num / den)` clamped to `[0, max]`; 0 when `den` is 0 or the ratio is NaN.
fn ceil_ratio(num: f32, den: f32, max: u8) -> u8 {
    if den > 0.0 {
        let r = (num / den).ceil();
        if r >= 0.0 {
            return r.min(f32::from(max)) as u8;
        }
    }
    0
}

/// The packing used by the hand-built Q4_K and Q5_K blocks:
/// sc = [1, 2, 3, 63, 17, 33, 5, 48], m = [0, 1, 2, 3, 20, 4, 63, 1].
/// Sub-blocks 4–7 split into (bits 4–5, bits 0–3):
/// sc: 17 = (01, 0001), 33 = (10, 0001), 5 = (00, 0101), 48 = (11, 0000)
/// m:  20 = (01, 0100),  4 = (00, 0100), 63 = (11, 1111),  1 = (00, 0001)
#[cfg(test)]
pub(crate) const HAND_PACKED: [u8; 12] = [
    1 | 0b01 << 6,  // 0x41: sc0 = 1,  sc4 high bits 01
    2 | 0b10 << 6,  // 0x82: sc1 = 2,  sc5 high bits 10
    3,              // 0x03: sc2 = 3,  sc6 high bits 00
    63 | 0b11 << 6, // 0xFF: sc3 = 63, sc7 high bits 11
    0b01 << 6,      // 0x40: m0 = 0,   m4 high bits 01
    1,              // 0x01: m1 = 1,   m5 high bits 00
    2 | 0b11 << 6,  // 0xC2: m2 = 2,   m6 high bits 11
    3,              // 0x03: m3 = 3,   m7 high bits 00
    0x1 | 0x4 << 4, // 0x41: sc4 low 0001, m4 low 0100
    0x1 | 0x4 << 4, // 0x41: sc5 low 0001, m5 low 0100
    0x5 | 0xF << 4, // 0xF5: sc6 low 0101, m6 low 1111
    0x1 << 4,       // 0x10: sc7 low 0000, m7 low 0001
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_hand_packed_scales_and_mins() {
        assert_eq!(
            HAND_PACKED,
            [0x41, 0x82, 0x03, 0xFF, 0x40, 0x01, 0xC2, 0x03, 0x41, 0x41, 0xF5, 0x10]
        );
        let (sc, m) = unpack_scales_mins(&HAND_PACKED);
        assert_eq!(sc, [1, 2, 3, 63, 17, 33, 5, 48]);
        assert_eq!(m, [0, 1, 2, 3, 20, 4, 63, 1]);
        assert_eq!(pack_scales_mins(&sc, &m), HAND_PACKED);
    }

    #[test]
    fn pack_unpack_round_trips_all_values() {
        for v in 0..64u8 {
            let sc: [u8; 8] = std::array::from_fn(|j| ((usize::from(v) + 7 * j) % 64) as u8);
            let m: [u8; 8] = std::array::from_fn(|j| ((usize::from(v) * 3 + 11 * j) % 64) as u8);
            assert_eq!(unpack_scales_mins(&pack_scales_mins(&sc, &m)), (sc, m));
        }
    }

    #[test]
    fn f16_at_least_rounds_up() {
        let v = 0.1f32; // f16 nearest is 0.0999756, below 0.1
        assert!(f16::from_f32(v).to_f32() < v);
        assert!(f16_at_least(v).to_f32() >= v);
        assert_eq!(f16_at_least(0.5), f16::from_f32(0.5));
        assert_eq!(f16_at_least(0.0), f16::ZERO);
    }
}
