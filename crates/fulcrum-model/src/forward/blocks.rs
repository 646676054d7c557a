//! The two blocks of a layer. Each normalizes the residual stream `x`
//! (`[T, d]`) into `xn`, computes its output into `proj` (`[T, d]`) and adds
//! that back into `x`: the output projection and the residual add are where a
//! block's result is complete.

use fulcrum_kernels::attention::{
    paged_attention_cells, paged_attention_q8_cells, write_kv_batch_cells, write_kv_q8_batch_cells,
    AttentionParams,
};
use fulcrum_kernels::gemm::{matmul, matmul_same_input};
use fulcrum_kernels::ops::{self, RopeTable};

use super::{sized, ForwardScratch, Step};
use crate::config::{Arch, LayerAttention};
use crate::kv_cache::{KvCache, KvLayer};
use crate::weights::LayerWeights;

/// `x += attention(norm(x))` for layer `li`, writing the step's keys and
/// values into the cache first.
///
/// # Safety
/// The batch was validated against `kv`, and no other thread writes the
/// blocks of these sequences or touches the slots they write (as
/// [`super::forward`]).
pub(super) unsafe fn attention(
    step: &Step,
    li: usize,
    lw: &LayerWeights,
    la: &LayerAttention,
    kv: &KvCache,
    s: &mut ForwardScratch,
) {
    let cfg = step.cfg;
    let (t, d, qd, kvd) = (step.num_tokens, cfg.d_model, cfg.q_dim(), cfg.kv_dim());
    let ForwardScratch {
        x,
        xn,
        q,
        k,
        v,
        attn,
        proj,
        rope,
        mm,
        dump,
        ..
    } = s;
    let sink = dump.as_ref();
    let dump = |name: &str, v: &[f32]| {
        if let Some(sink) = sink {
            sink.write(name, li, v)
        }
    };
    let x = &mut x[..t * d];
    let xn = sized(xn, t * d);
    norm_rows(step, x, &lw.attn_norm, xn);
    let q = sized(q, t * qd); // [T, num_heads * head_dim]
    let k = sized(k, t * kvd); // [T, num_kv_heads * head_dim]
    let v = sized(v, t * kvd); // [T, num_kv_heads * head_dim]
    matmul_same_input(
        step.pool,
        xn,
        &[&lw.wq.packed, &lw.wk.packed, &lw.wv.packed],
        &mut [&mut *q, &mut *k, &mut *v],
        mm,
    );
    dump("attn_norm", xn);
    dump("Qcur", q);
    dump("Kcur", k);
    dump("Vcur", v);
    let rope = &rope
        .iter()
        .find(|(b, _)| *b == la.rope_base)
        .expect("a table per rope base")
        .1;
    qk_norm_rope(step, lw, rope, q, k);
    let attn = sized(attn, t * qd); // [T, num_heads * head_dim]

    // SAFETY: the caller's promise (a validated batch, its blocks not
    // touched by another thread).
    unsafe {
        write_kv(step, kv, li, k, v);
        attend(step, la, kv, li, q, attn);
    }
    dump("Qrope", q);
    dump("Krope", k);
    dump("kqv_out", attn);
    let proj = sized(proj, t * d);
    matmul(step.pool, attn, t, &lw.wo.packed, proj, mm);
    dump("attn_out", proj);
    residual_add(step, x, proj, lw.post_attn_norm.as_deref());
    dump("attn_post_norm", proj);
}

/// Per row of `q` (`[T, q_dim]`) and `k` (`[T, kv_dim]`): Gemma's per-head
/// q/k norms, then the rotation at the row's position.
fn qk_norm_rope(step: &Step, lw: &LayerWeights, rope: &RopeTable, q: &mut [f32], k: &mut [f32]) {
    let cfg = step.cfg;
    let cr = step.chunk_rows;
    for (buf, width, norm) in [(q, cfg.q_dim(), &lw.q_norm), (k, cfg.kv_dim(), &lw.k_norm)] {
        step.pool.for_each_chunk_mut(buf, cr * width, |i, part| {
            if let Some(nw) = norm {
                ops::rms_norm_inplace(part, nw, cfg.rms_eps);
            }
            for (j, row) in part.chunks_exact_mut(width).enumerate() {
                let (c, sn) = rope.row(i * cr + j);
                ops::rope(row, cfg.head_dim, c, sn, cfg.rope_style);
            }
        });
    }
}

