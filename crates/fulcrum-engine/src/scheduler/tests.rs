//! Hand-built situations, stated as whole expected plans. The fake model
//! samples token 1 for every sequence that wants logits.

use std::time::{Duration, Instant};

use super::*;
use crate::block_pool::BlockId;

fn config(policy: Policy) -> SchedulerConfig {
    SchedulerConfig {
        policy,
        max_num_seqs: 4,
        max_batched_tokens: 16,
        max_model_len: 16,
        block_size: 4,
        num_blocks: 64,
        watermark: 0.0,
        enable_prefix_cache: false,
    }
}

fn scheduler(config: SchedulerConfig) -> Scheduler {
    Scheduler::new(config).unwrap()
}

fn at(ms: u64) -> Instant {
    // One base instant per test process, so `at(n)` is comparable across calls.
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
}

/// Prompt tokens unique to `id` (no accidental prefix sharing).
fn prompt(id: u64, len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| id as u32 * 1000 + i).collect()
}

fn request(id: u64, prompt: Vec<u32>, max_tokens: usize, priority: i32) -> SequenceRequest {
    SequenceRequest {
        id: SeqId(id),
        prompt,
        max_tokens,
        priority,
        arrival: at(0),
    }
}

fn add(s: &mut Scheduler, id: u64, prompt_len: usize, max_tokens: usize) {
    s.add(request(id, prompt(id, prompt_len), max_tokens, 0))
        .unwrap();
}

/// Plans, applies, "runs" and updates one step; returns the plan.
fn step(s: &mut Scheduler, now: Instant) -> StepPlan {
    let plan = s.plan();
    s.apply(&plan, now).unwrap();
    let outputs: Vec<StepOutput> = plan
        .scheduled
        .iter()
        .filter(|x| x.wants_logits)
        .map(|x| StepOutput {
            seq_id: x.seq_id,
            token: 1,
            is_stop: false,
        })
        .collect();
    s.update(&plan, &outputs, now).unwrap();
    plan
}

fn decode(id: u64, position: usize, num_new_blocks: usize) -> ScheduledSeq {
    ScheduledSeq {
        seq_id: SeqId(id),
        is_decode: true,
        num_computed_tokens: position,
        num_new_tokens: 1,
        wants_logits: true,
        num_new_blocks,
        cached_blocks: Vec::new(),
    }
}

/// A prompt chunk `[start, start + len)`, wanting logits when it is the last.
fn chunk(
    id: u64,
    start: usize,
    len: usize,
    num_new_blocks: usize,
    wants_logits: bool,
) -> ScheduledSeq {
    ScheduledSeq {
        seq_id: SeqId(id),
        is_decode: false,
        num_computed_tokens: start,
        num_new_tokens: len,
        wants_logits,
        num_new_blocks,
        cached_blocks: Vec::new(),
    }
}

fn plan_of(scheduled: Vec<ScheduledSeq>) -> StepPlan {
    StepPlan {
        scheduled,
        preempted: Vec::new(),
        finished: Vec::new(),
    }
}

#[test]
fn chunked_fills_the_budget_behind_the_decodes() {
    let mut s = scheduler(SchedulerConfig {
        max_batched_tokens: 8,
        ..config(Policy::Chunked)
    });
    add(&mut s, 1, 6, 10);
    add(&mut s, 2, 10, 4);
    assert_eq!(
        step(&mut s, at(1)),
        plan_of(vec![chunk(1, 0, 6, 2, true), chunk(2, 0, 2, 1, false)])
    );
    // A decodes first; B's prompt continues with the rest of the budget.
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![decode(1, 6, 0), chunk(2, 2, 7, 2, false)])
    );
    assert_eq!(
        step(&mut s, at(3)),
        plan_of(vec![decode(1, 7, 0), chunk(2, 9, 1, 0, true)])
    );
    assert_eq!(
        step(&mut s, at(4)),
        plan_of(vec![decode(1, 8, 1), decode(2, 10, 0)])
    );
}

