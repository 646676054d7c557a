//! The layout of packed weights: the records the kernels read, one per
//! group of rows and 32-weight block ([`QuantLayout::record`]), and where
//! each weight sits in them. `packed.rs` writes them.
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

/// Byte position of weight `i` of row `ri` (0 = A, 1 = B) in its pair's
/// 64-byte register: `[A 0-15 | B 0-15 | A 16-31 | B 16-31]`.
pub fn register_position(ri: usize, i: usize) -> usize {
    (i / 16) * 32 + ri * 16 + i % 16
}
