//! Property test: random arrival/length traces through every policy, with a
//! fake model that checks the KV bookkeeping it would rely on.
//!
//! The fake model keeps a "KV cache" of physical slots. Writing position `p`
//! of a sequence stores a hash of the sequence's tokens `0..=p` (what real KV
//! at `p` depends on) in slot `(table[p / bs], p % bs)`; before producing
//! logits it checks every position `0..end` reads back its own hash. A block
//! shared by mistake, overwritten while cached, or missing shows up as a
//! wrong read. Each sampled token is a fixed function of the sequence and its
//! length, so the output must not depend on batching, chunking or preemption.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use fulcrum_engine::{
    AddError, FinishReason, Policy, Scheduler, SchedulerConfig, SchedulerStats, SeqId,
    SequenceRequest, StepOutput,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Request {
    arrival_step: usize,
    prompt: Vec<u32>,
    max_tokens: usize,
    priority: i32,
    abort_step: Option<usize>,
}

fn fake_token(id: SeqId, num_tokens: usize) -> u32 {
    ((id.0 as usize * 31 + num_tokens * 7) % 50) as u32 + 1
}

fn config_strategy() -> impl Strategy<Value = SchedulerConfig> {
    (
        prop::sample::select(Policy::ALL.to_vec()),
        prop::sample::select(vec![1usize, 2, 4, 8]),
        4usize..48,
        1usize..8,
        16usize..64,
        0usize..40,
        prop::sample::select(vec![0.0, 0.05, 0.2]),
        any::<bool>(),
    )
        .prop_map(
            |(
                policy,
                block_size,
                num_blocks,
                max_num_seqs,
                max_model_len,
                extra_budget,
                watermark,
                cache,
            )| {
                let min_budget = if policy.is_chunked() {
                    max_num_seqs
                } else {
                    max_model_len.max(max_num_seqs)
                };
                SchedulerConfig {
                    policy,
                    max_num_seqs,
                    max_batched_tokens: min_budget + extra_budget,
                    max_model_len,
                    block_size,
                    num_blocks,
                    watermark,
                    enable_prefix_cache: cache,
                }
            },
        )
}

fn request_strategy() -> impl Strategy<Value = Request> {
    (
        0usize..12,
        0usize..3,
        0usize..16,
        1usize..20,
        1usize..24,
        -1i32..2,
        prop::option::weighted(0.1, 0usize..30),
    )
        .prop_map(
            |(arrival_step, system, shared_len, own_len, max_tokens, priority, abort_step)| {
                // Three possible system prompts make prefix-cache hits likely.
                let mut prompt: Vec<u32> = (0..shared_len as u32)
                    .map(|i| 1000 * system as u32 + i)
                    .collect();
                prompt.extend((0..own_len as u32).map(|i| 500 + i * 3 + arrival_step as u32));
                Request {
                    arrival_step,
                    prompt,
                    max_tokens,
                    priority,
                    abort_step,
                }
            },
        )
}

