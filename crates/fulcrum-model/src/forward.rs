//! The forward pass over a ragged batch.
//!
//! A batch is every scheduled sequence's new tokens for one step: prefill
//! chunks and single decode tokens together. Every linear layer runs once
//! over all `T` tokens of the step as one matrix product (each weight read
//! once per step), attention runs per sequence over its paged cache, and
//! logits are computed only for the sequences that need them (those whose
//! step ends at their last known token).

use fulcrum_kernels::attention::{
    paged_attention_cells, paged_attention_q8_cells, write_kv_batch_cells, write_kv_q8_batch_cells,
    AttentionParams, AttentionSeq,
};
use fulcrum_kernels::gemm::{matmul, matmul_quantized_many, ActScheme, MatmulScratch, PackedData};
use fulcrum_kernels::ops::{self, RopeTable};
use fulcrum_kernels::quant::dequantize_row;
use fulcrum_kernels::WorkerPool;

use crate::config::{Arch, ModelConfig};
use crate::kv_cache::{KvCache, KvLayer};
use crate::model::Model;
use crate::weights::Linear;

/// One sequence's part of a step.
#[derive(Clone, Copy, Debug)]
pub struct SeqInput<'a> {
    /// Its new tokens in this step (a decode has one).
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`: how many of its tokens are already in the cache.
    pub num_computed_tokens: usize,
    /// Physical KV blocks holding positions `0..num_computed_tokens + tokens.len()`.
    pub block_table: &'a [u32],
    /// Whether to compute next-token logits after its last new token.
    pub wants_logits: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("sequence {seq}: token id {id} is outside the vocabulary ({vocab} tokens)")]
    TokenOutOfRange { seq: usize, id: u32, vocab: usize },
    #[error("sequence {seq}: block table of {blocks} blocks cannot hold {positions} positions")]
    BlockTableTooShort {
        seq: usize,
        blocks: usize,
        positions: usize,
    },
    #[error("sequence {seq}: block id {block} is outside the cache ({num_blocks} blocks)")]
    BlockOutOfRange {
        seq: usize,
        block: u32,
        num_blocks: usize,
    },
    #[error("sequence {seq} has no tokens")]
    Empty { seq: usize },
}

/// Buffers reused from step to step (no allocation once they have grown to
/// the largest batch seen).
#[derive(Default)]
pub struct ForwardScratch {
    positions: Vec<u32>,
    x: Vec<f32>,      // [T, d]
    xn: Vec<f32>,     // [T, d]
    q: Vec<f32>,      // [T, q_dim]
    k: Vec<f32>,      // [T, kv_dim]
    v: Vec<f32>,      // [T, kv_dim]
    attn: Vec<f32>,   // [T, q_dim]
    proj: Vec<f32>,   // [T, d]
    gate: Vec<f32>,   // [T, ffn]
    up: Vec<f32>,     // [T, ffn]
    last: Vec<f32>,   // [L, d]
    logits: Vec<f32>, // [L, vocab]
    rope: Vec<(f32, RopeTable)>,
    mm: MatmulScratch,
}

/// `x += norm(y)` (Gemma's post-norms) or `x += y`, row chunks in parallel.
fn residual_add(
    pool: &WorkerPool,
    chunk: usize,
    x: &mut [f32],
    y: &mut [f32],
    norm: Option<&[f32]>,
    eps: f32,
) {
    if let Some(w) = norm {
        pool.for_each_chunk_mut(y, chunk, |_, part| ops::rms_norm_inplace(part, w, eps));
    }
    let y: &[f32] = y;
    pool.for_each_chunk_mut(x, chunk, |i, part| {
        ops::add_inplace(part, &y[i * chunk..][..part.len()])
    });
}

/// Rows per task for the row-wise operations: all of them when the step is
/// small (one task runs inline, no hand-off), else a few tasks per thread.
fn rows_per_chunk(pool: &WorkerPool, t_total: usize) -> usize {
    if t_total < 32 {
        t_total.max(1)
    } else {
        t_total.div_ceil(pool.num_threads() * 4).max(8)
    }
}

fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Checks a batch against the model and cache before anything is computed.
pub fn validate_batch(
    cfg: &ModelConfig,
    kv: &KvCache,
    seqs: &[SeqInput],
) -> Result<(), ForwardError> {
    for (i, s) in seqs.iter().enumerate() {
        if s.tokens.is_empty() {
            return Err(ForwardError::Empty { seq: i });
        }
        if let Some(&id) = s.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ForwardError::TokenOutOfRange {
                seq: i,
                id,
                vocab: cfg.vocab_size,
            });
        }
        let positions = s.num_computed_tokens + s.tokens.len();
        if s.block_table.len() * kv.block_size() < positions {
            return Err(ForwardError::BlockTableTooShort {
                seq: i,
                blocks: s.block_table.len(),
                positions,
            });
        }
        if let Some(&b) = s
            .block_table
            .iter()
            .find(|&&b| b as usize >= kv.num_blocks())
        {
            return Err(ForwardError::BlockOutOfRange {
                seq: i,
                block: b,
                num_blocks: kv.num_blocks(),
            });
        }
    }
    Ok(())
}

/// Runs one step. Returns `[L, vocab]` logits, one row per sequence with
/// `wants_logits`, in batch order.
///
/// # Safety
/// While it runs, no other thread writes the blocks of these sequences or
/// touches the slots they write (positions `num_computed_tokens..` of each): other
/// forward passes sharing `kv` run over other sequences, whose blocks are
/// their own or full prefix blocks nobody writes.
pub unsafe fn forward<'s>(
    model: &Model,
    pool: &WorkerPool,
    seqs: &[SeqInput],
    kv: &KvCache,
    s: &'s mut ForwardScratch,
) -> Result<&'s [f32], ForwardError> {
    let n = seqs.iter().filter(|s| s.wants_logits).count() * model.config.vocab_size;
    let mut logits = std::mem::take(&mut s.logits);
    logits.resize(n.max(logits.len()), 0.0);
    // SAFETY: the caller's promise.
    let result = unsafe { forward_into(model, pool, seqs, kv, s, &mut logits[..n]) };
    s.logits = logits;
    result.map(|()| &s.logits[..n])
}

/// [`forward`] writing the logits into `out` (`[L, vocab]`, exactly).
///
/// # Safety
/// As [`forward`].
pub unsafe fn forward_into(
    model: &Model,
    pool: &WorkerPool,
    seqs: &[SeqInput],
    kv: &KvCache,
    s: &mut ForwardScratch,
    out: &mut [f32],
) -> Result<(), ForwardError> {
    let (cfg, weights, file) = (&model.config, &model.weights, &*model.file);
    validate_batch(cfg, kv, seqs)?;
    let num_logits = seqs.iter().filter(|s| s.wants_logits).count();
    assert_eq!(
        out.len(),
        num_logits * cfg.vocab_size,
        "logits buffer of the wrong size"
    );
    let t_total: usize = seqs.iter().map(|s| s.tokens.len()).sum();
    let (d, qd, kvd, ffn) = (cfg.d_model, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
    let hd = cfg.head_dim;

    s.positions.clear();
    for sq in seqs {
        s.positions
            .extend((0..sq.tokens.len() as u32).map(|i| sq.num_computed_tokens as u32 + i));
    }
    // Rope tables, one per distinct base (Gemma has a local and a global one).
    s.rope.retain(|_| false);
    for layer in &cfg.layers {
        if !s.rope.iter().any(|(b, _)| *b == layer.rope_base) {
            let mut t = RopeTable::default();
            t.fill(&s.positions, cfg.rope_dim, layer.rope_base);
            s.rope.push((layer.rope_base, t));
        }
    }

    // Embeddings.
    let x = sized(&mut s.x, t_total * d);
    let embd = weights.token_embd.matrix(file);
    for (row, &tok) in x
        .chunks_exact_mut(d)
        .zip(seqs.iter().flat_map(|s| s.tokens))
    {
        dequantize_row(embd.ty, embd.row(tok as usize), row);
    }
    if cfg.arch == Arch::Gemma3 {
        let scale = (d as f32).sqrt();
        x.iter_mut().for_each(|v| *v *= scale);
    }

    let mut attn_seqs = Vec::with_capacity(seqs.len());
    let mut first_row = 0;
    for sq in seqs {
        attn_seqs.push(AttentionSeq {
            first_row,
            num_rows: sq.tokens.len(),
            num_computed_tokens: sq.num_computed_tokens,
            block_table: sq.block_table,
        });
        first_row += sq.tokens.len();
    }

    let mm =
        |pool: &WorkerPool, w: &Linear, x: &[f32], y: &mut [f32], scratch: &mut MatmulScratch| {
            matmul(pool, x, x.len() / w.cols, &w.packed, y, scratch);
        };
    // Several products of the same input (q/k/v, gate/up) quantize it once.
    let mm_same_input = |pool: &WorkerPool,
                         ws: &[&Linear],
                         x: &[f32],
                         ys: &mut [&mut [f32]],
                         scratch: &mut MatmulScratch| {
        let same_scheme = ws
            .iter()
            .all(|w| ActScheme::for_matrix(&w.packed) == ActScheme::for_matrix(&ws[0].packed));
        if same_scheme
            && ws
                .iter()
                .all(|w| matches!(w.packed.data, PackedData::Quant { .. }))
        {
            scratch.acts.quantize(
                pool,
                x,
                x.len() / ws[0].cols,
                ws[0].cols,
                ActScheme::for_matrix(&ws[0].packed),
            );
            let mut outs: Vec<(&fulcrum_kernels::gemm::PackedMatrix, &mut [f32])> = ws
                .iter()
                .zip(ys.iter_mut())
                .map(|(w, y)| (&w.packed, &mut **y))
                .collect();
            matmul_quantized_many(pool, &scratch.acts, &mut outs);
        } else {
            for (w, y) in ws.iter().zip(ys.iter_mut()) {
                matmul(pool, x, x.len() / w.cols, &w.packed, y, scratch);
            }
        }
    };

    for (li, (lw, la)) in weights.layers.iter().zip(&cfg.layers).enumerate() {
        let x = &mut s.x[..t_total * d];
        let xn = sized(&mut s.xn, t_total * d);
        let cr = rows_per_chunk(pool, t_total);
        pool.for_each_chunk_mut(xn, cr * d, |i, part| {
            ops::rms_norm(
                &x[i * cr * d..][..part.len()],
                &lw.attn_norm,
                cfg.rms_eps,
                part,
            )
        });
        let q = sized(&mut s.q, t_total * qd);
        let k = sized(&mut s.k, t_total * kvd);
        let v = sized(&mut s.v, t_total * kvd);
        mm_same_input(
            pool,
            &[&lw.wq, &lw.wk, &lw.wv],
            xn,
            &mut [&mut *q, &mut *k, &mut *v],
            &mut s.mm,
        );
        let dbg = |name: &str, v: &[f32]| debug_dump(&format!("{name}-{li}"), v);
        dbg("attn_norm", xn);
        dbg("Qcur", q);
        dbg("Kcur", k);
        dbg("Vcur", v);
        let rope = &s
            .rope
            .iter()
            .find(|(b, _)| *b == la.rope_base)
            .expect("table filled above")
            .1;
        // Per token: Gemma's q/k norms, then the rotation (rows are independent).
        for (buf, width, norm) in [(&mut *q, qd, &lw.q_norm), (&mut *k, kvd, &lw.k_norm)] {
            pool.for_each_chunk_mut(buf, cr * width, |i, part| {
                if let Some(nw) = norm {
                    ops::rms_norm_inplace(part, nw, cfg.rms_eps);
                }
                for (j, row) in part.chunks_exact_mut(width).enumerate() {
                    let (c, sn) = rope.row(i * cr + j);
                    ops::rope(row, hd, c, sn, cfg.rope_style);
                }
            });
        }
        let shape = kv.shape;
        let layer = kv.layer(li);
        // SAFETY (the writes and the attention below): the batch was
        // validated (block ids inside the cache); the caller of `forward`
        // guarantees no other thread touches these sequences' blocks.
        match layer {
            KvLayer::F16 { k: kc, v: vc } => unsafe {
                write_kv_batch_cells(pool, &shape, kc, vc, &attn_seqs, k, v)
            },
            KvLayer::Q8(l) => unsafe { write_kv_q8_batch_cells(pool, &shape, l, &attn_seqs, k, v) },
        }
        let params = AttentionParams {
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: hd,
            scale: cfg.attention_scale,
            window: la.window,
        };
        let attn = sized(&mut s.attn, t_total * qd);
        match layer {
            KvLayer::F16 { k: kc, v: vc } => unsafe {
                paged_attention_cells(pool, &params, &shape, q, kc, vc, &attn_seqs, attn)
            },
            KvLayer::Q8(l) => unsafe {
                paged_attention_q8_cells(pool, &params, &shape, q, l, &attn_seqs, attn)
            },
        }
        dbg("Qrope", q);
        dbg("Krope", k);
        dbg("kqv_out", attn);
        let proj = sized(&mut s.proj, t_total * d);
        mm(pool, &lw.wo, attn, proj, &mut s.mm);
        dbg("attn_out", proj);
        residual_add(
            pool,
            cr * d,
            x,
            proj,
            lw.post_attn_norm.as_deref(),
            cfg.rms_eps,
        );
        dbg("attn_post_norm", proj);

        dbg("ffn_inp", x);
        let x_ro: &[f32] = x;
        pool.for_each_chunk_mut(xn, cr * d, |i, part| {
            ops::rms_norm(
                &x_ro[i * cr * d..][..part.len()],
                &lw.ffn_norm,
                cfg.rms_eps,
                part,
            )
        });
        dbg("ffn_norm", xn);
        let gate = sized(&mut s.gate, t_total * ffn);
        let up = sized(&mut s.up, t_total * ffn);
        mm_same_input(
            pool,
            &[&lw.w_gate, &lw.w_up],
            xn,
            &mut [&mut *gate, &mut *up],
            &mut s.mm,
        );
        // The activation is written over `gate` via a split so no extra buffer is needed.
        dbg("ffn_gate", gate);
        dbg("ffn_up", up);
        let up_ro: &[f32] = up;
        pool.for_each_chunk_mut(gate, cr * ffn, |i, part| {
            let u = &up_ro[i * cr * ffn..][..part.len()];
            match cfg.arch {
                Arch::Llama => ops::swiglu_inplace(part, u),
                Arch::Gemma3 => ops::geglu_inplace(part, u),
            }
        });
        dbg("ffn_act", gate);
        mm(pool, &lw.w_down, gate, proj, &mut s.mm);
        dbg("ffn_out", proj);
        residual_add(
            pool,
            cr * d,
            x,
            proj,
            lw.post_ffn_norm.as_deref(),
            cfg.rms_eps,
        );
        debug_dump(&format!("l_out-{li}"), x);
    }

    // Final norm and logits for the last token of each sequence that wants them.
    let last = sized(&mut s.last, num_logits * d);
    let wanting = attn_seqs
        .iter()
        .zip(seqs)
        .filter(|(_, s)| s.wants_logits)
        .map(|(a, _)| a);
    for (li, a) in wanting.enumerate() {
        let t = a.first_row + a.num_rows - 1;
        ops::rms_norm(
            &s.x[t * d..(t + 1) * d],
            &weights.output_norm,
            cfg.rms_eps,
            &mut last[li * d..(li + 1) * d],
        );
    }
    if num_logits > 0 {
        mm(pool, &weights.output, last, out, &mut s.mm);
    }
    Ok(())
}

/// Development aid: with `FULCRUM_DUMP_DIR` set, writes intermediate tensors
/// as raw little-endian f32 (compared against llama.cpp's by tools/).
fn debug_dump(name: &str, v: &[f32]) {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    if let Some(dir) = DIR.get_or_init(|| std::env::var_os("FULCRUM_DUMP_DIR").map(Into::into)) {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        let _ = std::fs::write(dir.join(format!("{name}.bin")), bytes);
    }
}
