//! The sampler: one logits row → one token, per request, deterministic.
//!
//! Principal items:
//! - [`SamplingParams`] (in `params`): validated per-request settings.
//! - [`sample`]: penalties → greedy argmax, or temperature → top-k → top-p →
//!   min-p → a draw from the request's own [`SamplerRng`].
//! - [`SampledToken`]: the token and, if asked, logprobs.
//!
//! Choices, and why:
//! - Greedy is argmax with the lowest id winning ties, so it is bit-stable.
//! - Penalties follow vLLM/OpenAI: repetition (CTRL style: positive logits
//!   divided, negative multiplied) over prompt *and* output tokens; presence
//!   and frequency over *output* tokens only, `logit -= presence + frequency ×
//!   count`.
//! - Logprobs are of the *raw* model distribution: `log_softmax` of the logits
//!   as the model produced them, before penalties and temperature (vLLM's
//!   default). They describe the model, not the sampling recipe, and stay
//!   comparable across requests with different settings.
//! - Truncation never sorts the vocabulary: top-k is a heap selection; top-p
//!   alone is a histogram pass that sorts only the tokens at the boundary
//!   (top-p after top-k works on the k survivors); min-p is a threshold on
//!   weights already relative to the maximum.
//! - Each sequence owns a ChaCha8 RNG seeded from its `seed`, so a seeded
//!   request samples the same tokens whatever else is in the batch.
//! - NaN logits count as −∞: a broken row yields some token, never a panic.

mod params;
mod select;

#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use params::{SamplingError, SamplingParams, GREEDY_TEMPERATURE, MAX_LOGPROBS, MAX_N};
use select::{nucleus_indices, top_k_indices};

/// A sequence's own random stream.
pub type SamplerRng = ChaCha8Rng;

/// The RNG for one sequence: from `seed` when given (reproducible), else from
/// process entropy. `stream` separates the `n` completions of one request.
pub fn sampler_rng(seed: Option<u64>, stream: u64) -> SamplerRng {
    let seed = seed.unwrap_or_else(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(stream);
        hasher.finish()
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// Raw-model logprob of `id`; `None` unless `logprobs` was asked for.
    pub logprob: Option<f32>,
    /// The `logprobs` most likely tokens and their raw logprobs, most likely
    /// first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Samples one token from `logits` (one row, `[vocab]`); NaN counts as
/// -inf. `prompt` and `output` are the sequence's tokens, for the
/// penalties. An empty row yields token 0.
///
/// A plain argmax (greedy, no penalties, no logprobs) reads the row where
/// it is; everything else works on a copy in `scratch` (196 KB a row at a
/// 49 152-token vocabulary, worth skipping in the common greedy case).
pub fn sample(
    logits: &[f32],
    scratch: &mut Vec<f32>,
    params: &SamplingParams,
    prompt: &[u32],
    output: &[u32],
    rng: &mut SamplerRng,
) -> SampledToken {
    if params.is_greedy() && !params.has_penalties() && params.logprobs.is_none() {
        return SampledToken {
            id: argmax(logits),
            logprob: None,
            top_logprobs: Vec::new(),
        };
    }
    scratch.clear();
    scratch.extend_from_slice(logits);
    sample_in_place(scratch, params, prompt, output, rng)
}

/// [`sample`] on a row it may overwrite.
fn sample_in_place(
    logits: &mut [f32],
    params: &SamplingParams,
    prompt: &[u32],
    output: &[u32],
    rng: &mut SamplerRng,
) -> SampledToken {
    for logit in logits.iter_mut() {
        if logit.is_nan() {
            *logit = f32::NEG_INFINITY;
        }
    }
    // [vocab] raw logits, kept only when logprobs are wanted.
    let raw = params.logprobs.map(|_| logits.to_vec());
    let id = if logits.is_empty() {
        0
    } else {
        apply_penalties(logits, params, prompt, output);
        if params.is_greedy() || to_weights(logits, params.temperature).is_none() {
            argmax(logits)
        } else {
            // `logits` now holds weights.
            let candidates = truncate(logits, params);
            draw(logits, &candidates, params.min_p, uniform(rng))
        }
    };
    match (raw, params.logprobs) {
        (Some(raw), Some(n)) if !raw.is_empty() => {
            let lse = log_sum_exp(&raw);
            // A row without a finite normalizer (all −∞, or a +∞) has no
            // meaningful logprobs: report −∞ rather than NaN.
            let logprob = |t: u32| {
                if lse.is_finite() {
                    raw[t as usize] - lse
                } else {
                    f32::NEG_INFINITY
                }
            };
            SampledToken {
                id,
                logprob: Some(logprob(id)),
                top_logprobs: top_k_indices(&raw, n)
                    .into_iter()
                    .map(|t| (t, logprob(t)))
                    .collect(),
            }
        }
        _ => SampledToken {
            id,
            logprob: None,
            top_logprobs: Vec::new(),
        },
    }
}

/// Lowest index of the maximum, NaN counting as -inf (0 for an empty row).
///
/// Two passes: the maximum over 16 independent lanes (the compiler turns it
/// into vector max instructions), then the first index holding it. The
/// one-pass compare-and-keep loop was a dependency chain through the best
/// value: ~1 ms per 64-sequence decode step for a 49 152-token vocabulary,
/// on the engine thread while the pool waits.
fn argmax(values: &[f32]) -> u32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    if max == f32::NEG_INFINITY {
        // Every value is -inf or NaN: all count as -inf, the first wins.
        return 0;
    }
    // `==` also matches -0.0 to a 0.0 maximum: the lowest of them wins, as
    // when the values are compared one by one.
    values.iter().position(|&v| v == max).unwrap_or(0) as u32
}

/// The one-pass argmax [`argmax`] must agree with.
#[cfg(test)]
fn argmax_reference(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn apply_penalties(logits: &mut [f32], params: &SamplingParams, prompt: &[u32], output: &[u32]) {
    if !params.has_penalties() {
        return;
    }
    let vocab = logits.len();
    let r = params.repetition_penalty;
    if r != 1.0 {
        let mut seen: Vec<u32> = prompt
            .iter()
            .chain(output)
            .copied()
            .filter(|&t| (t as usize) < vocab)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            let logit = &mut logits[t as usize];
            *logit = if *logit > 0.0 { *logit / r } else { *logit * r };
        }
    }
    if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
        let mut generated: Vec<u32> = output
            .iter()
            .copied()
            .filter(|&t| (t as usize) < vocab)
            .collect();
        generated.sort_unstable();
        for run in generated.chunk_by(|a, b| a == b) {
            logits[run[0] as usize] -=
                params.presence_penalty + params.frequency_penalty * run.len() as f32;
        }
    }
}

