//! Weights repacked once, at load time, into the layout the kernels want.
//!
//! Every GGUF format becomes `w = scale · (level − offset) + min` with an
//! unsigned `level` of 4, 5, 6 or 8 bits, a scale per 32 weights (per 16 for
//! Q6_K), and either an integer `offset` (a power of two, subtracted exactly
//! inside the integer dot product) or a float `min` per 32 weights. The
//! K-quants' two-level scales are multiplied out (exact in f32).
//!
//! Q4_0…Q8_0 come in two layouts, one per [`Numerics`]:
//!
//! **Fast** (the default): *groups of 16 rows*, one record per group and
//! 32-weight block, so a SIMD register holds one 4-weight slice of all 16
//! rows (`byte 4·row + i`) and one `vpdpbusd` against a token's broadcast
//! 4 activations advances 16 outputs at once; after the block's 8 slices each
//! lane holds one output's exact integer block sum, and the float work is one
//! step per 16 outputs. Record `[quants][bit planes][scales][mins]`:
//! - quants, 4/5-bit: 4 chunks of 64 bytes; byte `4·row + i` of chunk `j`
//!   holds weight `4j + i` in its low nibble and weight `16 + 4j + i` in its
//!   high one (one load, a mask and a shift give two slices); 8-bit: 8 slices
//!   of 64 bytes, the level as an unsigned byte (Q8_0's quant + 128);
//! - bit planes (5-bit): one u64 per slice, bit `4·row + i` = bit 4 of the level;
//! - scales, then mins (float-min formats): 16 × f16.
//!
//! A group's records follow block by block, so a kernel tile reads one
//! sequential stream — what memory prefetchers follow best — and the bytes
//! per weight stay as in the file (single-token decode reads every weight once
//! per token and is bound by memory traffic).
//!
//! **LlamaCpp** (llama.cpp's summation order, bit for bit): groups of four
//! rows, one record per group and block, `[quants][bit planes][scales][mins]`;
//! the kernel holds a pair's two rows' 8-lane partial sums in one register,
//! lanes `[A 0-3 | B 0-3 | A 4-7 | B 4-7]` (weights 0-15 of each row, then
//! 16-31): quants as 16 bytes per row (byte j: weight j in the low nibble,
//! j+16 in the high one), 8-bit levels as 64 bytes per pair in register order
//! stored signed; bit planes one u64 per pair; scales and mins 4 × f16.
//!
//! **Q4_K and Q5_K** in llama.cpp's single-token order (the [`Numerics::Fast`]
//! and [`Numerics::LlamaCpp`] products; [`QuantLayout::super16`]): groups of
//! 16 rows like the fast order's, one record per group and block,
//! `[quants][bit planes][scales: 16 × u8][mins: 16 × u8]` (quants and planes
//! as above), and after each super-block's eighth record a trailer of the
//! 16 rows' `d`, then `dmin` (16 × f16 each). A lane holds one row's exact
//! integer sums (Σ sc·Σq·x and Σ mn·Σx) over the super-block, then one float
//! step each, the order llama.cpp's Q4_K kernels take; 4.6 bits per weight
//! (the file's 4.5) instead of the pair records' 6.5. Chosen where the
//! active kernels are AVX-512's or AVX2's (NEON reads pair records).
//!
//! **K-quants** otherwise (Q6_K, and Q4_K/Q5_K with
//! [`Numerics::LlamaCppBatch`]): rows in pairs, one record per *pair* and block (pairs 0 and
//! 1 of a group of four alternating), `[quants: row A then B][planes: u64 per
//! plane, bit i = weight i of A (i < 32) or of B][integer scales and
//! per-super-block factors]`; the kernel holds a pair's two rows' 8-lane
//! partial sums in one 16-lane register. They grow by their f32 scales.

use fulcrum_gguf::GgmlType;
use half::f16;

use super::WeightMatrix;
use crate::quant::{
    dequantize_row, load_blocks, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K,
    BlockQ6_K, BlockQ8_0,
};

/// Quant width of the packed levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bits {
    B4,
    B5,
    B6,
    B8,
}

/// K-quant super-block formats, whose integer sub-block scales are kept so
/// the kernel can sum exactly as llama.cpp does (integers per 256-weight
/// super-block, one float step per super-block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperK {
    /// Q4_K, Q5_K: unsigned levels, 6-bit scale and min per 32, `d`, `dmin` per 256.
    Mins,
    /// Q6_K: levels offset by 32, signed 8-bit scale per 16, `d` per 256.
    Signed16,
}