fn prefix_hashes(tokens: &[u32]) -> Vec<u64> {
    let mut hasher = DefaultHasher::new();
    tokens
        .iter()
        .map(|t| {
            t.hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

/// Runs the trace to completion, checking every step. Returns the counters.
fn run_trace(
    config: SchedulerConfig,
    requests: &[Request],
) -> Result<SchedulerStats, TestCaseError> {
    let mut s = Scheduler::new(config.clone()).unwrap();
    let bs = config.block_size;
    let t0 = Instant::now();
    let mut kv: HashMap<(u32, usize), u64> = HashMap::new();
    let mut accepted = HashSet::new();
    let mut finished = HashMap::new();
    let last_arrival = requests.iter().map(|r| r.arrival_step).max().unwrap_or(0);
    let mut step = 0;
    while step <= last_arrival || s.has_unfinished() {
        prop_assert!(
            step < 5_000,
            "livelock: {} running, {} waiting",
            s.num_running(),
            s.num_waiting()
        );
        let now = t0 + Duration::from_millis(step as u64);
        for (i, r) in requests
            .iter()
            .enumerate()
            .filter(|(_, r)| r.arrival_step == step)
        {
            let id = SeqId(i as u64);
            let request = SequenceRequest {
                id,
                prompt: r.prompt.clone(),
                max_tokens: r.max_tokens,
                priority: r.priority,
                arrival: now,
            };
            match s.add(request) {
                Ok(()) => {
                    accepted.insert(id);
                }
                Err(AddError::ExceedsMaxModelLen { .. }) => {
                    prop_assert!(r.prompt.len() + r.max_tokens > config.max_model_len)
                }
                Err(AddError::ExceedsKvCapacity { .. }) => {
                    prop_assert!(
                        (r.prompt.len() + r.max_tokens - 1).div_ceil(bs) > config.num_blocks
                    )
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
        for (i, _) in requests
            .iter()
            .enumerate()
            .filter(|(_, r)| r.abort_step == Some(step))
        {
            s.finish(SeqId(i as u64), FinishReason::Abort, now);
        }

        let decoding_before: Vec<SeqId> = s
            .running_ids()
            .filter(|&id| s.sequence(id).is_some_and(|q| q.is_decoding()))
            .collect();
        let plan = s.plan();
        prop_assert!(
            !s.has_unfinished() || !plan.is_empty() || !plan.finished.is_empty(),
            "stalled step with {} running, {} waiting",
            s.num_running(),
            s.num_waiting()
        );
        prop_assert!(plan.num_seqs() <= config.max_num_seqs);
        prop_assert!(plan.num_batched_tokens() <= config.max_batched_tokens);
        if matches!(config.policy, Policy::Chunked | Policy::DecodeFirst) {
            for id in &decoding_before {
                let is_handled =
                    plan.scheduled.iter().any(|x| x.seq_id == *id) || plan.preempted.contains(id);
                prop_assert!(is_handled, "decode of {id} stalled under {}", config.policy);
            }
        }
        s.apply(&plan, now).unwrap();
        prop_assert!(s.num_running() <= config.max_num_seqs);
        if let Err(e) = s.pool().check_invariants() {
            prop_assert!(false, "pool: {e}");
        }

        // The fake model: write, then read back, every position.
        let mut outputs = Vec::new();
        for x in &plan.scheduled {
            let seq = s.sequence(x.seq_id).unwrap();
            let table = seq.block_table().as_slice();
            let end = x.num_computed_tokens + x.num_new_tokens;
            prop_assert!(table.len() * bs >= end, "blocks missing for {}", x.seq_id);
            let hashes = prefix_hashes(&seq.tokens()[..end]);
            for p in x.num_computed_tokens..end {
                let block = table[p / bs];
                prop_assert_eq!(s.pool().ref_count(block), 1, "write into a shared block");
                kv.insert((block, p % bs), hashes[p]);
            }
            for (p, &hash) in hashes.iter().enumerate() {
                prop_assert_eq!(
                    kv.get(&(table[p / bs], p % bs)),
                    Some(&hash),
                    "{} reads wrong KV at {}",
                    x.seq_id,
                    p
                );
            }
            if x.wants_logits {
                outputs.push(StepOutput {
                    seq_id: x.seq_id,
                    token: fake_token(x.seq_id, end),
                    is_stop: false,
                });
            }
        }
        s.update(&plan, &outputs, now).unwrap();
        for seq in s.take_finished() {
            finished.insert(seq.id(), seq);
        }
        step += 1;
    }

    prop_assert_eq!(
        finished.len(),
        accepted.len(),
        "every accepted request finishes"
    );
    for (id, seq) in &finished {
        let r = &requests[id.0 as usize];
        match seq.finish_reason() {
            Some(FinishReason::Length) => prop_assert_eq!(seq.num_output_tokens(), r.max_tokens),
            Some(FinishReason::Abort) => prop_assert!(r.abort_step.is_some()),
            other => prop_assert!(false, "{id} finished with {other:?}"),
        }
        for (i, &token) in seq.output_tokens().iter().enumerate() {
            prop_assert_eq!(
                token,
                fake_token(*id, r.prompt.len() + i),
                "{} output differs",
                id
            );
        }
    }
    prop_assert_eq!(
        s.pool().num_used_blocks(),
        0,
        "blocks in use return to zero"
    );
    prop_assert_eq!(s.pool().num_free_blocks(), config.num_blocks);
    let stats = s.stats();
    prop_assert!(stats.prefix_cache_hits <= stats.prefix_cache_queries);
    Ok(stats)
}

proptest! {
    // `PROPTEST_CASES=100000` for a long hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_trace_finishes_under_every_policy(
        config in config_strategy(),
        requests in prop::collection::vec(request_strategy(), 1..24),
    ) {
        run_trace(config, &requests)?;
    }
}

/// A tiny pool and long outputs force preemptions under every policy.
#[test]
fn preemption_heavy_traces_finish() {
    for policy in Policy::ALL {
        for enable_prefix_cache in [false, true] {
            let config = SchedulerConfig {
                policy,
                max_num_seqs: 4,
                max_batched_tokens: 32,
                max_model_len: 32,
                block_size: 2,
                num_blocks: 16,
                watermark: 0.0,
                enable_prefix_cache,
            };
            let requests: Vec<Request> = (0..8)
                .map(|i| Request {
                    arrival_step: i % 3,
                    prompt: (0..6 + i as u32).collect(),
                    max_tokens: 20,
                    priority: 0,
                    abort_step: None,
                })
                .collect();
            let stats = run_trace(config, &requests).unwrap();
            assert!(stats.num_preemptions > 0, "{policy}: no preemption forced");
        }
    }
}