#[test]
fn chunked_never_stalls_a_running_decode_behind_a_long_prompt() {
    let mut s = scheduler(SchedulerConfig {
        max_batched_tokens: 8,
        max_model_len: 128,
        ..config(Policy::Chunked)
    });
    for id in 1..=3 {
        add(&mut s, id, 2, 20);
    }
    step(&mut s, at(1));
    add(&mut s, 4, 100, 1);
    for t in 2..10 {
        let plan = step(&mut s, at(t));
        assert!(plan.num_batched_tokens() <= 8);
        assert_eq!(
            plan.num_decode_tokens(),
            3,
            "every decode, every step: {plan:?}"
        );
    }
}

#[test]
fn chunked_continues_a_partial_prompt_before_admitting_new_ones() {
    let mut s = scheduler(SchedulerConfig {
        max_batched_tokens: 8,
        ..config(Policy::Chunked)
    });
    add(&mut s, 1, 12, 2);
    assert_eq!(step(&mut s, at(1)), plan_of(vec![chunk(1, 0, 8, 2, false)]));
    add(&mut s, 2, 6, 2);
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![chunk(1, 8, 4, 1, true), chunk(2, 0, 4, 1, false)])
    );
}

#[test]
fn prefill_first_runs_admissible_prompts_before_decodes() {
    let mut s = scheduler(config(Policy::PrefillFirst));
    add(&mut s, 1, 5, 8);
    step(&mut s, at(1));
    add(&mut s, 2, 16 - 4, 4);
    add(&mut s, 3, 4, 4);
    // Only 16 tokens of budget: 2 (12 tokens) fits whole, 3 (4 more) too.
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![chunk(2, 0, 12, 3, true), chunk(3, 0, 4, 1, true)])
    );
    assert_eq!(
        step(&mut s, at(3)),
        plan_of(vec![decode(1, 5, 0), decode(2, 12, 1), decode(3, 4, 1)])
    );
}

#[test]
fn prefill_first_decodes_when_the_next_prompt_does_not_fit() {
    let mut s = scheduler(SchedulerConfig {
        max_num_seqs: 1,
        max_batched_tokens: 16,
        ..config(Policy::PrefillFirst)
    });
    add(&mut s, 1, 5, 8);
    step(&mut s, at(1));
    add(&mut s, 2, 4, 4);
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![decode(1, 5, 0)]),
        "no batch slot for 2"
    );
}

#[test]
fn decode_first_admits_whole_prompts_only_into_the_leftover_budget() {
    let mut s = scheduler(config(Policy::DecodeFirst));
    add(&mut s, 1, 5, 8);
    add(&mut s, 4, 2, 3);
    step(&mut s, at(1));
    add(&mut s, 2, 15, 1); // 15 > 16 - 2 decodes
    add(&mut s, 3, 2, 4);
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![decode(1, 5, 0), decode(4, 2, 0)]),
        "3 queues behind 2"
    );
    assert_eq!(
        step(&mut s, at(3)),
        plan_of(vec![decode(1, 6, 0), decode(4, 3, 0)])
    );
    // 4 finished: 15 tokens of budget left, and 2 fits whole.
    assert_eq!(
        step(&mut s, at(4)),
        plan_of(vec![decode(1, 7, 0), chunk(2, 0, 15, 4, true)])
    );
}

#[test]
fn decode_first_keeps_a_growth_block_per_running_decode() {
    let mut s = scheduler(SchedulerConfig {
        num_blocks: 4,
        ..config(Policy::DecodeFirst)
    });
    add(&mut s, 1, 4, 8); // 1 block, the next token needs a second
    step(&mut s, at(1));
    add(&mut s, 2, 8, 1); // 2 blocks
                          // 3 free: 1 for the decode, 1 reserved for its next growth: 2 must wait.
    assert_eq!(step(&mut s, at(2)), plan_of(vec![decode(1, 4, 1)]));
    let mut chunked = scheduler(SchedulerConfig {
        num_blocks: 4,
        ..config(Policy::Chunked)
    });
    add(&mut chunked, 1, 4, 8);
    step(&mut chunked, at(1));
    add(&mut chunked, 2, 8, 1);
    assert_eq!(
        step(&mut chunked, at(2)),
        plan_of(vec![decode(1, 4, 1), chunk(2, 0, 8, 2, true)])
    );
}