/// The summation order of the Q4_0…Q8_0 products (K-quants have one order).
///
/// Both are exact integer dot products per 32-weight block; they differ in
/// how the float partial sums are rounded, in the last bits of every output.
/// The small models fulcrum runs amplify such differences through their
/// 8-bit activation rounding at every layer: the top-10 log-probabilities of
/// the two orders differ by up to ~0.3 (as llama.cpp's own flash-attention
/// switch moves them by ~0.1–0.4), the greedy texts part at near-ties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Numerics {
    /// One float step per block and 16 outputs per SIMD instruction: the
    /// fastest order (about 2× on batched products).
    #[default]
    Fast,
    /// llama.cpp's CPU kernels' order (`ggml_vec_dot_*`: 8 float lanes per
    /// output, a fixed final tree): logits bit-identical to llama.cpp's for
    /// Q4_0…Q8_0 models, for testing against it.
    LlamaCpp,
    /// `LlamaCpp`, and K-quant products in the orders of llama.cpp's
    /// batched kernels ([`QuantLayout::super_order`]), as llama.cpp computes
    /// a prompt: bit-identical to its prompt logits on Q4_K models too, at
    /// the price llama.cpp pays — a token's result then depends on its place
    /// in the step's batch (not batch-invariant).
    LlamaCppBatch,
}

impl Numerics {
    /// Q4_0…Q8_0 in llama.cpp's 8-lane order.
    pub fn llama_order(self) -> bool {
        matches!(self, Numerics::LlamaCpp | Numerics::LlamaCppBatch)
    }
}

impl std::str::FromStr for Numerics {
    type Err = String;
    fn from_str(s: &str) -> Result<Numerics, String> {
        match s {
            "fast" => Ok(Numerics::Fast),
            "llama-cpp" | "llama.cpp" | "llamacpp" => Ok(Numerics::LlamaCpp),
            "llama-cpp-batch" => Ok(Numerics::LlamaCppBatch),
            other => Err(format!(
                "unknown numerics {other:?} (expected fast, llama-cpp or llama-cpp-batch)"
            )),
        }
    }
}

impl std::fmt::Display for Numerics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Numerics::Fast => "fast",
            Numerics::LlamaCpp => "llama-cpp",
            Numerics::LlamaCppBatch => "llama-cpp-batch",
        })
    }
}

/// How a packed quantized matrix is laid out and what its numbers mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantLayout {
    /// K-quants: the super-block record layout (the scale fields below unused).
    pub super_k: Option<SuperK>,
    pub bits: Bits,
    /// Scales (and mins) stored as f32 rather than f16.
    pub f32_scales: bool,
    /// One scale per 16 weights instead of per 32.
    pub per16: bool,
    /// `offset = 1 << shift`, subtracted from every level (exactly, in integers).
    pub offset_shift: Option<u32>,
    /// A float min per 32 weights.
    pub float_min: bool,
    /// The summation order (and so the group layout) of Q4_0…Q8_0.
    pub numerics: Numerics,
    /// Q4_K/Q5_K may take 16-row groups ([`QuantLayout::super16`]): only
    /// where the active kernels have a 16-row K-quant kernel (AVX-512,
    /// AVX2), so that NEON and the portable kernel keep the pair records.
    pub k16: bool,
}

/// The float steps of a K-quant product; every order first sums exactly in
/// integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperOrder {
    /// llama.cpp's `vec_dot` and Q4_K GEMV: one step per 256-weight
    /// super-block (Q6_K: per lane, 8 lanes, then `hsum_float_8`).
    VecDot,
    /// llama.cpp's Q4_K 4-token GEMM: one step per 64 weights.
    Gemm4,
    /// llama.cpp's tiled K-quant matmul (Q6_K): per super-block the whole
    /// integer sum `S`, then `acc = fma(S·d, d_x, acc)` (its AVX2 kernel).
    Tiled,
}

/// Byte offsets inside a pair record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    pub planes: usize,
    pub scales: usize,
    pub mins: usize,
    pub total: usize,
}

impl QuantLayout {
    pub fn for_type(ty: GgmlType, numerics: Numerics) -> Option<QuantLayout> {
        let l = |bits, f32_scales, per16, offset_shift, float_min| {
            Some(QuantLayout {
                super_k: None,
                bits,
                f32_scales,
                per16,
                offset_shift,
                float_min,
                numerics,
                k16: false,
            })
        };
        let k = |bits, kind| {
            Some(QuantLayout {
                super_k: Some(kind),
                bits,
                f32_scales: false,
                per16: false,
                offset_shift: None,
                float_min: false,
                numerics,
                k16: matches!(
                    crate::isa::Isa::active(),
                    crate::isa::Isa::Avx512 | crate::isa::Isa::Avx2
                ),
            })
        };
        match ty {
            GgmlType::Q4_0 => l(Bits::B4, false, false, Some(3), false),
            GgmlType::Q4_1 => l(Bits::B4, false, false, None, true),
            GgmlType::Q5_0 => l(Bits::B5, false, false, Some(4), false),
            GgmlType::Q5_1 => l(Bits::B5, false, false, None, true),
            GgmlType::Q8_0 => l(Bits::B8, false, false, Some(7), false),
            GgmlType::Q4_K => k(Bits::B4, SuperK::Mins),
            GgmlType::Q5_K => k(Bits::B5, SuperK::Mins),
            GgmlType::Q6_K => k(Bits::B6, SuperK::Signed16),
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => None,
        }
    }

