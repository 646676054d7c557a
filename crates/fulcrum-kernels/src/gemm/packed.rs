//! Weights repacked once, at load time, into the records of `layout.rs`:
//! each GGUF row decoded to `w = scale · (level − offset) + min`, then
//! written group by group (or pair by pair) and block by block.

use fulcrum_gguf::GgmlType;
use half::f16;

use super::layout::{
    group_position, register_position, Bits, Numerics, QuantLayout, SuperK, SUPER16_TRAILER,
};
use super::WeightMatrix;
use crate::quant::{
    dequantize_row, load_blocks, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K,
    BlockQ6_K, BlockQ8_0,
};

/// The stored numbers of a matrix.
#[derive(Clone, Debug)]
pub enum PackedData {
    /// Quantized, in pair records; see the module doc.
    Quant {
        layout: QuantLayout,
        bytes: AlignedBytes,
    },
    /// Float weights widened to f32, `[rows, cols]`.
    F32(Vec<f32>),
}

/// A weight matrix of `rows` outputs × `cols` inputs, packed for the kernels.
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// 32-weight blocks per row.
    pub blocks: usize,
    /// Bytes per group of rows (`QuantLayout::group_rows`).
    pub group_stride: usize,
    pub data: PackedData,
}

/// A 64-byte aligned byte buffer.
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
        AlignedBytes {
            words: vec![Align64([0; 64]); len.div_ceil(64)],
            len,
        }
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
#[derive(Clone)]
struct DecodedRow {
    levels: Vec<u8>,
    /// Per 32 weights (per 16 for Q6_K).
    scales: Vec<f32>,
    /// Per 32 weights, when the format has mins.
    mins: Vec<f32>,
    /// K-quants: integer sub-block scales (per 32, per 16 for Q6_K) and
    /// mins (per 32), and per-super-block `d`, `dmin`.
    k_scales: Vec<i32>,
    k_mins: Vec<i32>,
    k_d: Vec<f32>,
    k_dmin: Vec<f32>,
}

impl PackedMatrix {
    /// Repacks a GGUF matrix (columns must be whole 32-weight blocks) for
    /// the default (fast) numerics.
    pub fn pack(w: &WeightMatrix) -> PackedMatrix {
        PackedMatrix::pack_with(w, Numerics::default())
    }

    /// Repacks a GGUF matrix for the kernels of `numerics`.
    pub fn pack_with(w: &WeightMatrix, numerics: Numerics) -> PackedMatrix {
        let blocks = w.cols / 32;
        let Some(layout) = QuantLayout::for_type(w.ty, numerics) else {
            return PackedMatrix::widened(w);
        };
        let rec = layout.record();
        let group_stride = if layout.super16() {
            blocks * rec.total + blocks / 8 * SUPER16_TRAILER
        } else if layout.super_k.is_some() {
            2 * blocks * rec.total
        } else {
            blocks * rec.total
        };
        let groups = w.rows.div_ceil(layout.group_rows());
        let mut bytes = AlignedBytes::zeroed(group_stride * groups);
        let mut packed = PackedMatrix {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            blocks,
            group_stride,
            data: PackedData::F32(Vec::new()),
        };
        let rows = RowSource::new(w);
        let out = bytes.as_mut_slice();
        if layout.super16() {
            packed.write_super16_groups(&layout, &rows, groups, out);
        } else if layout.super_k.is_some() {
            packed.write_pairs(&layout, &rows, groups, out);
        } else {
            packed.write_groups(&layout, &rows, groups, out);
        }
        packed.data = PackedData::Quant { layout, bytes };
        packed
    }

    /// Float weights (F32/F16/BF16 files) widened to f32, `[rows, cols]`.
    fn widened(w: &WeightMatrix) -> PackedMatrix {
        let mut out = vec![0f32; w.rows * w.cols];
        for (r, dst) in out.chunks_exact_mut(w.cols.max(1)).enumerate().take(w.rows) {
            dequantize_row(w.ty, w.row(r), dst);
        }
        PackedMatrix {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            blocks: w.cols / 32,
            group_stride: 0,
            data: PackedData::F32(out),
        }
    }