#[test]
fn static_forms_a_new_batch_only_when_the_last_one_finished() {
    let mut s = scheduler(config(Policy::Static));
    add(&mut s, 1, 3, 2);
    add(&mut s, 2, 3, 4);
    assert_eq!(
        step(&mut s, at(1)),
        plan_of(vec![chunk(1, 0, 3, 1, true), chunk(2, 0, 3, 1, true)])
    );
    add(&mut s, 3, 3, 1);
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![decode(1, 3, 0), decode(2, 3, 0)])
    );
    assert_eq!(
        step(&mut s, at(3)),
        plan_of(vec![decode(2, 4, 1)]),
        "1 finished; 3 may not join"
    );
    assert_eq!(step(&mut s, at(4)), plan_of(vec![decode(2, 5, 0)]));
    assert_eq!(step(&mut s, at(5)), plan_of(vec![chunk(3, 0, 3, 1, true)]));
}

#[test]
fn static_keeps_forming_a_batch_across_budget_limited_steps() {
    let mut s = scheduler(config(Policy::Static));
    for id in 1..=3 {
        add(&mut s, id, 10, 2);
    }
    assert_eq!(step(&mut s, at(1)), plan_of(vec![chunk(1, 0, 10, 3, true)]));
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![chunk(2, 0, 10, 3, true)]),
        "still forming"
    );
    assert_eq!(step(&mut s, at(3)), plan_of(vec![chunk(3, 0, 10, 3, true)]));
    assert_eq!(
        step(&mut s, at(4)),
        plan_of(vec![decode(1, 10, 0), decode(2, 10, 0), decode(3, 10, 0)])
    );
}

#[test]
fn priority_orders_admission_and_equal_priorities_keep_arrival_order() {
    for policy in Policy::ALL {
        let mut s = scheduler(SchedulerConfig {
            max_num_seqs: 2,
            ..config(policy)
        });
        s.add(request(1, prompt(1, 2), 2, 5)).unwrap();
        s.add(request(2, prompt(2, 2), 2, 0)).unwrap();
        s.add(request(3, prompt(3, 2), 2, 0)).unwrap();
        s.add(request(4, prompt(4, 2), 2, -1)).unwrap();
        let ids: Vec<u64> = s.plan().scheduled.iter().map(|x| x.seq_id.0).collect();
        assert_eq!(ids, vec![4, 2], "{policy}");
        assert_eq!(
            s.waiting_ids().map(|id| id.0).collect::<Vec<_>>(),
            vec![4, 2, 3, 1]
        );
    }
}

/// Three sequences fill a 6-block pool; the next decodes need blocks.
fn full_pool(priorities: [i32; 3]) -> Scheduler {
    let mut s = scheduler(SchedulerConfig {
        num_blocks: 6,
        max_batched_tokens: 32,
        ..config(Policy::Chunked)
    });
    for (id, (len, priority)) in [(8, priorities[0]), (8, priorities[1]), (7, priorities[2])]
        .into_iter()
        .enumerate()
    {
        s.add(request(
            id as u64 + 1,
            prompt(id as u64 + 1, len),
            4,
            priority,
        ))
        .unwrap();
    }
    step(&mut s, at(1));
    assert_eq!(s.pool().num_free_blocks(), 0);
    s
}

#[test]
fn a_decode_without_a_block_preempts_the_newest_which_waits_at_the_front() {
    let mut s = full_pool([0, 0, 0]);
    add(&mut s, 4, 2, 1);
    let expected = StepPlan {
        scheduled: vec![decode(1, 8, 1), decode(2, 8, 1)],
        preempted: vec![SeqId(3)],
        finished: vec![],
    };
    assert_eq!(
        step(&mut s, at(2)),
        expected,
        "no admission in a step that preempts"
    );
    assert_eq!(
        s.waiting_ids().collect::<Vec<_>>(),
        vec![SeqId(3), SeqId(4)]
    );
    let victim = s.sequence(SeqId(3)).unwrap();
    assert_eq!(
        (victim.num_computed_tokens(), victim.num_output_tokens()),
        (0, 1),
        "keeps its token"
    );
    assert!(victim.block_table().is_empty());
    assert_eq!(s.stats().num_preemptions, 1);
    assert_eq!(s.num_preempted_waiting(), 1);
}

#[test]
fn the_lowest_priority_is_preempted_first() {
    let mut s = full_pool([1, 0, 0]);
    let expected = StepPlan {
        scheduled: vec![decode(2, 8, 1), decode(3, 7, 0)],
        preempted: vec![SeqId(1)],
        finished: vec![],
    };
    assert_eq!(step(&mut s, at(2)), expected);
}

