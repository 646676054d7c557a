//! The sampler against plain references: full sorts, per-token penalty loops,
//! f64 softmax.

use super::*;
use proptest::prelude::*;

/// [`super::sample`] with a fresh scratch row, so the tests read as calls
/// on one row.
fn sample(
    logits: &[f32],
    params: &SamplingParams,
    prompt: &[u32],
    output: &[u32],
    rng: &mut SamplerRng,
) -> SampledToken {
    super::sample(logits, &mut Vec::new(), params, prompt, output, rng)
}

fn params() -> SamplingParams {
    SamplingParams::default()
}

fn rng(seed: u64) -> SamplerRng {
    sampler_rng(Some(seed), 0)
}

/// Penalties as the definitions read, token by token.
fn reference_penalties(
    logits: &[f32],
    p: &SamplingParams,
    prompt: &[u32],
    output: &[u32],
) -> Vec<f32> {
    (0..logits.len() as u32)
        .map(|t| {
            let mut l = logits[t as usize];
            if prompt.contains(&t) || output.contains(&t) {
                l = if l > 0.0 {
                    l / p.repetition_penalty
                } else {
                    l * p.repetition_penalty
                };
            }
            let count = output.iter().filter(|&&o| o == t).count();
            if count > 0 {
                l -= p.presence_penalty + p.frequency_penalty * count as f32;
            }
            l
        })
        .collect()
}

/// The textbook pipeline in f64 with a full sort: softmax(logits / T),
/// top-k, renormalize, top-p, min-p, renormalize. `(token, prob)` by id.
fn reference_distribution(
    logits: &[f32],
    p: &SamplingParams,
    prompt: &[u32],
    output: &[u32],
) -> Vec<(u32, f64)> {
    let z: Vec<f64> = reference_penalties(logits, p, prompt, output)
        .iter()
        .map(|&l| f64::from(l) / f64::from(p.temperature))
        .collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(u32, f64)> = z
        .iter()
        .enumerate()
        .map(|(t, &v)| (t as u32, (v - max).exp()))
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(k) = p.top_k {
        probs.truncate(k);
    }
    if p.top_p < 1.0 {
        let total: f64 = probs.iter().map(|x| x.1).sum();
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, x) in probs.iter().enumerate() {
            mass += x.1 / total;
            if mass >= f64::from(p.top_p) {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let top = probs[0].1;
    probs.retain(|x| x.1 >= f64::from(p.min_p) * top);
    let total: f64 = probs.iter().map(|x| x.1).sum();
    let mut out: Vec<(u32, f64)> = probs.into_iter().map(|(t, w)| (t, w / total)).collect();
    out.sort_by_key(|x| x.0);
    out
}

fn assert_close(actual: &[(u32, f64)], expected: &[(u32, f64)]) {
    let ids = |d: &[(u32, f64)]| d.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(ids(actual), ids(expected), "kept tokens");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a.1 - e.1).abs() < 1e-5,
            "token {}: {} vs {}",
            a.0,
            a.1,
            e.1
        );
    }
}

proptest! {
    /// The two-pass argmax picks what the one-by-one comparison picks
    /// after NaN became -inf (as `sample` scrubs it): the lowest index of
    /// the maximum, with ties, infinities, signed zeros and NaN, on rows that
    /// do and do not fill whole 16-lane chunks. `sample`'s greedy path,
    /// which reads the row without a copy, picks what the full path picks.
    #[test]
    fn argmax_matches_the_one_pass_reference(
        row in proptest::collection::vec(
            prop_oneof![
                4 => (-3i32..4).prop_map(|v| v as f32),
                1 => Just(f32::NEG_INFINITY),
                1 => Just(f32::INFINITY),
                1 => Just(-0.0f32),
                1 => Just(0.0f32),
                1 => Just(f32::NAN),
            ],
            0..100,
        )
    ) {
        let scrubbed: Vec<f32> = row
            .iter()
            .map(|&v| if v.is_nan() { f32::NEG_INFINITY } else { v })
            .collect();
        prop_assert_eq!(argmax(&row), argmax_reference(&scrubbed));
        let p = SamplingParams::greedy();
        let fast = sample(&row, &p, &[], &[], &mut rng(0));
        let full = sample_in_place(&mut row.clone(), &p, &[], &[], &mut rng(0));
        prop_assert_eq!(fast, full);
    }
}

