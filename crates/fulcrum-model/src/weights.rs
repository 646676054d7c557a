//! Where each weight lives in the GGUF file, checked against the config.
//!
//! Matrices are repacked once into the kernels' layout ([`PackedMatrix`],
//! same bits per weight as the file); the embedding table is also read in
//! place from the memory map for row lookups; the small norm vectors are
//! widened to f32.

use std::ops::Range;

use fulcrum_gguf::{GgmlType, GgufFile, TensorInfo};
use fulcrum_kernels::gemm::{Numerics, PackedMatrix};
use fulcrum_kernels::quant::dequantize_row;
use fulcrum_kernels::WeightMatrix;

use crate::config::{Arch, ModelConfig};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("tensor `{0}` is missing from the model file")]
    Missing(String),
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
}

/// A linear layer's weight: `rows` outputs × `cols` inputs, packed.
#[derive(Clone, Debug)]
pub struct Linear {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub packed: PackedMatrix,
}

impl Linear {
    pub fn num_bytes(&self) -> usize {
        self.packed.num_bytes()
    }
}

/// A matrix read in place from the file (the embedding table, for row lookups).
#[derive(Clone, Debug)]
pub struct InPlace {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    range: Range<usize>,
}

impl InPlace {
    pub fn matrix<'a>(&self, file: &'a GgufFile) -> WeightMatrix<'a> {
        WeightMatrix {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            data: &file.bytes()[self.range.clone()],
        }
    }
}

#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    /// Gemma: RMS norm over each query / key head.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Gemma: norm of the attention output before the residual add.
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
    /// Gemma: norm of the FFN output before the residual add.
    pub post_ffn_norm: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct Weights {
    /// `[vocab, d_model]`: row `t` is token t's embedding.
    pub token_embd: InPlace,
    pub output_norm: Vec<f32>,
    /// `[vocab, d_model]`; the embedding itself when tied.
    pub output: Linear,
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    pub fn load(
        file: &GgufFile,
        cfg: &ModelConfig,
        numerics: Numerics,
    ) -> Result<Weights, WeightsError> {
        let linear = |file: &GgufFile, name: &str, rows: usize, cols: usize| {
            linear(file, name, rows, cols, numerics)
        };
        let d = cfg.d_model;
        let token_embd = in_place(file, "token_embd.weight", cfg.vocab_size, d)?;
        let output = match file.tensor("output.weight") {
            Some(_) => linear(file, "output.weight", cfg.vocab_size, d)?,
            None => linear(file, "token_embd.weight", cfg.vocab_size, d)?,
        };
        let output_norm = vector(file, "output_norm.weight", d)?;
        let gemma = cfg.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let opt_vec = |s: &str, len: usize| -> Result<Option<Vec<f32>>, WeightsError> {
                if gemma {
                    vector(file, &n(s), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(LayerWeights {
                attn_norm: vector(file, &n("attn_norm"), d)?,
                wq: linear(file, &n("attn_q"), cfg.q_dim(), d)?,
                wk: linear(file, &n("attn_k"), cfg.kv_dim(), d)?,
                wv: linear(file, &n("attn_v"), cfg.kv_dim(), d)?,
                wo: linear(file, &n("attn_output"), d, cfg.q_dim())?,
                q_norm: opt_vec("attn_q_norm", cfg.head_dim)?,
                k_norm: opt_vec("attn_k_norm", cfg.head_dim)?,
                post_attn_norm: opt_vec("post_attention_norm", d)?,
                ffn_norm: vector(file, &n("ffn_norm"), d)?,
                w_gate: linear(file, &n("ffn_gate"), cfg.ffn_dim, d)?,
                w_up: linear(file, &n("ffn_up"), cfg.ffn_dim, d)?,
                w_down: linear(file, &n("ffn_down"), d, cfg.ffn_dim)?,
                post_ffn_norm: opt_vec("post_ffw_norm", d)?,
            });
        }
        Ok(Weights {
            token_embd,
            output_norm,
            output,
            layers,
        })
    }

    /// Bytes of weights a single decode step reads (every matrix once; the
    /// embedding lookup reads one row, so it is left out unless tied to the output).
    pub fn bytes_per_step(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .map(|w| w.num_bytes())
                    .sum::<usize>()
            })
            .sum();
        per_layer + self.output.num_bytes()
    }
}

fn tensor<'a>(file: &'a GgufFile, name: &str) -> Result<&'a TensorInfo, WeightsError> {
    file.tensor(name)
        .ok_or_else(|| WeightsError::Missing(name.to_string()))
}

fn in_place(
    file: &GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<InPlace, WeightsError> {
    let t = tensor(file, name)?;
    let expected = vec![cols as u64, rows as u64];
    if t.dims != expected {
        return Err(WeightsError::Shape {
            name: name.into(),
            found: t.dims.clone(),
            expected,
        });
    }
    Ok(InPlace {
        ty: t.ty,
        rows,
        cols,
        range: t.range.clone(),
    })
}

fn linear(
    file: &GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
    numerics: Numerics,
) -> Result<Linear, WeightsError> {
    let m = in_place(file, name, rows, cols)?;
    if !cols.is_multiple_of(32) {
        return Err(WeightsError::Shape {
            name: name.into(),
            found: vec![cols as u64, rows as u64],
            expected: vec![cols.div_ceil(32) as u64 * 32, rows as u64],
        });
    }
    let packed = PackedMatrix::pack_with(&m.matrix(file), numerics);
    Ok(Linear {
        ty: m.ty,
        rows,
        cols,
        packed,
    })
}

fn vector(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, WeightsError> {
    let t = tensor(file, name)?;
    if t.dims != [len as u64] {
        return Err(WeightsError::Shape {
            name: name.into(),
            found: t.dims.clone(),
            expected: vec![len as u64],
        });
    }
    let mut out = vec![0f32; len];
    dequantize_row(t.ty, file.tensor_data(t), &mut out);
    Ok(out)
}