#[test]
fn a_preempted_sequence_recomputes_its_prompt_and_generated_tokens() {
    let mut s = full_pool([0, 0, 0]);
    step(&mut s, at(2)); // preempts 3 (7 prompt tokens + 1 generated)
    while s
        .sequence(SeqId(3))
        .is_some_and(|q| q.status() == SequenceStatus::Waiting)
    {
        let plan = step(&mut s, at(3));
        if let Some(x) = plan.scheduled.iter().find(|x| x.seq_id == SeqId(3)) {
            assert_eq!(
                (x.num_computed_tokens, x.num_new_tokens, x.wants_logits),
                (0, 8, true)
            );
        }
    }
}

#[test]
fn a_lone_sequence_that_cannot_grow_finishes_instead_of_preempting_itself() {
    // Unreachable for requests `add` accepts; simulated by taking the free
    // blocks away behind the scheduler's back.
    let mut s = scheduler(SchedulerConfig {
        num_blocks: 4,
        ..config(Policy::Chunked)
    });
    add(&mut s, 1, 4, 8);
    step(&mut s, at(1));
    let mut stolen = crate::block_pool::BlockTable::default();
    s.pool.allocate(3, &mut stolen).unwrap();
    let expected = StepPlan {
        scheduled: vec![],
        preempted: vec![],
        finished: vec![(SeqId(1), FinishReason::Capacity)],
    };
    assert_eq!(step(&mut s, at(2)), expected);
    assert_eq!(
        s.take_finished()[0].finish_reason(),
        Some(FinishReason::Capacity)
    );
    assert_eq!(FinishReason::Capacity.as_openai_str(), "length");
    s.pool.free(&mut stolen);
    assert_eq!(s.pool().num_free_blocks(), 4);
}

