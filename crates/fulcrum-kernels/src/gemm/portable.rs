//! The quantized product written plainly: the arithmetic contract the SIMD
//! kernel reproduces bit for bit, and the kernel of CPUs without one.
//!
//! Per output (weight row r, token c), Q4_0…Q8_0 in the fast order
//! ([`Numerics::Fast`](super::Numerics::Fast)): for each 32-weight block
//! in order, the exact integer sum `Σ level·q − offset·Σq`, then one float
//! step `acc = fma(d_w·d_x, isum, acc)` (the product of two f16 values and
//! the conversion are exact, so only the fused multiply-add rounds), and for
//! formats with a float min `acc = fma(m_b, s_b, acc)`. (llama.cpp keeps 8
//! float lanes per output instead; its results differ from these in the last
//! bits — a SIMD register here holds 16 outputs, not 2, which is what makes
//! batched products compute-efficient.)
//!
//! In llama.cpp's order ([`Numerics::LlamaCpp`](super::Numerics::LlamaCpp); `ggml_vec_dot_q4_1_q8_1`,
//! tinyBLAS for Q8_0/Q5_0 — the same shape): 8 f32 lanes; for each block in
//! order, lane j takes the integer sum of weights 4j..4j+3 times activations
//! (minus the offset correction), converted to f32, and accumulates
//! `fma(d_w·d_x, isum_j, acc_j)`; formats with a float min add
//! `fma(m_b, s_b, summs)` per block on the side; the result is
//! `hsum8(acc) + summs` with a fixed pairing tree.
//!
//! K-quants sum in integers per 256-weight super-block, then take one float
//! step (with [`Numerics::LlamaCppBatch`](super::Numerics::LlamaCppBatch), in the orders of llama.cpp's
//! batched kernels: [`SuperOrder`]), as llama.cpp's kernels for them do: Q4_K/Q5_K (its repacked path)
//! per output `acc += I·(d·dx)`, `acc_min += M·(dmin·dx)`, result
//! `acc − acc_min`, with `I = Σ sc·Σq·x` and `M = Σ mn·Σx`; Q6_K (its
//! `vec_dot`) per lane `l`: `S_l = Σ_b sc·Σ_(lane l of block b) q·x −
//! 32·(sc·Σx over block l)`, `acc_l = fma(dx·d, S_l, acc_l)`, result `hsum8`.

use half::f16;

use super::activations::{QuantizedActivations, AT_D, AT_LANE_SUMS, AT_SUM, AT_SUM_HI, AT_SUM_LO};
use super::layout::{group_position, register_position, Bits, QuantLayout, SuperK, SuperOrder};
use super::packed::PackedMatrix;

/// `((a4+a0) + (a6+a2)) + ((a5+a1) + (a7+a3))`: llama.cpp's `hsum_float_8`.
pub(crate) fn hsum8(a: &[f32; 8]) -> f32 {
    let r: [f32; 4] = std::array::from_fn(|i| a[i + 4] + a[i]);
    (r[0] + r[2]) + (r[1] + r[3])
}

fn read_scale(layout: &QuantLayout, rec: &[u8], at: usize, i: usize) -> f32 {
    if layout.f32_scales {
        f32::from_le_bytes(rec[at + 4 * i..at + 4 * i + 4].try_into().unwrap())
    } else {
        f16::from_le_bytes([rec[at + 2 * i], rec[at + 2 * i + 1]]).to_f32()
    }
}

/// Levels of row `r % 16` of a 16-row group record, in weight order.
fn group16_levels(layout: &QuantLayout, rec: &[u8], r: usize) -> [u8; 32] {
    let rl = layout.record();
    std::array::from_fn(|i| {
        let (byte, high, slice, bit) = group_position(layout.bits, r % 16, i);
        match layout.bits {
            Bits::B8 => rec[byte],
            _ => {
                let nibble = if high {
                    rec[byte] >> 4
                } else {
                    rec[byte] & 0x0F
                };
                let plane = layout.bits == Bits::B5
                    && rec[rl.planes + 8 * slice + bit / 8] >> (bit % 8) & 1 == 1;
                nibble | u8::from(plane) << 4
            }
        }
    })
}

/// Levels of row `r % 4` of a four-row group record (llama.cpp order), in weight order.
fn group4_levels(layout: &QuantLayout, rec: &[u8], r: usize) -> [u8; 32] {
    let rl = layout.record();
    let (p, ri) = ((r % 4) / 2, r % 2);
    std::array::from_fn(|i| match layout.bits {
        Bits::B8 => rec[64 * p + register_position(ri, i)] ^ 0x80,
        _ => {
            let byte = rec[16 * (r % 4) + i % 16];
            let nibble = if i < 16 { byte & 0x0F } else { byte >> 4 };
            let high = if layout.bits == Bits::B5 {
                let plane = u64::from_le_bytes(
                    rec[rl.planes + 8 * p..rl.planes + 8 * p + 8]
                        .try_into()
                        .unwrap(),
                );
                ((plane >> register_position(ri, i)) & 1) as u8
            } else {
                0
            };
            nibble | high << 4
        }
    })
}