/// Writes the step's keys and values (`k`, `v`: `[T, kv_dim]`) into their
/// sequences' cache slots of layer `li`.
///
/// # Safety
/// As [`attention`].
unsafe fn write_kv(step: &Step, kv: &KvCache, li: usize, k: &[f32], v: &[f32]) {
    // SAFETY: the caller's promise.
    match kv.layer(li) {
        KvLayer::F16 { k: kc, v: vc } => unsafe {
            write_kv_batch_cells(step.pool, &kv.shape, kc, vc, &step.seqs, k, v)
        },
        KvLayer::Q8(l) => unsafe {
            write_kv_q8_batch_cells(step.pool, &kv.shape, l, &step.seqs, k, v)
        },
    }
}

/// Each query row of `q` (`[T, q_dim]`) over its sequence's cached positions
/// (its own new ones included), into `out` (`[T, q_dim]`).
///
/// # Safety
/// As [`attention`].
unsafe fn attend(
    step: &Step,
    la: &LayerAttention,
    kv: &KvCache,
    li: usize,
    q: &[f32],
    out: &mut [f32],
) {
    let cfg = step.cfg;
    let params = AttentionParams {
        num_heads: cfg.num_heads,
        num_kv_heads: cfg.num_kv_heads,
        head_dim: cfg.head_dim,
        scale: cfg.attention_scale,
        window: la.window,
    };
    // SAFETY: the caller's promise.
    match kv.layer(li) {
        KvLayer::F16 { k: kc, v: vc } => unsafe {
            paged_attention_cells(step.pool, &params, &kv.shape, q, kc, vc, &step.seqs, out)
        },
        KvLayer::Q8(l) => unsafe {
            paged_attention_q8_cells(step.pool, &params, &kv.shape, q, l, &step.seqs, out)
        },
    }
}

/// `x += down(act(gate(norm(x)), up(norm(x))))` for layer `li`.
pub(super) fn feed_forward(step: &Step, li: usize, lw: &LayerWeights, s: &mut ForwardScratch) {
    let cfg = step.cfg;
    let (t, d, ffn) = (step.num_tokens, cfg.d_model, cfg.ffn_dim);
    let ForwardScratch {
        x,
        xn,
        gate,
        up,
        proj,
        mm,
        dump,
        ..
    } = s;
    let sink = dump.as_ref();
    let dump = |name: &str, v: &[f32]| {
        if let Some(sink) = sink {
            sink.write(name, li, v)
        }
    };
    let x = &mut x[..t * d];
    dump("ffn_inp", x);
    let xn = sized(xn, t * d);
    norm_rows(step, x, &lw.ffn_norm, xn);
    dump("ffn_norm", xn);
    let gate = sized(gate, t * ffn); // [T, ffn]
    let up = sized(up, t * ffn); // [T, ffn]
    matmul_same_input(
        step.pool,
        xn,
        &[&lw.w_gate.packed, &lw.w_up.packed],
        &mut [&mut *gate, &mut *up],
        mm,
    );
    dump("ffn_gate", gate);
    dump("ffn_up", up);
    // The activation is written over `gate`: no extra buffer.
    let up: &[f32] = up;
    let cr = step.chunk_rows;
    step.pool.for_each_chunk_mut(gate, cr * ffn, |i, part| {
        let u = &up[i * cr * ffn..][..part.len()];
        match cfg.arch {
            Arch::Llama => ops::swiglu_inplace(part, u),
            Arch::Gemma3 => ops::geglu_inplace(part, u),
        }
    });
    dump("ffn_act", gate);
    let proj = sized(proj, t * d);
    matmul(step.pool, gate, t, &lw.w_down.packed, proj, mm);
    dump("ffn_out", proj);
    residual_add(step, x, proj, lw.post_ffn_norm.as_deref());
}

/// `out = rms_norm(x) · w` row by row (`x`, `out`: `[T, d]`).
fn norm_rows(step: &Step, x: &[f32], w: &[f32], out: &mut [f32]) {
    let (chunk, eps) = (step.chunk_rows * step.cfg.d_model, step.cfg.rms_eps);
    step.pool.for_each_chunk_mut(out, chunk, |i, part| {
        ops::rms_norm(&x[i * chunk..][..part.len()], w, eps, part)
    });
}

/// `x += norm(y)` (Gemma's post-norms, `y` normalized in place) or `x += y`
/// (`x`, `y`: `[T, d]`).
fn residual_add(step: &Step, x: &mut [f32], y: &mut [f32], norm: Option<&[f32]>) {
    let (chunk, eps) = (step.chunk_rows * step.cfg.d_model, step.cfg.rms_eps);
    if let Some(w) = norm {
        step.pool
            .for_each_chunk_mut(y, chunk, |_, part| ops::rms_norm_inplace(part, w, eps));
    }
    let y: &[f32] = y;
    step.pool.for_each_chunk_mut(x, chunk, |i, part| {
        ops::add_inplace(part, &y[i * chunk..][..part.len()])
    });
}