#[test]
fn requests_that_can_never_fit_are_rejected_at_add() {
    let mut s = scheduler(SchedulerConfig {
        num_blocks: 3,
        ..config(Policy::Chunked)
    });
    s.add(request(1, prompt(1, 10), 3, 0)).unwrap(); // 12 tokens of KV: exactly the pool
    let err = s.add(request(2, prompt(2, 10), 4, 0)).unwrap_err();
    assert_eq!(
        err,
        AddError::ExceedsKvCapacity {
            num_tokens: 14,
            num_blocks_needed: 4,
            num_blocks: 3,
            num_kv_tokens: 12
        }
    );
    assert_eq!(
        err.to_string(),
        "the request needs 4 KV cache blocks for 14 tokens, but the pool has 3 blocks (12 tokens)"
    );
    let err = s.add(request(3, prompt(3, 10), 7, 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "this model's maximum context length is 16 tokens, but 10 prompt tokens + 7 `max_tokens` were requested"
    );
    assert_eq!(s.add(request(4, vec![], 1, 0)), Err(AddError::EmptyPrompt));
    assert_eq!(
        s.add(request(5, prompt(5, 1), 0, 0)),
        Err(AddError::ZeroMaxTokens)
    );
    assert_eq!(
        s.add(request(1, prompt(1, 1), 1, 0)),
        Err(AddError::DuplicateId(SeqId(1)))
    );
    assert_eq!(s.num_waiting(), 1);
}

#[test]
fn a_stale_plan_is_refused_and_changes_nothing() {
    let mut s = scheduler(config(Policy::Chunked));
    add(&mut s, 1, 4, 2);
    let plan = s.plan();
    add(&mut s, 2, 4, 2);
    assert_eq!(s.apply(&plan, at(1)), Err(StepError::StalePlan));
    assert_eq!(
        (s.num_waiting(), s.num_running(), s.pool().num_used_blocks()),
        (2, 0, 0)
    );
}

#[test]
fn outputs_that_do_not_match_the_plan_are_refused() {
    let mut s = scheduler(config(Policy::Chunked));
    add(&mut s, 1, 4, 2);
    let plan = s.schedule(at(1));
    let wrong = StepOutput {
        seq_id: SeqId(9),
        token: 1,
        is_stop: false,
    };
    assert!(matches!(
        s.update(&plan, &[wrong], at(1)),
        Err(StepError::OutputMismatch(_))
    ));
    assert!(matches!(
        s.update(&plan, &[], at(1)),
        Err(StepError::OutputMismatch(_))
    ));
    assert_eq!(s.sequence(SeqId(1)).unwrap().num_computed_tokens(), 0);
}

#[test]
fn timings_are_recorded_from_the_instants_passed_in() {
    let mut s = scheduler(config(Policy::Chunked));
    add(&mut s, 1, 4, 3);
    step(&mut s, at(5));
    step(&mut s, at(7));
    step(&mut s, at(10));
    let done = s.take_finished();
    assert_eq!(done.len(), 1);
    let t = done[0].timings();
    assert_eq!(t.first_scheduled, Some(at(5)));
    assert_eq!(t.token_times, vec![at(5), at(7), at(10)]);
    assert_eq!(t.finished, Some(at(10)));
    assert_eq!(t.queue_time(), Some(Duration::from_millis(5)));
    assert_eq!(t.ttft(), Some(Duration::from_millis(5)));
    assert_eq!(t.tpot(), Some(Duration::from_micros(2500)));
    assert_eq!(
        t.inter_token_latencies().collect::<Vec<_>>(),
        vec![Duration::from_millis(2), Duration::from_millis(3)]
    );
    assert_eq!(t.e2e(), Some(Duration::from_millis(10)));
    assert_eq!(done[0].finish_reason(), Some(FinishReason::Length));
    assert_eq!(done[0].output_tokens(), &[1, 1, 1]);
}

#[test]
fn stop_tokens_and_aborts_finish_and_release_blocks() {
    let mut s = scheduler(config(Policy::Chunked));
    add(&mut s, 1, 4, 8);
    add(&mut s, 2, 4, 8);
    let plan = s.schedule(at(1));
    let outputs = [
        StepOutput {
            seq_id: SeqId(1),
            token: 7,
            is_stop: true,
        },
        StepOutput {
            seq_id: SeqId(2),
            token: 1,
            is_stop: false,
        },
    ];
    s.update(&plan, &outputs, at(1)).unwrap();
    assert!(s.finish(SeqId(2), FinishReason::Abort, at(2)));
    assert!(!s.finish(SeqId(2), FinishReason::Abort, at(2)));
    let reasons: Vec<_> = s
        .take_finished()
        .iter()
        .map(|q| (q.id(), q.finish_reason()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (SeqId(1), Some(FinishReason::Stop)),
            (SeqId(2), Some(FinishReason::Abort))
        ]
    );
    assert_eq!(s.pool().num_used_blocks(), 0);
    assert!(!s.has_unfinished());
    assert!(s.plan().is_empty());
}

// --- prefix cache -------------------------------------------------------

fn cached_config(num_blocks: usize) -> SchedulerConfig {
    SchedulerConfig {
        policy: Policy::Chunked,
        max_num_seqs: 8,
        max_batched_tokens: 2048,
        max_model_len: 1024,
        block_size: 16,
        num_blocks,
        watermark: 0.0,
        enable_prefix_cache: true,
    }
}

/// 520 shared tokens (32 full blocks and 8 more), then `suffix`.
fn with_system_prompt(suffix: std::ops::Range<u32>) -> Vec<u32> {
    (0..520).chain(suffix).collect()
}

/// The cached blocks a request with `tokens` would reuse now.
fn cached_prefix(s: &Scheduler, tokens: &[u32]) -> Vec<BlockId> {
    let mut hashes = Vec::new();
    crate::prefix_cache::extend_hash_chain(&mut hashes, tokens, s.config().block_size);
    s.pool().lookup_prefix(&hashes, tokens, usize::MAX)
}

fn blocks(range: std::ops::Range<BlockId>) -> Vec<BlockId> {
    range.collect()
}

#[test]
fn a_shared_system_prompt_is_computed_once() {
    let mut s = scheduler(cached_config(128));
    s.add(request(1, with_system_prompt(9000..9010), 8, 0))
        .unwrap();
    step(&mut s, at(1)); // blocks 0..34, 33 of them full and committed
    s.add(request(2, with_system_prompt(8000..8010), 8, 0))
        .unwrap();
    let admission = ScheduledSeq {
        seq_id: SeqId(2),
        is_decode: false,
        num_computed_tokens: 512,
        num_new_tokens: 18,
        wants_logits: true,
        num_new_blocks: 2,
        cached_blocks: blocks(0..32),
    };
    assert_eq!(
        step(&mut s, at(2)),
        plan_of(vec![decode(1, 530, 0), admission])
    );
    assert_eq!(s.pool().ref_count(0), 2, "shared while both run");
    assert_eq!(s.sequence(SeqId(2)).unwrap().num_cached_tokens(), 512);
    let stats = s.stats();
    assert_eq!(
        (stats.prefix_cache_queries, stats.prefix_cache_hits),
        (1060, 512)
    );
}

#[test]
fn a_fully_cached_prompt_still_computes_its_last_block() {
    let mut s = scheduler(cached_config(128));
    let system: Vec<u32> = (0..512).collect();
    s.add(request(1, system.clone(), 1, 0)).unwrap();
    step(&mut s, at(1));
    s.add(request(2, system, 1, 0)).unwrap();
    let plan = s.plan();
    let x = &plan.scheduled[0];
    assert_eq!(
        (x.num_computed_tokens, x.num_new_tokens, x.wants_logits),
        (496, 16, true)
    );
    assert_eq!(x.cached_blocks, blocks(0..31));
    // Not block-aligned: every full block is reused, the 8-token tail computed.
    let mut s = scheduler(cached_config(128));
    s.add(request(1, with_system_prompt(0..0), 1, 0)).unwrap();
    step(&mut s, at(1));
    s.add(request(2, with_system_prompt(0..0), 1, 0)).unwrap();
    let x = &s.plan().scheduled[0];
    assert_eq!((x.num_computed_tokens, x.num_new_tokens), (512, 8));
}

#[test]
fn unowned_cached_blocks_are_evicted_lru_and_only_under_pressure() {
    let mut s = scheduler(cached_config(40));
    let system = with_system_prompt(9000..9010);
    s.add(request(1, system.clone(), 1, 0)).unwrap();
    step(&mut s, at(1)); // finished: 33 cached blocks owned by nobody, 7 free
    assert_eq!(
        (
            s.pool().num_cached_blocks(),
            s.pool().num_evictable_blocks()
        ),
        (33, 33)
    );
    s.add(request(2, (50_000..50_100).collect(), 1, 0)).unwrap();
    step(&mut s, at(2)); // 7 blocks, all from the free list; 6 of them cached after
    assert_eq!(s.pool().num_cached_blocks(), 33 + 6);
    assert_eq!(
        cached_prefix(&s, &system),
        blocks(0..33),
        "no eviction without pressure"
    );
    s.add(request(3, (60_000..60_200).collect(), 1, 0)).unwrap();
    step(&mut s, at(3)); // 13 blocks: the 1 free, then the 12 least recently released
                         // Request 1 was released before request 2, and its tail before its head.
    assert_eq!(cached_prefix(&s, &system), blocks(0..21));
    assert_eq!(
        cached_prefix(&s, &(50_000..50_100).collect::<Vec<_>>()).len(),
        6
    );
}

#[test]
fn with_the_prefix_cache_off_nothing_is_reused_or_counted() {
    let mut s = scheduler(SchedulerConfig {
        enable_prefix_cache: false,
        ..cached_config(128)
    });
    s.add(request(1, with_system_prompt(9000..9010), 8, 0))
        .unwrap();
    step(&mut s, at(1));
    s.add(request(2, with_system_prompt(8000..8010), 8, 0))
        .unwrap();
    let plan = step(&mut s, at(2));
    assert_eq!(plan.scheduled[1].num_computed_tokens, 0);
    assert_eq!(s.stats().prefix_cache_queries, 0);
    assert_eq!(s.pool().num_cached_blocks(), 0);
}

#[test]
fn stats_add_field_by_field() {
    let mut total = SchedulerStats {
        num_steps: 10,
        num_preemptions: 1,
        prefix_cache_queries: 100,
        prefix_cache_hits: 40,
    };
    total += SchedulerStats {
        num_steps: 5,
        num_preemptions: 2,
        prefix_cache_queries: 30,
        prefix_cache_hits: 16,
    };
    assert_eq!(
        total,
        SchedulerStats {
            num_steps: 15,
            num_preemptions: 3,
            prefix_cache_queries: 130,
            prefix_cache_hits: 56,
        }
    );
}
