//! Weights repacked once, at load time, into the layout the SIMD kernels want.
//!
//! GGUF stores each block as a struct (scales next to quants). The kernels
//! instead consume *groups* of 128 weights (four 32-weight blocks) as two
//! 64-byte vectors — the low halves (weights 0–15) of the four blocks, then
//! their high halves (16–31) — so one 64-byte load of 4-bit quants yields
//! both vectors with a mask and a shift, and `vpdpbusd` multiplies them
//! against activations stored in the same order. Every format becomes:
//!
//! `w = scale · (level − offset) + min`
//!
//! with an unsigned `level` of 4, 5, 6 or 8 bits, a scale per 32 (or per 16)
//! weights, an integer `offset` (a power of two, folded into the integer dot
//! product exactly) or a float `min` per 32 weights. The K-quants' two-level
//! scales are multiplied out (exact in f32), so a single kernel shape serves
//! all eight GGUF formats. The bytes per weight stay as in the file (plus at
//! most a few percent for f32 scales of the K-quants), because single-token
//! decode reads every weight once per token and is bound by memory traffic.
//!
//! Group record, per row, for a full group (128 weights):
//! `[quants][bit planes][scales][mins]`:
//! - quants: 4-bit nibbles, 64 bytes, block b's byte j holding weight j (low
//!   nibble) and weight j+16 (high nibble) — the Q4_0 convention; 8-bit
//!   levels: 128 bytes, the low-half vector then the high-half vector;
//! - bit planes (5- and 6-bit levels): one u64 mask per vector and plane
//!   (bit 16b+i of the low-half mask is bit 4 of block b's weight i);
//! - scales: 4 per group (8 for per-16 scales, ordered b0 low, b0 high, b1 …),
//!   f16 or f32; mins: 4, same type.
//!
//! A row whose length is 64 mod 128 ends with a half group (two blocks) packed
//! as a single vector `[b0 low, b1 low, b0 high, b1 high]`.

use fulcrum_gguf::GgmlType;
use half::f16;

use crate::matmul::WeightMatrix;
use crate::quant::{
    dequantize_row, load_blocks, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
};

/// Quant width of the packed levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bits {
    B4,
    B5,
    B6,
    B8,
}

/// How a packed quantized matrix is laid out and what its numbers mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantLayout {
    pub bits: Bits,
    /// Scales (and mins) stored as f32 rather than f16.
    pub f32_scales: bool,
    /// One scale per 16 weights instead of per 32.
    pub per16: bool,
    /// `offset = 1 << shift`, subtracted from every level (exactly, in integers).
    pub offset_shift: Option<u32>,
    /// A float min per 32 weights.
    pub float_min: bool,
}

impl QuantLayout {
    pub fn for_type(ty: GgmlType) -> Option<QuantLayout> {
        let l = |bits, f32_scales, per16, offset_shift, float_min| Some(QuantLayout { bits, f32_scales, per16, offset_shift, float_min });
        match ty {
            GgmlType::Q4_0 => l(Bits::B4, false, false, Some(3), false),
            GgmlType::Q4_1 => l(Bits::B4, false, false, None, true),
            GgmlType::Q5_0 => l(Bits::B5, false, false, Some(4), false),
            GgmlType::Q5_1 => l(Bits::B5, false, false, None, true),
            GgmlType::Q8_0 => l(Bits::B8, false, false, Some(7), false),
            GgmlType::Q4_K => l(Bits::B4, true, false, None, true),
            GgmlType::Q5_K => l(Bits::B5, true, false, None, true),
            GgmlType::Q6_K => l(Bits::B6, true, true, Some(5), false),
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => None,
        }
    }

    fn scale_bytes(&self) -> usize {
        if self.f32_scales {
            4
        } else {
            2
        }
    }

    /// Scales per group of `blocks` 32-weight blocks.
    pub fn scales_per(&self, blocks: usize) -> usize {
        if self.per16 {
            2 * blocks
        } else {
            blocks
        }
    }

    fn quant_bytes(&self, weights: usize) -> usize {
        match self.bits {
            Bits::B8 => weights,
            _ => weights / 2,
        }
    }

    fn num_planes(&self) -> usize {
        match self.bits {
            Bits::B5 => 1,
            Bits::B6 => 2,
            _ => 0,
        }
    }

    /// Byte offsets inside a group record of `blocks` (4 or 2) blocks:
    /// (planes, scales, mins, total).
    pub fn record(&self, blocks: usize) -> RecordLayout {
        let vectors = blocks / 2; // a full group has 2 vectors, a half group 1
        let planes = self.quant_bytes(32 * blocks);
        let scales = planes + 8 * self.num_planes() * vectors;
        let mins = scales + self.scale_bytes() * self.scales_per(blocks);
        let total = mins + if self.float_min { self.scale_bytes() * blocks } else { 0 };
        RecordLayout { planes, scales, mins, total }
    }
}

