//! The forward pass over a ragged batch.
//!
//! A batch is every scheduled sequence's new tokens for one step: prefill
//! chunks and single decode tokens together. Every linear layer runs once
//! over all `T` tokens of the step as one matrix product (each weight read
//! once per step), attention runs per sequence over its paged cache, and
//! logits are computed only for the sequences that need them (those whose
//! step ends at their last known token).
//!
//! [`forward_into`] sets the step up (positions, rope tables, embeddings,
//! each sequence's rows), runs each layer as an attention block then a
//! feed-forward block (`blocks.rs`: each reads the residual stream, adds its
//! output back), and ends with the final norm and the logits.
//!
//! Shapes: `T` rows (every new token of the step, in batch order), `d` the
//! residual width, `L` the sequences wanting logits.

mod blocks;
mod dump;

pub use dump::TensorDump;

use fulcrum_kernels::attention::AttentionSeq;
use fulcrum_kernels::gemm::{matmul, MatmulScratch};
use fulcrum_kernels::ops::{self, RopeTable};
use fulcrum_kernels::quant::dequantize_row;
use fulcrum_kernels::WorkerPool;

use crate::config::{Arch, ModelConfig};
use crate::kv_cache::KvCache;
use crate::model::Model;
use crate::weights::Weights;

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
/// the largest batch seen), and where intermediate tensors go, if anywhere.
///
/// [`ForwardScratch::default`] dumps tensors when `FULCRUM_DUMP_DIR` is set
/// (see [`TensorDump::from_env`]), so every caller honours that variable;
/// [`ForwardScratch::with_dump`] decides explicitly.
pub struct ForwardScratch {
    positions: Vec<u32>, // [T]
    /// One table per distinct rope base (Gemma has a local and a global one).
    rope: Vec<(f32, RopeTable)>,
    x: Vec<f32>,      // [T, d]: the residual stream
    xn: Vec<f32>,     // [T, d]: a block's normalized input
    q: Vec<f32>,      // [T, q_dim]
    k: Vec<f32>,      // [T, kv_dim]
    v: Vec<f32>,      // [T, kv_dim]
    attn: Vec<f32>,   // [T, q_dim]
    proj: Vec<f32>,   // [T, d]: a block's output
    gate: Vec<f32>,   // [T, ffn]
    up: Vec<f32>,     // [T, ffn]
    last: Vec<f32>,   // [L, d]
    logits: Vec<f32>, // [L, vocab]
    mm: MatmulScratch,
    dump: Option<TensorDump>,
}

impl Default for ForwardScratch {
    fn default() -> Self {
        ForwardScratch::with_dump(TensorDump::from_env())
    }
}

impl ForwardScratch {
    /// Empty buffers; intermediate tensors go to `dump` when it is `Some`.
    pub fn with_dump(dump: Option<TensorDump>) -> ForwardScratch {
        ForwardScratch {
            positions: Vec::new(),
            rope: Vec::new(),
            x: Vec::new(),
            xn: Vec::new(),
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            attn: Vec::new(),
            proj: Vec::new(),
            gate: Vec::new(),
            up: Vec::new(),
            last: Vec::new(),
            logits: Vec::new(),
            mm: MatmulScratch::default(),
            dump,
        }
    }
}

/// What every block of one step shares.
struct Step<'a> {
    cfg: &'a ModelConfig,
    pool: &'a WorkerPool,
    /// `T`: every sequence's new tokens, in batch order.
    num_tokens: usize,
    /// Rows per task of the row-wise operations (norms, rope, residuals).
    chunk_rows: usize,
    /// Each sequence's rows of the step and its cache blocks.
    seqs: Vec<AttentionSeq<'a>>,
}

impl<'a> Step<'a> {
    fn new(cfg: &'a ModelConfig, pool: &'a WorkerPool, seqs: &[SeqInput<'a>]) -> Step<'a> {
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
        Step {
            cfg,
            pool,
            num_tokens: first_row,
            chunk_rows: rows_per_chunk(pool, first_row),
            seqs: attn_seqs,
        }
    }
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
    let cfg = &model.config;
    validate_batch(cfg, kv, seqs)?;
    let num_logits = seqs.iter().filter(|s| s.wants_logits).count();
    assert_eq!(
        out.len(),
        num_logits * cfg.vocab_size,
        "logits buffer of the wrong size"
    );
    let step = Step::new(cfg, pool, seqs);
    fill_rope_tables(cfg, seqs, s);
    embed(model, seqs, sized(&mut s.x, step.num_tokens * cfg.d_model));
    for (li, (lw, la)) in model.weights.layers.iter().zip(&cfg.layers).enumerate() {
        // SAFETY: the batch was validated (block ids inside the cache); the
        // caller guarantees no other thread touches these sequences' blocks.
        unsafe { blocks::attention(&step, li, lw, la, kv, s) };
        blocks::feed_forward(&step, li, lw, s);
        if let Some(dump) = &s.dump {
            dump.write("l_out", li, &s.x[..step.num_tokens * cfg.d_model]);
        }
    }
    final_norm_and_logits(&step, seqs, &model.weights, s, out);
    Ok(())
}

/// Each row's position, and the rope tables at those positions.
fn fill_rope_tables(cfg: &ModelConfig, seqs: &[SeqInput], s: &mut ForwardScratch) {
    s.positions.clear();
    for sq in seqs {
        s.positions
            .extend((0..sq.tokens.len() as u32).map(|i| sq.num_computed_tokens as u32 + i));
    }
    s.rope.clear();
    for layer in &cfg.layers {
        if !s.rope.iter().any(|(b, _)| *b == layer.rope_base) {
            let mut t = RopeTable::default();
            t.fill(&s.positions, cfg.rope_dim, layer.rope_base);
            s.rope.push((layer.rope_base, t));
        }
    }
}

/// The residual stream's first value: each token's embedding row (`x`:
/// `[T, d]`), scaled by √d for Gemma.
fn embed(model: &Model, seqs: &[SeqInput], x: &mut [f32]) {
    let d = model.config.d_model;
    let embd = model.weights.token_embd.matrix(&model.file);
    for (row, &tok) in x
        .chunks_exact_mut(d)
        .zip(seqs.iter().flat_map(|s| s.tokens))
    {
        dequantize_row(embd.ty, embd.row(tok as usize), row);
    }
    if model.config.arch == Arch::Gemma3 {
        let scale = (d as f32).sqrt();
        x.iter_mut().for_each(|v| *v *= scale);
    }
}

/// The final norm of the last row of each sequence that wants logits, then
/// the output projection into `out` (`[L, vocab]`).
fn final_norm_and_logits(
    step: &Step,
    seqs: &[SeqInput],
    weights: &Weights,
    s: &mut ForwardScratch,
    out: &mut [f32],
) {
    let cfg = step.cfg;
    let d = cfg.d_model;
    let num_logits = out.len() / cfg.vocab_size;
    let last = sized(&mut s.last, num_logits * d); // [L, d]
    let wanting = step
        .seqs
        .iter()
        .zip(seqs)
        .filter(|(_, sq)| sq.wants_logits)
        .map(|(a, _)| a);
    for (i, a) in wanting.enumerate() {
        let t = a.first_row + a.num_rows - 1;
        ops::rms_norm(
            &s.x[t * d..(t + 1) * d],
            &weights.output_norm,
            cfg.rms_eps,
            &mut last[i * d..(i + 1) * d],
        );
    }
    if num_logits > 0 {
        matmul(
            step.pool,
            last,
            num_logits,
            &weights.output.packed,
            out,
            &mut s.mm,
        );
    }
}