    /// [`QuantLayout::super16`] groups: records of 16 rows' levels and
    /// integer scales and mins, and after each super-block's eighth record
    /// the rows' `d` and `dmin`.
    fn write_super16_groups(
        &self,
        layout: &QuantLayout,
        rows: &RowSource,
        groups: usize,
        bytes: &mut [u8],
    ) {
        let rec = layout.record();
        for g in 0..groups {
            let group: Vec<DecodedRow> = (16 * g..16 * g + 16).map(|r| rows.get(r)).collect();
            for blk in 0..self.blocks {
                let at = self.record_offset(layout, 16 * g, blk);
                let out = &mut bytes[at..at + rec.total];
                write_group16_levels(layout, &group, blk, out);
                for (r, row) in group.iter().enumerate() {
                    out[rec.scales + r] = row.k_scales[blk] as u8;
                    out[rec.mins + r] = row.k_mins[blk] as u8;
                }
            }
            for sb in 0..self.blocks / 8 {
                let at = self.super16_trailer(layout, 16 * g, sb);
                let out = &mut bytes[at..at + SUPER16_TRAILER];
                let d: Vec<f32> = group.iter().map(|r| r.k_d[sb]).collect();
                let dmin: Vec<f32> = group.iter().map(|r| r.k_dmin[sb]).collect();
                put_floats(false, &d, &mut out[..32]);
                put_floats(false, &dmin, &mut out[32..]);
            }
        }
    }

    /// K-quant pair records.
    fn write_pairs(&self, layout: &QuantLayout, rows: &RowSource, groups: usize, bytes: &mut [u8]) {
        let total = layout.record().total;
        for pair in 0..2 * groups {
            let (a, b) = (rows.get(2 * pair), rows.get(2 * pair + 1));
            for blk in 0..self.blocks {
                let at = self.record_offset(layout, 2 * pair, blk);
                write_record(layout, [&a, &b], blk, &mut bytes[at..at + total]);
            }
        }
    }

    /// Q4_0…Q8_0 group records: 16 rows in the fast order, 4 in llama.cpp's.
    fn write_groups(
        &self,
        layout: &QuantLayout,
        rows: &RowSource,
        groups: usize,
        bytes: &mut [u8],
    ) {
        let (gr, total) = (layout.group_rows(), layout.record().total);
        for g in 0..groups {
            let group: Vec<DecodedRow> = (gr * g..gr * g + gr).map(|r| rows.get(r)).collect();
            for blk in 0..self.blocks {
                let at = self.record_offset(layout, gr * g, blk);
                let out = &mut bytes[at..at + total];
                if layout.lanes16() {
                    write_group16_record(layout, &group, blk, out);
                } else {
                    write_group4_record(layout, &group, blk, out);
                }
            }
        }
    }

    /// Byte offset of the record holding block `b` of row `r` (a group record,
    /// or for K-quants the record of `r`'s pair).
    pub fn record_offset(&self, layout: &QuantLayout, r: usize, b: usize) -> usize {
        let total = layout.record().total;
        if layout.super16() {
            return (r / 16) * self.group_stride + b * total + b / 8 * SUPER16_TRAILER;
        }
        match layout.super_k {
            Some(_) => (r / 4) * self.group_stride + (2 * b + (r / 2) % 2) * total,
            None => (r / layout.group_rows()) * self.group_stride + b * total,
        }
    }

    /// Byte offset of the `d`/`dmin` trailer of super-block `sb` in row
    /// `r`'s group ([`QuantLayout::super16`] layouts).
    pub fn super16_trailer(&self, layout: &QuantLayout, r: usize, sb: usize) -> usize {
        self.record_offset(layout, r, 8 * sb + 7) + layout.record().total
    }

    /// Bytes the kernels read for one pass over the matrix.
    pub fn num_bytes(&self) -> usize {
        match &self.data {
            PackedData::Quant { bytes, .. } => bytes.len(),
            PackedData::F32(v) => v.len() * 4,
        }
    }
}

/// The decoded rows of a matrix, and all-zero rows past its last one (the
/// padding of its last group).
struct RowSource<'a> {
    w: &'a WeightMatrix<'a>,
    zero: DecodedRow,
}

impl<'a> RowSource<'a> {
    fn new(w: &'a WeightMatrix<'a>) -> RowSource<'a> {
        let blocks = w.cols / 32;
        let zero = DecodedRow {
            levels: vec![0; w.cols],
            scales: vec![0.0; 2 * blocks],
            mins: vec![0.0; blocks],
            k_scales: vec![0; 2 * blocks],
            k_mins: vec![0; blocks],
            k_d: vec![0.0; blocks.div_ceil(8)],
            k_dmin: vec![0.0; blocks.div_ceil(8)],
        };
        RowSource { w, zero }
    }

    fn get(&self, r: usize) -> DecodedRow {
        if r < self.w.rows {
            decode_row(self.w.ty, self.w.row(r), self.w.cols)
        } else {
            self.zero.clone()
        }
    }
}