    pub fn scale_bytes(&self) -> usize {
        if self.f32_scales {
            4
        } else {
            2
        }
    }

    pub fn num_planes(&self) -> usize {
        match self.bits {
            Bits::B5 => 1,
            Bits::B6 => 2,
            _ => 0,
        }
    }

    /// Rows per packed group: 16 (one per register lane) for the 32-weight
    /// formats in the fast order and for [`QuantLayout::super16`] K-quants,
    /// else 4 (two pairs).
    pub fn group_rows(&self) -> usize {
        if self.lanes16() || self.super16() {
            16
        } else {
            4
        }
    }

    /// How the K-quant outputs of token `t` of an `m`-token product round:
    /// llama.cpp's single-token order, except with
    /// [`Numerics::LlamaCppBatch`], where llama.cpp's batched kernels are
    /// followed — the 4-token GEMM for Q4_K (the only K-quant it repacks on
    /// x86) and the tiled matmul it takes for other K-quants in products of
    /// 8 or more tokens (here Q6_K; Q5_K's tiled order is not reproduced).
    pub fn super_order(&self, t: usize, m: usize) -> SuperOrder {
        if self.numerics != Numerics::LlamaCppBatch {
            return SuperOrder::VecDot;
        }
        match (self.super_k, self.bits) {
            (Some(SuperK::Mins), Bits::B4) if t < m / 4 * 4 => SuperOrder::Gemm4,
            (Some(SuperK::Signed16), _) if m >= 8 => SuperOrder::Tiled,
            _ => SuperOrder::VecDot,
        }
    }

    /// The 16-row layout of the fast order.
    pub fn lanes16(&self) -> bool {
        self.super_k.is_none() && self.numerics == Numerics::Fast
    }

    /// Q4_K/Q5_K in 16-row groups (see the module doc): their order is
    /// llama.cpp's single-token one, a float step per super-block and row,
    /// which 16 lanes compute as well as 2. `LlamaCppBatch` keeps the pair
    /// records, whose kernel also takes its 64-weight steps.
    pub fn super16(&self) -> bool {
        self.k16 && self.super_k == Some(SuperK::Mins) && self.numerics != Numerics::LlamaCppBatch
    }

    pub fn record(&self) -> RecordLayout {
        if self.super16() {
            // [quants: 256][planes: 8 × u64 (Q5_K)][scales: 16 × u8][mins: 16 × u8]
            let scales = 256 + 64 * self.num_planes();
            return RecordLayout {
                planes: 256,
                scales,
                mins: scales + 16,
                total: scales + 32,
            };
        }
        match self.super_k {
            Some(kind) => {
                // Pair records.
                let planes = if self.bits == Bits::B8 { 64 } else { 32 };
                let scales = planes + 8 * self.num_planes();
                match kind {
                    // [sc A, sc B: u8][mn A, mn B: u8][d A, d B: f32][dmin A, dmin B: f32]
                    SuperK::Mins => RecordLayout {
                        planes,
                        scales,
                        mins: scales + 2,
                        total: scales + 20,
                    },
                    // [sc A lo, A hi, B lo, B hi: i8][A's 16 scales, B's 16 scales: i8][d A, d B: f32]
                    SuperK::Signed16 => RecordLayout {
                        planes,
                        scales,
                        mins: scales + 4,
                        total: scales + 44,
                    },
                }
            }
            None => {
                // Group records: `group_rows()` rows (4 in llama.cpp's order,
                // 16 in the fast one), 32 weights of each per block.
                let rows = self.group_rows();
                let planes = if self.bits == Bits::B8 { 32 } else { 16 } * rows;
                let scales = planes + 4 * rows * self.num_planes();
                let mins = scales + rows * self.scale_bytes();
                let total = mins
                    + if self.float_min {
                        rows * self.scale_bytes()
                    } else {
                        0
                    };
                RecordLayout {
                    planes,
                    scales,
                    mins,
                    total,
                }
            }
        }
    }
}