#[test]
fn penalties_and_logprobs_are_not_skipped_by_the_greedy_shortcut() {
    // Token 1 leads, but a repetition penalty on it lets token 2 win.
    let row = [0.5, 2.0, 1.9];
    let penalized = SamplingParams {
        repetition_penalty: 1.2,
        ..SamplingParams::greedy()
    };
    assert_eq!(sample(&row, &penalized, &[1], &[], &mut rng(0)).id, 2);
    let with_logprobs = SamplingParams {
        logprobs: Some(2),
        ..SamplingParams::greedy()
    };
    let out = sample(&row, &with_logprobs, &[], &[], &mut rng(0));
    assert_eq!(out.id, 1);
    assert!(out.logprob.is_some());
    assert_eq!(out.top_logprobs.len(), 2);
}

#[test]
fn greedy_is_argmax_with_the_lowest_id_on_ties() {
    let p = SamplingParams::greedy();
    assert_eq!(
        sample(&[1.0, 3.0, 3.0, 2.0], &p, &[], &[], &mut rng(0)).id,
        1
    );
    assert_eq!(
        sample(&[f32::NAN, 0.5, f32::NAN], &p, &[], &[], &mut rng(0)).id,
        1,
        "NaN is -inf"
    );
    assert_eq!(
        sample(&[f32::NEG_INFINITY; 3], &p, &[], &[], &mut rng(0)).id,
        0
    );
    assert_eq!(
        sample(&[], &p, &[], &[], &mut rng(0)).id,
        0,
        "an empty row does not panic"
    );
    // A tiny temperature is greedy, not a division overflow.
    let cold = SamplingParams {
        temperature: 1e-30,
        ..params()
    };
    assert_eq!(sample(&[0.0, 5.0, 4.0], &cold, &[], &[], &mut rng(0)).id, 1);
}

#[test]
fn penalties_follow_the_openai_and_vllm_definitions() {
    let p = SamplingParams {
        repetition_penalty: 2.0,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        ..SamplingParams::greedy()
    };
    let mut logits = [2.0, -2.0, 1.0, 0.5];
    apply_penalties(&mut logits, &p, &[0], &[1, 2, 2]);
    // 0: prompt only, repetition divides. 1: negative, multiplied, then
    // presence + 1 × frequency. 2: divided, then presence + 2 × frequency.
    assert_eq!(logits, [1.0, -4.75, -0.5, 0.5]);
    // Greedy sees the penalized logits.
    assert_eq!(
        sample(&[2.0, -2.0, 1.0, 1.5], &p, &[0], &[1, 2, 2], &mut rng(0)).id,
        3
    );
}

proptest! {
    #[test]
    fn penalties_match_the_reference(
        logits in prop::collection::vec(-5.0f32..5.0, 1..40),
        prompt in prop::collection::vec(0u32..50, 0..20),
        output in prop::collection::vec(0u32..50, 0..20),
        rep in 0.5f32..2.0, presence in -2.0f32..2.0, frequency in -2.0f32..2.0,
    ) {
        let p = SamplingParams { repetition_penalty: rep, presence_penalty: presence, frequency_penalty: frequency, ..params() };
        let mut actual = logits.clone();
        apply_penalties(&mut actual, &p, &prompt, &output);
        let expected = reference_penalties(&logits, &p, &prompt, &output);
        for (a, e) in actual.iter().zip(&expected) {
            prop_assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
    }

    #[test]
    fn truncation_matches_a_full_sort_reference(
        logits in prop::collection::vec(-8.0f32..8.0, 1..300),
        temperature in 0.2f32..2.0,
        top_k in prop::option::of(1usize..40),
        top_p in prop::sample::select(vec![1.0f32, 0.95, 0.8, 0.5, 0.1]),
        min_p in prop::sample::select(vec![0.0f32, 0.05, 0.3]),
    ) {
        let p = SamplingParams { temperature, top_k, top_p, min_p, ..params() };
        let actual = distribution(&logits, &p, &[], &[]);
        let expected = reference_distribution(&logits, &p, &[], &[]);
        let ids = |d: &[(u32, f64)]| d.iter().map(|x| x.0).collect::<Vec<_>>();
        prop_assert_eq!(ids(&actual), ids(&expected));
        for (a, e) in actual.iter().zip(&expected) {
            prop_assert!((a.1 - e.1).abs() < 1e-5);
        }
    }
}

#[test]
fn top_p_grows_its_selection_on_a_flat_distribution() {
    // 5000 equal logits: the nucleus of 0.5001 is 2501 tokens, beyond the
    // first selection rounds; ties keep the lowest ids. (Not 0.5 exactly: the
    // boundary would then depend on rounding.)
    let logits = vec![0.0f32; 5000];
    let p = SamplingParams {
        top_p: 0.5001,
        ..params()
    };
    let d = distribution(&logits, &p, &[], &[]);
    assert_eq!(d.len(), 2501);
    assert_eq!((d[0].0, d[2500].0), (0, 2500));
    assert_close(&d, &reference_distribution(&logits, &p, &[], &[]));
}

#[test]
fn min_p_is_relative_to_the_most_likely_token() {
    let logits = [0.0, (0.5f32).ln(), (0.09f32).ln(), (0.11f32).ln()];
    let p = SamplingParams {
        min_p: 0.1,
        ..params()
    };
    let kept: Vec<u32> = distribution(&logits, &p, &[], &[])
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(kept, vec![0, 1, 3]);
}

#[test]
fn samples_follow_the_distribution_and_stay_in_the_kept_set() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 1.5];
    let p = SamplingParams {
        top_k: Some(3),
        ..params()
    };
    let expected = reference_distribution(&logits, &p, &[], &[]);
    let mut counts = [0usize; 5];
    let mut r = rng(7);
    let n = 40_000;
    for _ in 0..n {
        counts[sample(&logits, &p, &[], &[], &mut r).id as usize] += 1;
    }
    assert_eq!((counts[2], counts[3]), (0, 0), "outside the top 3");
    for &(t, prob) in &expected {
        let freq = counts[t as usize] as f64 / n as f64;
        assert!((freq - prob).abs() < 0.01, "token {t}: {freq} vs {prob}");
    }
}