/// Decodes one GGUF row into levels, scales and mins.
fn decode_row(ty: GgmlType, row: &[u8], cols: usize) -> DecodedRow {
    let per16 = ty == GgmlType::Q6_K;
    let mut d = DecodedRow {
        levels: vec![0; cols],
        scales: vec![0.0; if per16 { cols / 16 } else { cols / 32 }],
        mins: vec![0.0; cols / 32],
        k_scales: Vec::new(),
        k_mins: Vec::new(),
        k_d: Vec::new(),
        k_dmin: Vec::new(),
    };
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
            decode_blocks32(ty, row, &mut d)
        }
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => decode_super_blocks(ty, row, &mut d),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            unreachable!("float types are not quantized")
        }
    }
    d
}

/// [`decode_row`] of the 32-weight formats: levels offset to unsigned, a
/// scale (and a min) per block.
fn decode_blocks32(ty: GgmlType, row: &[u8], d: &mut DecodedRow) {
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
                    d.levels[32 * b + i] = (i16::from(q) + 128) as u8;
                }
                d.scales[b] = blk.d.to_f32();
            }
        }
        other => unreachable!("{other} is not a 32-weight block format"),
    }
}

/// [`decode_row`] of the K-quants: levels (Q6_K's offset to unsigned), the
/// integer sub-block scales and mins, and `d`, `dmin` per super-block.
fn decode_super_blocks(ty: GgmlType, row: &[u8], d: &mut DecodedRow) {
    match ty {
        GgmlType::Q4_K => {
            for (s, blk) in load_blocks::<BlockQ4_K>(row).iter().enumerate() {
                d.levels[256 * s..256 * s + 256].copy_from_slice(&blk.quants());
                let (sc, mn) = blk.scales_mins();
                d.k_scales.extend(sc.map(i32::from));
                d.k_mins.extend(mn.map(i32::from));
                d.k_d.push(blk.d.to_f32());
                d.k_dmin.push(blk.dmin.to_f32());
            }
        }
        GgmlType::Q5_K => {
            for (s, blk) in load_blocks::<BlockQ5_K>(row).iter().enumerate() {
                d.levels[256 * s..256 * s + 256].copy_from_slice(&blk.quants());
                let (sc, mn) = blk.scales_mins();
                d.k_scales.extend(sc.map(i32::from));
                d.k_mins.extend(mn.map(i32::from));
                d.k_d.push(blk.d.to_f32());
                d.k_dmin.push(blk.dmin.to_f32());
            }
        }
        GgmlType::Q6_K => {
            for (s, blk) in load_blocks::<BlockQ6_K>(row).iter().enumerate() {
                for (i, q) in blk.quants().into_iter().enumerate() {
                    d.levels[256 * s + i] = (q + 32) as u8;
                }
                d.k_scales.extend(blk.scales.map(i32::from));
                d.k_d.push(blk.d.to_f32());
            }
        }
        other => unreachable!("{other} is not a K-quant"),
    }
}

/// Writes block `blk` of 16 rows as one group record (Q4_0…Q8_0, fast order).
fn write_group16_record(layout: &QuantLayout, rows: &[DecodedRow], blk: usize, out: &mut [u8]) {
    let rec = layout.record();
    write_group16_levels(layout, rows, blk, out);
    let scales: Vec<f32> = rows.iter().map(|r| r.scales[blk]).collect();
    put_floats(layout.f32_scales, &scales, &mut out[rec.scales..rec.mins]);
    if layout.float_min {
        let mins: Vec<f32> = rows.iter().map(|r| r.mins[blk]).collect();
        put_floats(layout.f32_scales, &mins, &mut out[rec.mins..rec.total]);
    }
}

/// The quants and bit planes of block `blk` of 16 rows in a group record.
fn write_group16_levels(layout: &QuantLayout, rows: &[DecodedRow], blk: usize, out: &mut [u8]) {
    let rec = layout.record();
    for (r, row) in rows.iter().enumerate() {
        let levels = &row.levels[32 * blk..32 * blk + 32];
        for (i, &lv) in levels.iter().enumerate() {
            let (byte, high, slice, bit) = group_position(layout.bits, r, i);
            match layout.bits {
                Bits::B8 => out[byte] = lv,
                _ => out[byte] |= (lv & 0x0F) << if high { 4 } else { 0 },
            }
            if layout.bits == Bits::B5 && lv >> 4 & 1 == 1 {
                out[rec.planes + 8 * slice + bit / 8] |= 1 << (bit % 8);
            }
        }
    }
}

