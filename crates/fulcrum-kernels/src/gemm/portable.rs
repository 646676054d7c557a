//! The portable kernel over packed weights: the same arithmetic as the SIMD
//! kernels, lane for lane (16 lanes, fused multiply-adds, the same reduction
//! tree), so its results are bit-identical to the AVX-512 kernel's. It is the
//! kernel of CPUs without a SIMD path and the exact oracle for the SIMD tests.

use half::f16;

use super::activations::{QuantizedActivations, RECORD};
use super::lanes::*;
use super::packed::{Bits, PackedMatrix, QuantLayout};

type V = [f32; 16];
type I = [i32; 16];

fn read_i32(b: &[u8], at: usize) -> I {
    std::array::from_fn(|l| i32::from_le_bytes(b[at + 4 * l..at + 4 * l + 4].try_into().unwrap()))
}

fn read_f32(b: &[u8], at: usize) -> V {
    std::array::from_fn(|l| f32::from_le_bytes(b[at + 4 * l..at + 4 * l + 4].try_into().unwrap()))
}

fn dpbusd(acc: I, w: &[u8; 64], x: &[u8]) -> I {
    std::array::from_fn(|l| {
        let mut s = acc[l];
        for j in 0..4 {
            s = s.wrapping_add(i32::from(w[4 * l + j]) * i32::from(x[4 * l + j] as i8));
        }
        s
    })
}

fn cvt(v: I) -> V {
    v.map(|x| x as f32)
}

fn fma(a: V, b: V, c: V) -> V {
    std::array::from_fn(|l| a[l].mul_add(b[l], c[l]))
}

fn mul(a: V, b: V) -> V {
    std::array::from_fn(|l| a[l] * b[l])
}

fn add_i(a: I, b: I) -> I {
    std::array::from_fn(|l| a[l].wrapping_add(b[l]))
}

/// Horizontal sum in the order of the AVX-512 kernel's reduction.
pub(crate) fn hsum(v: &V) -> f32 {
    let s8: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    let s4: [f32; 4] = std::array::from_fn(|i| s8[i] + s8[i + 4]);
    let s2: [f32; 2] = std::array::from_fn(|i| s4[i] + s4[i + 2]);
    s2[0] + s2[1]
}

fn scales(layout: &QuantLayout, rec: &[u8], at: usize, count: usize, pattern: &[u32; 16]) -> V {
    let vals: Vec<f32> = (0..count)
        .map(|i| {
            if layout.f32_scales {
                f32::from_le_bytes(rec[at + 4 * i..at + 4 * i + 4].try_into().unwrap())
            } else {
                f16::from_le_bytes([rec[at + 2 * i], rec[at + 2 * i + 1]]).to_f32()
            }
        })
        .collect();
    pattern.map(|p| vals[p as usize])
}

/// Unpacked levels of vector `v` of a group record with `blocks` blocks.
fn levels(layout: &QuantLayout, rec: &[u8], blocks: usize, v: usize) -> [u8; 64] {
    let vectors = blocks / 2;
    let mut out = [0u8; 64];
    match layout.bits {
        Bits::B8 => out.copy_from_slice(&rec[64 * v..64 * v + 64]),
        _ => {
            for (byte, o) in out.iter_mut().enumerate() {
                *o = if blocks == 4 {
                    // Vector v holds nibble v of the 64 quant bytes.
                    (rec[byte] >> (4 * v)) & 0x0F
                } else {
                    // [b0 low, b1 low, b0 high, b1 high] from 32 quant bytes.
                    (rec[byte % 32] >> (4 * (byte / 32))) & 0x0F
                };
            }
            let planes = match layout.bits {
                Bits::B5 => 1,
                Bits::B6 => 2,
                _ => 0,
            };
            let at = layout.record(blocks).planes;
            for p in 0..planes {
                let o = at + 8 * (p * vectors + v);
                let mask = u64::from_le_bytes(rec[o..o + 8].try_into().unwrap());
                for (byte, lv) in out.iter_mut().enumerate() {
                    if mask >> byte & 1 == 1 {
                        *lv += 0x10 << p;
                    }
                }
            }
        }
    }
    out
}

/// `y[tok, row]` for all tokens and rows, one output at a time (tests).
#[cfg(test)]
pub fn matmul(acts: &QuantizedActivations, w: &PackedMatrix, layout: &QuantLayout, bytes: &[u8], y: &mut [f32], rows: std::ops::Range<usize>) {
    let n = w.rows;
    for tok in 0..acts.m {
        let a = acts.token(tok);
        for r in rows.clone() {
            y[tok * n + r] = dot(layout, &bytes[r * w.row_stride..(r + 1) * w.row_stride], w, a);
        }
    }
}

/// One output: a packed row against one token's records.
pub(crate) fn dot(layout: &QuantLayout, row: &[u8], w: &PackedMatrix, a: &[u8]) -> f32 {
    let mut acc: V = [0.0; 16];
    let full = layout.record(4);
    let shift = layout.offset_shift;
    for g in 0..w.full_groups + w.has_half as usize {
        let is_full = g < w.full_groups;
        let blocks = if is_full { 4 } else { 2 };
        let rl = layout.record(blocks);
        let rec = &row[g.min(w.full_groups) * full.total..];
        let x = &a[g * RECORD..(g + 1) * RECORD];
        let dx = read_f32(x, 128);
        let (xs_lo, xs_hi) = (read_i32(x, 192), read_i32(x, 256));
        let neg_shl = |s: I| -> I { shift.map_or([0; 16], |sh| s.map(|v| v.wrapping_shl(sh).wrapping_neg())) };
        let (p_lo, p_hi, p_min) = match (is_full, layout.per16) {
            (true, false) => (&FULL_PER32, &FULL_PER32, &FULL_PER32),
            (true, true) => (&FULL_PER16_LO, &FULL_PER16_HI, &FULL_PER32),
            (false, false) => (&HALF_PER32, &HALF_PER32, &HALF_PER32),
            (false, true) => (&HALF_PER16, &HALF_PER16, &HALF_PER32),
        };
        let nscales = layout.scales_per(blocks);
        let ws_lo = scales(layout, rec, rl.scales, nscales, p_lo);
        let wlo = levels(layout, rec, blocks, 0);
        if is_full {
            let whi = levels(layout, rec, blocks, 1);
            if !layout.per16 {
                let init = neg_shl(add_i(xs_lo, xs_hi));
                let isum = dpbusd(dpbusd(init, &wlo, &x[0..64]), &whi, &x[64..128]);
                acc = fma(cvt(isum), mul(ws_lo, dx), acc);
            } else {
                let ws_hi = scales(layout, rec, rl.scales, nscales, p_hi);
                let isl = dpbusd(neg_shl(xs_lo), &wlo, &x[0..64]);
                let ish = dpbusd(neg_shl(xs_hi), &whi, &x[64..128]);
                acc = fma(cvt(isl), mul(ws_lo, dx), acc);
                acc = fma(cvt(ish), mul(ws_hi, dx), acc);
            }
            if layout.float_min {
                let wm = scales(layout, rec, rl.mins, blocks, p_min);
                acc = fma(wm, read_f32(x, 320), acc);
            }
        } else {
            let isum = dpbusd(neg_shl(xs_lo), &wlo, &x[0..64]);
            acc = fma(cvt(isum), mul(ws_lo, dx), acc);
            if layout.float_min {
                let wm = scales(layout, rec, rl.mins, blocks, p_min);
                acc = fma(wm, read_f32(x, 320), acc);
            }
        }
    }
    hsum(&acc)
}