/// Offsets of the parts of one group record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    pub planes: usize,
    pub scales: usize,
    pub mins: usize,
    pub total: usize,
}

/// The stored numbers of a matrix.
#[derive(Clone, Debug)]
pub enum PackedData {
    /// Quantized, in group records; see the module doc.
    Quant { layout: QuantLayout, bytes: AlignedBytes },
    /// Float weights widened to f32, `[rows, cols]`.
    F32(Vec<f32>),
}

/// A weight matrix of `rows` outputs × `cols` inputs, packed for the kernels.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// Columns rounded up to a multiple of 64 (zero weights fill the gap).
    pub padded_cols: usize,
    /// Full 128-weight groups per row, and whether a 64-weight half group follows.
    pub full_groups: usize,
    pub has_half: bool,
    /// Bytes per packed row (a multiple of 64).
    pub row_stride: usize,
    pub data: PackedData,
}

/// A 64-byte aligned byte buffer (cache lines; aligned vector loads).
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    words: Vec<Align64>,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl AlignedBytes {
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes { words: vec![Align64([0; 64]); len.div_ceil(64)], len }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `words` owns `len.div_ceil(64) * 64 >= len` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One row decoded to `w = scale · (level − offset) + min`.
struct DecodedRow {
    levels: Vec<u8>,
    /// Per 32 weights (or per 16 with `per16`).
    scales: Vec<f32>,
    /// Per 32 weights, when the format has mins.
    mins: Vec<f32>,
}

impl PackedMatrix {
    /// Repacks a GGUF matrix. Rows are independent, so this is a plain loop.
    pub fn pack(w: &WeightMatrix) -> PackedMatrix {
        let padded_cols = w.cols.div_ceil(64) * 64;
        let full_groups = padded_cols / 128;
        let has_half = padded_cols % 128 != 0;
        let Some(layout) = QuantLayout::for_type(w.ty) else {
            // F32 / F16 / BF16: widen once.
            let mut out = vec![0f32; w.rows * w.cols];
            for (r, dst) in out.chunks_exact_mut(w.cols.max(1)).enumerate().take(w.rows) {
                dequantize_row(w.ty, w.row(r), dst);
            }
            return PackedMatrix { ty: w.ty, rows: w.rows, cols: w.cols, padded_cols, full_groups, has_half, row_stride: 0, data: PackedData::F32(out) };
        };
        let full = layout.record(4).total;
        let half = if has_half { layout.record(2).total } else { 0 };
        let row_stride = (full_groups * full + half).div_ceil(64) * 64;
        let mut bytes = AlignedBytes::zeroed(row_stride * w.rows);
        for r in 0..w.rows {
            let dec = decode_row(w.ty, w.row(r), w.cols, padded_cols);
            let dst = &mut bytes.as_mut_slice()[r * row_stride..(r + 1) * row_stride];
            for g in 0..full_groups {
                write_group(&layout, &dec, 4 * g, 4, &mut dst[g * full..(g + 1) * full]);
            }
            if has_half {
                write_group(&layout, &dec, 4 * full_groups, 2, &mut dst[full_groups * full..full_groups * full + half]);
            }
        }
        PackedMatrix { ty: w.ty, rows: w.rows, cols: w.cols, padded_cols, full_groups, has_half, row_stride, data: PackedData::Quant { layout, bytes } }
    }

    /// Bytes the kernels read for one pass over the matrix.
    pub fn num_bytes(&self) -> usize {
        match &self.data {
            PackedData::Quant { bytes, .. } => bytes.len(),
            PackedData::F32(v) => v.len() * 4,
        }
    }
}

/// Decodes one GGUF row into levels, scales and mins, zero-padded to `padded` weights.
fn decode_row(ty: GgmlType, row: &[u8], cols: usize, padded: usize) -> DecodedRow {
    let per16 = ty == GgmlType::Q6_K;
    let mut d = DecodedRow {
        levels: vec![0; padded],
        scales: vec![0.0; if per16 { padded / 16 } else { padded / 32 }],
        mins: vec![0.0; padded / 32],
    };
    match ty {
        GgmlType::Q4_0 => {
            for (b, blk) in load_blocks::<BlockQ4_0>(row).iter().enumerate() {
                for (i, q) in blk.quants().into_iter().enumerate() {
                    d.levels[32 * b + i] = (q + 8) as u8;
                }
                d.scales[b] = blk.d.to_f32();
            }
        }
        GgmlType::Q4_1 => {
            for (b, blk) in load_blocks::<BlockQ4_1>(row).iter().enumerate() {
                d.levels[32 * b..32 * b + 32].copy_from_slice(&blk.quants());
                d.scales[b] = blk.d.to_f32();
                d.mins[b] = blk.m.to_f32();
            }
        }
        GgmlType::Q5_0 => {
            for (b, blk) in load_blocks::<BlockQ5_0>(row).iter().enumerate() {
                for (i, q) in blk.quants().into_iter().enumerate() {
                    d.levels[32 * b + i] = (q + 16) as u8;
                }
                d.scales[b] = blk.d.to_f32();
            }
        }
        GgmlType::Q5_1 => {
            for (b, blk) in load_blocks::<BlockQ5_1>(row).iter().enumerate() {
                d.levels[32 * b..32 * b + 32].copy_from_slice(&blk.quants());
                d.scales[b] = blk.d.to_f32();
                d.mins[b] = blk.m.to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (b, blk) in load_blocks::<BlockQ8_0>(row).iter().enumerate() {
                for (i, &q) in blk.qs.iter().enumerate() {
                    d.levels[32 * b + i] = (q as i16 + 128) as u8;
                }
                d.scales[b] = blk.d.to_f32();
            }
        }
        GgmlType::Q4_K => {
            for (s, blk) in load_blocks::<BlockQ4_K>(row).iter().enumerate() {
                d.levels[256 * s..256 * s + 256].copy_from_slice(&blk.quants());
                let (sc, mn) = blk.scales_mins();
                for j in 0..8 {
                    d.scales[8 * s + j] = blk.d.to_f32() * f32::from(sc[j]);
                    d.mins[8 * s + j] = -blk.dmin.to_f32() * f32::from(mn[j]);
                }
            }
        }
        GgmlType::Q5_K => {
            for (s, blk) in load_blocks::<BlockQ5_K>(row).iter().enumerate() {
                d.levels[256 * s..256 * s + 256].copy_from_slice(&blk.quants());
                let (sc, mn) = blk.scales_mins();
                for j in 0..8 {
                    d.scales[8 * s + j] = blk.d.to_f32() * f32::from(sc[j]);
                    d.mins[8 * s + j] = -blk.dmin.to_f32() * f32::from(mn[j]);
                }
            }
        }
        GgmlType::Q6_K => {
            for (s, blk) in load_blocks::<BlockQ6_K>(row).iter().enumerate() {
                for (i, q) in blk.quants().into_iter().enumerate() {
                    d.levels[256 * s + i] = (q + 32) as u8;
                }
                for j in 0..16 {
                    d.scales[16 * s + j] = blk.d.to_f32() * f32::from(blk.scales[j]);
                }
            }
        }
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => unreachable!("float types are not quantized"),
    }
    debug_assert!(cols <= padded);
    d
}

/// Byte positions of weight `i` (0..32) of block `b` in a group of `blocks`
/// blocks: (vector index, byte index within the 64-byte vector).
pub fn vector_position(blocks: usize, b: usize, i: usize) -> (usize, usize) {
    let (half, j) = (i / 16, i % 16);
    if blocks == 4 {
        (half, 16 * b + j)
    } else {
        (0, 16 * (2 * half + b) + j)
    }
}

/// Writes blocks `first..first + blocks` of a decoded row as one group record.
fn write_group(layout: &QuantLayout, dec: &DecodedRow, first: usize, blocks: usize, out: &mut [u8]) {
    let rec = layout.record(blocks);
    let vectors = blocks / 2;
    let mut planes = vec![0u64; layout.num_planes() * vectors];
    for b in 0..blocks {
        let levels = &dec.levels[32 * (first + b)..32 * (first + b) + 32];
        match layout.bits {
            Bits::B8 => {
                for (i, &lv) in levels.iter().enumerate() {
                    let (v, byte) = vector_position(blocks, b, i);
                    out[64 * v + byte] = lv;
                }
            }
            _ => {
                // Q4_0 nibble convention inside the block's 16 bytes.
                for j in 0..16 {
                    out[16 * b + j] = (levels[j] & 0x0F) | ((levels[j + 16] & 0x0F) << 4);
                }
                for (i, &lv) in levels.iter().enumerate() {
                    let (v, byte) = vector_position(blocks, b, i);
                    for p in 0..layout.num_planes() {
                        if lv >> (4 + p) & 1 == 1 {
                            planes[p * vectors + v] |= 1u64 << byte;
                        }
                    }
                }
            }
        }
    }
    for (k, m) in planes.iter().enumerate() {
        out[rec.planes + 8 * k..rec.planes + 8 * k + 8].copy_from_slice(&m.to_le_bytes());
    }
    let per = layout.scales_per(1);
    let scales = &dec.scales[per * first..per * (first + blocks)];
    let mins = &dec.mins[first..first + blocks];
    put_floats(layout.f32_scales, scales, &mut out[rec.scales..rec.mins]);
    if layout.float_min {
        put_floats(layout.f32_scales, mins, &mut out[rec.mins..rec.total]);
    }
}

fn put_floats(as_f32: bool, vals: &[f32], out: &mut [u8]) {
    for (i, &v) in vals.iter().enumerate() {
        if as_f32 {
            out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        } else {
            // Exact: these values came from f16 fields.
            out[2 * i..2 * i + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
}