/// Writes block `blk` of four rows as one group record (Q4_0…Q8_0,
/// llama.cpp order).
fn write_group4_record(layout: &QuantLayout, rows: &[DecodedRow], blk: usize, out: &mut [u8]) {
    let rec = layout.record();
    for (r, row) in rows.iter().enumerate() {
        let (p, ri) = (r / 2, r % 2);
        let levels = &row.levels[32 * blk..32 * blk + 32];
        match layout.bits {
            Bits::B8 => {
                // Stored signed (level − 128 = the original quant): the kernel
                // multiplies offset activations by signed weights.
                for (i, &lv) in levels.iter().enumerate() {
                    out[64 * p + register_position(ri, i)] = lv ^ 0x80;
                }
            }
            _ => {
                for j in 0..16 {
                    out[16 * r + j] = (levels[j] & 0x0F) | ((levels[j + 16] & 0x0F) << 4);
                }
                if layout.bits == Bits::B5 {
                    let mut plane = u64::from_le_bytes(
                        out[rec.planes + 8 * p..rec.planes + 8 * p + 8]
                            .try_into()
                            .unwrap(),
                    );
                    for (i, &lv) in levels.iter().enumerate() {
                        if lv >> 4 & 1 == 1 {
                            plane |= 1u64 << register_position(ri, i);
                        }
                    }
                    out[rec.planes + 8 * p..rec.planes + 8 * p + 8]
                        .copy_from_slice(&plane.to_le_bytes());
                }
            }
        }
    }
    let scales: Vec<f32> = rows.iter().map(|r| r.scales[blk]).collect();
    put_floats(layout.f32_scales, &scales, &mut out[rec.scales..rec.mins]);
    if layout.float_min {
        let mins: Vec<f32> = rows.iter().map(|r| r.mins[blk]).collect();
        put_floats(layout.f32_scales, &mins, &mut out[rec.mins..rec.total]);
    }
}

/// Writes block `blk` of rows A and B as one pair record (K-quants).
fn write_record(layout: &QuantLayout, rows: [&DecodedRow; 2], blk: usize, out: &mut [u8]) {
    let rec = layout.record();
    let mut planes = [0u64; 2];
    for (ri, row) in rows.iter().enumerate() {
        let levels = &row.levels[32 * blk..32 * blk + 32];
        match layout.bits {
            Bits::B8 => out[32 * ri..32 * ri + 32].copy_from_slice(levels),
            _ => {
                for j in 0..16 {
                    out[16 * ri + j] = (levels[j] & 0x0F) | ((levels[j + 16] & 0x0F) << 4);
                }
                for (i, &lv) in levels.iter().enumerate() {
                    for (p, plane) in planes.iter_mut().enumerate().take(layout.num_planes()) {
                        if lv >> (4 + p) & 1 == 1 {
                            *plane |= 1u64 << (32 * ri + i);
                        }
                    }
                }
            }
        }
    }
    for (p, m) in planes.iter().enumerate().take(layout.num_planes()) {
        out[rec.planes + 8 * p..rec.planes + 8 * p + 8].copy_from_slice(&m.to_le_bytes());
    }
    let sb = blk / 8; // super-block
    match layout.super_k {
        Some(SuperK::Mins) => {
            out[rec.scales] = rows[0].k_scales[blk] as u8;
            out[rec.scales + 1] = rows[1].k_scales[blk] as u8;
            out[rec.scales + 2] = rows[0].k_mins[blk] as u8;
            out[rec.scales + 3] = rows[1].k_mins[blk] as u8;
            let f = [
                rows[0].k_d[sb],
                rows[1].k_d[sb],
                rows[0].k_dmin[sb],
                rows[1].k_dmin[sb],
            ];
            put_floats(true, &f, &mut out[rec.scales + 4..rec.total]);
        }
        Some(SuperK::Signed16) => {
            for (ri, row) in rows.iter().enumerate() {
                out[rec.scales + 2 * ri] = row.k_scales[2 * blk] as i8 as u8;
                out[rec.scales + 2 * ri + 1] = row.k_scales[2 * blk + 1] as i8 as u8;
                for g in 0..16 {
                    out[rec.scales + 4 + 16 * ri + g] = row.k_scales[16 * sb + g] as i8 as u8;
                }
            }
            put_floats(
                true,
                &[rows[0].k_d[sb], rows[1].k_d[sb]],
                &mut out[rec.scales + 36..rec.total],
            );
        }
        None => unreachable!("pair records are for K-quants only"),
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