/// Levels of row `ri` (0 = A, 1 = B) of a K-quant pair record, in weight order.
pub(crate) fn levels(layout: &QuantLayout, rec: &[u8], ri: usize) -> [u8; 32] {
    let rl = layout.record();
    let mut out = [0u8; 32];
    match layout.bits {
        Bits::B8 => out.copy_from_slice(&rec[32 * ri..32 * ri + 32]),
        _ => {
            for j in 0..16 {
                let byte = rec[16 * ri + j];
                out[j] = byte & 0x0F;
                out[j + 16] = byte >> 4;
            }
            for p in 0..layout.num_planes() {
                let mask = u64::from_le_bytes(
                    rec[rl.planes + 8 * p..rl.planes + 8 * p + 8]
                        .try_into()
                        .unwrap(),
                );
                for (i, lv) in out.iter_mut().enumerate() {
                    if mask >> (32 * ri + i) & 1 == 1 {
                        *lv += 0x10 << p;
                    }
                }
            }
        }
    }
    out
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// One output of a K-quant matrix, rounded in `order`.
#[allow(clippy::too_many_arguments)]
fn dot_super(
    kind: SuperK,
    order: SuperOrder,
    layout: &QuantLayout,
    bytes: &[u8],
    w: &PackedMatrix,
    acts: &QuantizedActivations,
    r: usize,
    tok: usize,
) -> f32 {
    let rl = layout.record();
    let ri = r % 2;
    let rec_of = |b: usize| &bytes[w.record_offset(layout, r, b)..][..rl.total];
    let a = acts.token(tok);
    let (mut acc, mut acc_min) = (0f32, 0f32);
    let mut lanes = [0f32; 8];
    let span = if order == SuperOrder::Gemm4 { 2 } else { 8 };
    debug_assert!(span == 8 || kind == SuperK::Mins);
    let tiled = order == SuperOrder::Tiled;
    for b0 in (0..w.blocks).step_by(span) {
        let sb = b0 / 8;
        let (mut i_sum, mut m_sum) = (0i32, 0i32);
        let mut s_l = [0i32; 8];
        let mut dx = 0f32;
        for b in b0..b0 + span {
            let rec = rec_of(b);
            let x = &a[b * acts.record..(b + 1) * acts.record];
            dx = f32_at(x, AT_D);
            let lv = levels(layout, rec, ri);
            let qx = |l: usize| {
                (4 * l..4 * l + 4)
                    .map(|t| i32::from(lv[t]) * i32::from(x[t] as i8))
                    .sum::<i32>()
            };
            match kind {
                SuperK::Mins => {
                    let sc = i32::from(rec[rl.scales + ri]);
                    let mn = i32::from(rec[rl.scales + 2 + ri]);
                    i_sum += sc * (0..8).map(qx).sum::<i32>();
                    m_sum += mn * i32_at(x, AT_SUM);
                }
                SuperK::Signed16 => {
                    for (l, s) in s_l.iter_mut().enumerate() {
                        let sc = i32::from(rec[rl.scales + 2 * ri + l / 4] as i8);
                        *s += sc * qx(l);
                    }
                }
            }
        }
        // d and dmin (all 16 scales for Q6_K) live in the super-block's last record.
        let last = rec_of(8 * sb + 7);
        match kind {
            SuperK::Mins => {
                let (d, dmin) = (
                    f32_at(last, rl.scales + 4 + 4 * ri),
                    f32_at(last, rl.scales + 12 + 4 * ri),
                );
                acc = (i_sum as f32).mul_add(d * dx, acc);
                acc_min = (m_sum as f32).mul_add(dmin * dx, acc_min);
            }
            SuperK::Signed16 => {
                let d = f32_at(last, rl.scales + 36 + 4 * ri);
                let mut total = 0;
                for (l, s) in s_l.iter().enumerate() {
                    // The offset correction of block l, all in lane l.
                    let x = &a[(8 * sb + l) * acts.record..(8 * sb + l + 1) * acts.record];
                    let sc = |h: usize| i32::from(last[rl.scales + 4 + 16 * ri + 2 * l + h] as i8);
                    let corr = (sc(0) * i32_at(x, AT_SUM_LO) + sc(1) * i32_at(x, AT_SUM_HI)) << 5;
                    total += s - corr;
                    lanes[l] = (dx * d).mul_add((s - corr) as f32, lanes[l]);
                }
                if tiled {
                    acc = (total as f32 * d).mul_add(dx, acc);
                }
            }
        }
    }
    match kind {
        SuperK::Mins => acc - acc_min,
        SuperK::Signed16 if tiled => acc,
        SuperK::Signed16 => hsum8(&lanes),
    }
}

/// One output of a Q4_K/Q5_K matrix in 16-row groups: [`dot_super`]'s
/// `VecDot` arithmetic for `SuperK::Mins`, read from the group records.
fn dot_super16(
    layout: &QuantLayout,
    bytes: &[u8],
    w: &PackedMatrix,
    acts: &QuantizedActivations,
    r: usize,
    tok: usize,
) -> f32 {
    let rl = layout.record();
    let a = acts.token(tok);
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for sb in 0..w.blocks / 8 {
        let (mut i_sum, mut m_sum) = (0i32, 0i32);
        for b in 8 * sb..8 * sb + 8 {
            let rec = &bytes[w.record_offset(layout, r, b)..][..rl.total];
            let x = &a[b * acts.record..(b + 1) * acts.record];
            let lv = group16_levels(layout, rec, r);
            let qx: i32 = lv
                .iter()
                .enumerate()
                .map(|(t, &l)| i32::from(l) * i32::from(x[t] as i8))
                .sum();
            i_sum += i32::from(rec[rl.scales + r % 16]) * qx;
            m_sum += i32::from(rec[rl.mins + r % 16]) * i32_at(x, AT_SUM);
        }
        let dx = f32_at(&a[(8 * sb + 7) * acts.record..], AT_D);
        let trailer = &bytes[w.super16_trailer(layout, r, sb)..];
        let half = |i: usize| f16::from_le_bytes([trailer[2 * i], trailer[2 * i + 1]]).to_f32();
        let (d, dmin) = (half(r % 16), half(16 + r % 16));
        acc = (i_sum as f32).mul_add(d * dx, acc);
        acc_min = (m_sum as f32).mul_add(dmin * dx, acc_min);
    }
    acc - acc_min
}

/// One output: row `r` against token `tok`.
pub(crate) fn dot(
    layout: &QuantLayout,
    bytes: &[u8],
    w: &PackedMatrix,
    acts: &QuantizedActivations,
    r: usize,
    tok: usize,
) -> f32 {
    if layout.super16() {
        return dot_super16(layout, bytes, w, acts, r, tok);
    }
    if let Some(kind) = layout.super_k {
        return dot_super(
            kind,
            layout.super_order(tok, acts.m),
            layout,
            bytes,
            w,
            acts,
            r,
            tok,
        );
    }
    if layout.numerics.llama_order() {
        return dot_lanes8(layout, bytes, w, acts, r, tok);
    }
    let rl = layout.record();
    let a = acts.token(tok);
    let mut acc = 0f32;
    for b in 0..w.blocks {
        let rec = &bytes[w.record_offset(layout, r, b)..][..rl.total];
        let x = &a[b * acts.record..(b + 1) * acts.record];
        let lv = group16_levels(layout, rec, r);
        let mut isum = layout
            .offset_shift
            .map_or(0, |sh| (i32_at(x, AT_SUM) << sh).wrapping_neg());
        for (t, &l) in lv.iter().enumerate() {
            isum += i32::from(l) * i32::from(x[t] as i8);
        }
        let ws = read_scale(layout, rec, rl.scales, r % 16);
        acc = (ws * f32_at(x, AT_D)).mul_add(isum as f32, acc);
        if layout.float_min {
            acc = read_scale(layout, rec, rl.mins, r % 16).mul_add(acts.sum(b, tok), acc);
        }
    }
    acc
}

/// One output in llama.cpp's order (four-row group records).
fn dot_lanes8(
    layout: &QuantLayout,
    bytes: &[u8],
    w: &PackedMatrix,
    acts: &QuantizedActivations,
    r: usize,
    tok: usize,
) -> f32 {
    let rl = layout.record();
    let a = acts.token(tok);
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for b in 0..w.blocks {
        let rec = &bytes[w.record_offset(layout, r, b)..][..rl.total];
        let x = &a[b * acts.record..(b + 1) * acts.record];
        let lv = group4_levels(layout, rec, r);
        let dx = f32_at(x, AT_D);
        for (j, acc_j) in acc.iter_mut().enumerate() {
            let ls = i32_at(x, AT_LANE_SUMS + 4 * j);
            let mut isum = layout
                .offset_shift
                .map_or(0, |sh| (ls << sh).wrapping_neg());
            for t in 4 * j..4 * j + 4 {
                isum += i32::from(lv[t]) * i32::from(x[t] as i8);
            }
            let ws = read_scale(layout, rec, rl.scales, r % 4);
            *acc_j = (ws * dx).mul_add(isum as f32, *acc_j);
        }
        if layout.float_min {
            summs = read_scale(layout, rec, rl.mins, r % 4).mul_add(acts.sum(b, tok), summs);
        }
    }
    hsum8(&acc) + summs
}