/// In place: logits → `exp((logit - max) / temperature)`, so the most likely
/// token weighs exactly 1. `None` (nothing changed) when no logit is finite
/// at the top (all −∞, or a +∞): the caller falls back to argmax.
fn to_weights(logits: &mut [f32], temperature: f32) -> Option<()> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let inv_t = 1.0 / temperature;
    for w in logits.iter_mut() {
        *w = ((*w - max) * inv_t).exp();
    }
    Some(())
}

/// Tokens that survive top-k and top-p (min-p is applied in the draw).
#[derive(Debug, PartialEq)]
enum Candidates {
    /// No truncation: the whole vocabulary, in id order.
    All,
    /// The kept tokens, in a fixed (deterministic) order.
    Top(Vec<u32>),
}

fn truncate(weights: &[f32], params: &SamplingParams) -> Candidates {
    let top_k = params.top_k.filter(|&k| k < weights.len());
    let has_top_p = params.top_p < 1.0;
    match top_k {
        Some(k) => {
            let mut top = top_k_indices(weights, k);
            if has_top_p {
                let total = sum_of(weights, &top);
                keep_nucleus(&mut top, weights, total, params.top_p);
            }
            Candidates::Top(top)
        }
        None if has_top_p => Candidates::Top(nucleus_indices(weights, params.top_p)),
        None => Candidates::All,
    }
}

fn sum_of(weights: &[f32], ids: &[u32]) -> f64 {
    ids.iter().map(|&t| f64::from(weights[t as usize])).sum()
}

/// Keeps the shortest heaviest-first prefix of `top` whose mass reaches
/// `top_p × total` (at least one token).
fn keep_nucleus(top: &mut Vec<u32>, weights: &[f32], total: f64, top_p: f32) {
    let target = f64::from(top_p) * total;
    let mut mass = 0.0;
    let mut keep = top.len();
    for (i, &t) in top.iter().enumerate() {
        mass += f64::from(weights[t as usize]);
        if mass >= target {
            keep = i + 1;
            break;
        }
    }
    top.truncate(keep.max(1));
}

/// Inverse-CDF draw with `u` in [0, 1) over the candidates whose weight is at
/// least `min_p` (the heaviest weighs 1, so that is min-p).
fn draw(weights: &[f32], candidates: &Candidates, min_p: f32, u: f64) -> u32 {
    match candidates {
        Candidates::All => draw_from(0..weights.len() as u32, weights, min_p, u),
        Candidates::Top(top) => draw_from(top.iter().copied(), weights, min_p, u),
    }
}

fn draw_from(ids: impl Iterator<Item = u32> + Clone, weights: &[f32], min_p: f32, u: f64) -> u32 {
    let kept = ids.filter(|&t| weights[t as usize] >= min_p);
    let total: f64 = kept.clone().map(|t| f64::from(weights[t as usize])).sum();
    let target = u * total;
    let mut mass = 0.0;
    let mut last = None;
    for t in kept {
        mass += f64::from(weights[t as usize]);
        if mass > target {
            return t;
        }
        last = Some(t);
    }
    // Rounding left `mass` a hair under `target`: the last kept token.
    last.unwrap_or_else(|| argmax(weights))
}

/// Uniform in [0, 1) with 53 random bits.
fn uniform(rng: &mut SamplerRng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = values.iter().map(|&v| f64::from(v - max).exp()).sum();
    max + sum.ln() as f32
}

/// The distribution `sample` draws from, as `(token, probability)` in id
/// order. For tests against plain references.
#[cfg(test)]
fn distribution(
    logits: &[f32],
    params: &SamplingParams,
    prompt: &[u32],
    output: &[u32],
) -> Vec<(u32, f64)> {
    let mut weights = logits.to_vec();
    apply_penalties(&mut weights, params, prompt, output);
    if to_weights(&mut weights, params.temperature).is_none() {
        return vec![(argmax(&weights), 1.0)];
    }
    let mut ids: Vec<u32> = match truncate(&weights, params) {
        Candidates::All => (0..weights.len() as u32).collect(),
        Candidates::Top(top) => top,
    };
    ids.retain(|&t| weights[t as usize] >= params.min_p);
    ids.sort_unstable();
    let total = sum_of(&weights, &ids);
    ids.into_iter()
        .map(|t| (t, f64::from(weights[t as usize]) / total))
        .collect()
}