/// Bytes after each super-block's last record in [`QuantLayout::super16`]
/// groups: the 16 rows' `d`, then `dmin`, as f16.
pub const SUPER16_TRAILER: usize = 64;

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
            let mut out = vec![0f32; w.rows * w.cols];
            for (r, dst) in out.chunks_exact_mut(w.cols.max(1)).enumerate().take(w.rows) {
                dequantize_row(w.ty, w.row(r), dst);
            }
            return PackedMatrix {
                ty: w.ty,
                rows: w.rows,
                cols: w.cols,
                blocks,
                group_stride: 0,
                data: PackedData::F32(out),
            };
        };
        let rec = layout.record();
        let group_stride = if layout.super16() {
            blocks * rec.total + blocks / 8 * SUPER16_TRAILER
        } else if layout.super_k.is_some() {
            2 * blocks * rec.total
        } else {
            blocks * rec.total
        };
        let gr = layout.group_rows();
        let groups = w.rows.div_ceil(gr);
        let mut bytes = AlignedBytes::zeroed(group_stride * groups);
        let zero = DecodedRow {
            levels: vec![0; w.cols],
            scales: vec![0.0; 2 * blocks],
            mins: vec![0.0; blocks],
            k_scales: vec![0; 2 * blocks],
            k_mins: vec![0; blocks],
            k_d: vec![0.0; blocks.div_ceil(8)],
            k_dmin: vec![0.0; blocks.div_ceil(8)],
        };
        let row = |r: usize| {
            if r < w.rows {
                decode_row(w.ty, w.row(r), w.cols)
            } else {
                zero.clone_row()
            }
        };
        let mut packed = PackedMatrix {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            blocks,
            group_stride,
            data: PackedData::F32(Vec::new()),
        };
        if layout.super16() {
            for g in 0..groups {
                let rows: Vec<DecodedRow> = (16 * g..16 * g + 16).map(row).collect();
                for blk in 0..blocks {
                    let at = packed.record_offset(&layout, 16 * g, blk);
                    let out = &mut bytes.as_mut_slice()[at..at + rec.total];
                    write_group16_levels(&layout, &rows, blk, out);
                    for (r, row) in rows.iter().enumerate() {
                        out[rec.scales + r] = row.k_scales[blk] as u8;
                        out[rec.mins + r] = row.k_mins[blk] as u8;
                    }
                }
                for sb in 0..blocks / 8 {
                    let at = packed.super16_trailer(&layout, 16 * g, sb);
                    let out = &mut bytes.as_mut_slice()[at..at + SUPER16_TRAILER];
                    let d: Vec<f32> = rows.iter().map(|r| r.k_d[sb]).collect();
                    let dmin: Vec<f32> = rows.iter().map(|r| r.k_dmin[sb]).collect();
                    put_floats(false, &d, &mut out[..32]);
                    put_floats(false, &dmin, &mut out[32..]);
                }
            }
        } else if layout.super_k.is_some() {
            for pair in 0..2 * groups {
                let (a, b) = (row(2 * pair), row(2 * pair + 1));
                for blk in 0..blocks {
                    let at = packed.record_offset(&layout, 2 * pair, blk);
                    write_record(
                        &layout,
                        [&a, &b],
                        blk,
                        &mut bytes.as_mut_slice()[at..at + rec.total],
                    );
                }
            }
        } else {
            for g in 0..groups {
                let rows: Vec<DecodedRow> = (gr * g..gr * g + gr).map(row).collect();
                for blk in 0..blocks {
                    let at = packed.record_offset(&layout, gr * g, blk);
                    let out = &mut bytes.as_mut_slice()[at..at + rec.total];
                    if layout.lanes16() {
                        write_group16_record(&layout, &rows, blk, out);
                    } else {
                        write_group4_record(&layout, &rows, blk, out);
                    }
                }
            }
        }
        packed.data = PackedData::Quant { layout, bytes };
        packed
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

impl DecodedRow {
    fn clone_row(&self) -> DecodedRow {
        DecodedRow {
            levels: self.levels.clone(),
            scales: self.scales.clone(),
            mins: self.mins.clone(),
            k_scales: self.k_scales.clone(),
            k_mins: self.k_mins.clone(),
            k_d: self.k_d.clone(),
            k_dmin: self.k_dmin.clone(),
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
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            unreachable!("float types are not quantized")
        }
    }
    d
}

/// Where weight `i` (of 32) of row `r` (of 16) sits in a group record
/// (Q4_0…Q8_0): `(byte, high nibble)` for 4/5-bit levels, the byte for
/// 8-bit ones, and `(slice, bit)` of its bit-plane entry.
pub fn group_position(bits: Bits, r: usize, i: usize) -> (usize, bool, usize, usize) {
    let slice = i / 4;
    let lane_byte = 4 * r + i % 4;
    match bits {
        Bits::B8 => (64 * slice + lane_byte, false, slice, lane_byte),
        _ => (64 * (slice % 4) + lane_byte, slice >= 4, slice, lane_byte),
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

/// Byte position of weight `i` of row `ri` (0 = A, 1 = B) in its pair's
/// 64-byte register: `[A 0-15 | B 0-15 | A 16-31 | B 16-31]`.
pub fn register_position(ri: usize, i: usize) -> usize {
    (i / 16) * 32 + ri * 16 + i % 16
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