#[test]
fn a_seed_reproduces_the_same_samples() {
    let p = SamplingParams {
        seed: Some(42),
        temperature: 1.5,
        ..params()
    };
    let draw = |seed: u64, stream: u64| {
        let mut r = sampler_rng(Some(seed), stream);
        (0..64)
            .map(|i| sample(&vec![0.1 * i as f32; 100], &p, &[], &[], &mut r).id)
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(42, 0), draw(42, 0));
    assert_ne!(draw(42, 0), draw(43, 0));
    assert_ne!(
        draw(42, 0),
        draw(42, 1),
        "n > 1 completions get their own streams"
    );
}

#[test]
fn logprobs_are_of_the_raw_distribution_and_normalized() {
    let logits = [0.3f32, -1.2, 2.5, 0.0, 1.1, -0.4, 0.9, -3.0];
    let p = SamplingParams {
        logprobs: Some(8),
        temperature: 0.5,
        repetition_penalty: 1.7,
        presence_penalty: 1.0,
        ..params()
    };
    let out = sample(&logits, &p, &[2], &[2, 4], &mut rng(1));
    let total: f64 = out
        .top_logprobs
        .iter()
        .map(|&(_, lp)| f64::from(lp).exp())
        .sum();
    assert!((total - 1.0).abs() < 1e-5, "sums to {total}");
    // Raw: the model's log_softmax, untouched by penalties and temperature.
    let lse = logits.iter().map(|&l| f64::from(l).exp()).sum::<f64>().ln();
    for &(t, lp) in &out.top_logprobs {
        assert!((f64::from(lp) - (f64::from(logits[t as usize]) - lse)).abs() < 1e-5);
    }
    let ids: Vec<u32> = out.top_logprobs.iter().map(|x| x.0).collect();
    assert_eq!(ids, vec![2, 4, 6, 0, 3, 5, 1, 7], "most likely first");
    let sampled = out.top_logprobs.iter().find(|x| x.0 == out.id).unwrap().1;
    assert_eq!(out.logprob, Some(sampled));
    let none = sample(&logits, &params(), &[], &[], &mut rng(1));
    assert_eq!((none.logprob, none.top_logprobs.len()), (None, 0));
}

#[test]
fn a_large_vocabulary_is_sampled_within_its_top_k() {
    // 262k logits (gemma3's vocabulary) with a known top 50.
    let vocab = 262_144;
    let logits: Vec<f32> = (0..vocab)
        .map(|i| ((i * 7919) % vocab) as f32 / vocab as f32)
        .collect();
    let p = SamplingParams {
        top_k: Some(50),
        top_p: 0.9,
        logprobs: Some(5),
        ..params()
    };
    let top: Vec<u32> = select::top_k_indices(&logits, 50);
    let mut r = rng(3);
    for _ in 0..20 {
        let out = sample(&logits, &p, &[], &[], &mut r);
        assert!(top.contains(&out.id));
        assert_eq!(out.top_logprobs.len(), 5);
        assert_eq!(out.top_logprobs[0].0, top[0]);
    }
}
