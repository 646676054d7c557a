//! The step loop: the engine thread's whole life.
//!
//! Each turn: take commands (add, abort, shutdown) — blocking only when
//! there is nothing to run —, then one step: `schedule` → the runner's
//! forward pass over the ragged batch → sample every row that wants logits
//! → `update` → text deltas, stop strings, events → finished choices.
//!
//! Choices of one request (`n > 1`) share the prompt's KV blocks through the
//! prefix cache: the first choice is added alone, and the others once it has
//! produced its first token — by then its full prompt blocks are committed
//! to the cache, so the others prefill only the last partial block. (They
//! keep the request's arrival time, so their TTFT includes that wait, but
//! queue behind requests that arrived meanwhile.) Without the prefix cache
//! all choices are added together (nothing to share).
//!
//! A step that panics (or whose batch the model refuses, which means a
//! bookkeeping bug) fails every request in flight with an error event and
//! starts over with a fresh scheduler: the block pool and the prefix index
//! may be inconsistent after an unwind, so none of it is trusted, and the
//! KV bytes become unreachable garbage rather than wrong answers.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum_model::tokenizer::Tokenizer;
use fulcrum_model::Model;
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::{EngineMetrics, StepMetrics};
use super::options::EngineConfig;
use super::request::{
    ChoiceFinished, RequestEvent, RequestFailure, RequestId, StopReason, TokenEvent, TokenLogprobs,
    Usage,
};
use super::runner::{batch_inputs, run_batch, StepRunner};
use super::text::TextStream;
use super::Shared;
use crate::config::ConfigError;
use crate::sampler::{sample, sampler_rng, SampledToken, SamplerRng, SamplingParams};
use crate::scheduler::{Scheduler, SchedulerStats, StepOutput, StepPlan};
use crate::sequence::{FinishReason, SeqId, Sequence, SequenceRequest, SequenceTimings};

/// What the handles send the loop.
pub(crate) enum Command {
    Add(Box<NewRequest>),
    Abort(RequestId),
    Shutdown { deadline: Instant },
}

/// A request `add_request` validated.
pub(crate) struct NewRequest {
    pub id: RequestId,
    pub prompt: Arc<[u32]>,
    pub params: SamplingParams,
    /// Resolved: fits `max_model_len` with the prompt.
    pub max_tokens: usize,
    pub priority: i32,
    pub arrival: Instant,
    pub events: UnboundedSender<RequestEvent>,
}

struct ActiveRequest {
    events: UnboundedSender<RequestEvent>,
    prompt: Arc<[u32]>,
    params: SamplingParams,
    max_tokens: usize,
    priority: i32,
    arrival: Instant,
    /// Choices `next_choice..n` are not in the scheduler yet.
    next_choice: usize,
    /// Choices not finished (in the scheduler or not added yet).
    num_unfinished: usize,
    live_seqs: Vec<SeqId>,
    /// Counted in `Shared::num_queued` (not yet scheduled).
    is_queued: bool,
    completion_tokens: usize,
    cached_tokens: usize,
}

impl ActiveRequest {
    /// Takes the request out of `Shared::num_queued`, once: when its first
    /// choice is scheduled, or when it ends without ever being scheduled.
    fn leave_queue(&mut self, num_queued: &AtomicUsize) {
        if self.is_queued {
            self.is_queued = false;
            num_queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The loop's side of one sequence (the scheduler holds its tokens).
struct ActiveSeq {
    request: RequestId,
    index: usize,
    text: TextStream,
    rng: SamplerRng,
    /// The stop token that ended it, if one did.
    stop_token: Option<u32>,
    num_emitted: usize,
}

impl ActiveSeq {
    /// Samples `seq`'s next token from its row of logits; `scratch` is the
    /// copy sampling works in.
    fn sample_next(
        &mut self,
        seq: &Sequence,
        logits: &[f32],
        params: &SamplingParams,
        tokenizer: &Tokenizer,
        scratch: &mut Vec<f32>,
    ) -> (StepOutput, SampledToken) {
        let token = sample(
            logits,
            scratch,
            params,
            seq.prompt_tokens(),
            seq.output_tokens(),
            &mut self.rng,
        );
        let is_stop = (!params.ignore_eos && tokenizer.is_stop_token(token.id))
            || params.stop_token_ids.contains(&token.id);
        let output = StepOutput {
            seq_id: seq.id(),
            token: token.id,
            is_stop,
        };
        (output, token)
    }
}

enum StepOutcome {
    Ran,
    /// Live sequences but nothing schedulable (should not happen: the
    /// scheduler refuses requests that could never run).
    Stalled,
}

pub(crate) struct StepLoop {
    model: Arc<Model>,
    config: EngineConfig,
    runner: Box<dyn StepRunner>,
    scheduler: Scheduler,
    commands: Receiver<Command>,
    shared: Arc<Shared>,
    requests: HashMap<RequestId, ActiveRequest>,
    seqs: HashMap<SeqId, ActiveSeq>,
    next_seq_id: u64,
    metrics: EngineMetrics,
    /// Scheduler counters of schedulers replaced after failed steps.
    stats_base: SchedulerStats,
    shutdown_deadline: Option<Instant>,
    is_disconnected: bool,
    /// Requests whose event receiver is gone; aborted before the next step.
    orphaned: Vec<RequestId>,
    /// `Done` events of finished requests, held until the metrics that count
    /// them are published.
    pending_done: Vec<(UnboundedSender<RequestEvent>, Usage)>,
    /// `[vocab]` one logits row, copied because sampling works in place.
    row: Vec<f32>,
}

impl StepLoop {
    pub(crate) fn new(
        model: Arc<Model>,
        config: EngineConfig,
        runner: Box<dyn StepRunner>,
        commands: Receiver<Command>,
        shared: Arc<Shared>,
    ) -> Result<StepLoop, ConfigError> {
        let scheduler = Scheduler::new(config.scheduler.clone())?;
        let metrics = EngineMetrics {
            num_kv_blocks: config.scheduler.num_blocks,
            ..EngineMetrics::default()
        };
        Ok(StepLoop {
            model,
            config,
            runner,
            scheduler,
            commands,
            shared,
            requests: HashMap::new(),
            seqs: HashMap::new(),
            next_seq_id: 0,
            metrics,
            stats_base: SchedulerStats::default(),
            shutdown_deadline: None,
            is_disconnected: false,
            orphaned: Vec::new(),
            pending_done: Vec::new(),
            row: Vec::new(),
        })
    }

    pub(crate) fn run(mut self) {
        self.publish_metrics();
        while self.wait_for_work() {
            match catch_unwind(AssertUnwindSafe(|| self.step())) {
                Ok(Ok(StepOutcome::Ran)) => {}
                Ok(Ok(StepOutcome::Stalled)) => {
                    tracing::warn!("the scheduler planned an empty step with sequences waiting");
                    self.wait_briefly();
                }
                Ok(Err(failure)) => self.recover(failure),
                Err(payload) => self.recover(RequestFailure::StepPanicked(panic_message(
                    payload.as_ref(),
                ))),
            }
            self.publish_metrics();
        }
        self.publish_metrics();
    }

    /// Takes commands; blocks while idle. False when the loop should end.
    fn wait_for_work(&mut self) -> bool {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.is_disconnected = true;
                        break;
                    }
                }
            }
            for id in std::mem::take(&mut self.orphaned) {
                self.abort_request(id);
            }
            if self
                .shutdown_deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                let ids: Vec<RequestId> = self.requests.keys().copied().collect();
                for id in ids {
                    self.abort_request(id);
                }
            }
            if self.scheduler.has_unfinished() {
                return true;
            }
            if self.shutdown_deadline.is_some() || self.is_disconnected {
                return false;
            }
            self.publish_metrics();
            match self.commands.recv() {
                Ok(command) => self.handle(command),
                Err(_) => self.is_disconnected = true,
            }
        }
    }

    fn wait_briefly(&mut self) {
        match self.commands.recv_timeout(Duration::from_millis(5)) {
            Ok(command) => self.handle(command),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.is_disconnected = true,
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Add(request) => self.add_request(*request),
            Command::Abort(id) => self.abort_request(id),
            Command::Shutdown { deadline } => {
                self.shutdown_deadline =
                    Some(self.shutdown_deadline.map_or(deadline, |d| d.min(deadline)));
            }
        }
    }

    fn add_request(&mut self, request: NewRequest) {
        let n = request.params.n;
        self.metrics.num_requests_added += 1;
        self.requests.insert(
            request.id,
            ActiveRequest {
                events: request.events,
                prompt: request.prompt,
                params: request.params,
                max_tokens: request.max_tokens,
                priority: request.priority,
                arrival: request.arrival,
                next_choice: 0,
                num_unfinished: n,
                live_seqs: Vec::new(),
                is_queued: true,
                completion_tokens: 0,
                cached_tokens: 0,
            },
        );
        let num_now = if self.config.scheduler.enable_prefix_cache {
            1
        } else {
            n
        };
        self.add_choices(request.id, num_now);
    }

    /// Adds choices until `next_choice == until` (clamped to `n`).
    fn add_choices(&mut self, id: RequestId, until: usize) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let mut refused = None;
        while request.next_choice < until.min(request.params.n) {
            let index = request.next_choice;
            let seq_id = SeqId(self.next_seq_id);
            self.next_seq_id += 1;
            let added = self.scheduler.add(SequenceRequest {
                id: seq_id,
                prompt: request.prompt.to_vec(),
                max_tokens: request.max_tokens,
                priority: request.priority,
                arrival: request.arrival,
            });
            if let Err(e) = added {
                refused = Some(e);
                break;
            }
            request.next_choice += 1;
            request.live_seqs.push(seq_id);
            let text = TextStream::new(self.model.tokenizer.clone(), &request.params.stop);
            let rng = sampler_rng(request.params.seed, index as u64);
            let seq = ActiveSeq {
                request: id,
                index,
                text,
                rng,
                stop_token: None,
                num_emitted: 0,
            };
            self.seqs.insert(seq_id, seq);
        }
        if let Some(e) = refused {
            self.fail_request(id, RequestFailure::Rejected(e));
        }
    }

    /// Finishes every choice of a request as `abort` (a no-op once it is gone).
    fn abort_request(&mut self, id: RequestId) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let never_added = request.next_choice..request.params.n;
        request.next_choice = request.params.n;
        let (arrival, live) = (request.arrival, request.live_seqs.clone());
        for seq_id in live {
            self.scheduler.finish(seq_id, FinishReason::Abort, now);
        }
        for index in never_added {
            let timings = SequenceTimings {
                finished: Some(now),
                ..SequenceTimings::new(arrival)
            };
            self.metrics.num_finished.count(FinishReason::Abort);
            self.finish_choice(id, finished_event(index, FinishReason::Abort, timings));
        }
        self.drain_finished();
    }

    /// Ends a request with `Failed`: its sequences leave the scheduler
    /// silently.
    fn fail_request(&mut self, id: RequestId, failure: RequestFailure) {
        let Some(mut request) = self.requests.remove(&id) else {
            return;
        };
        let now = Instant::now();
        for seq_id in &request.live_seqs {
            self.scheduler.finish(*seq_id, FinishReason::Abort, now);
            self.seqs.remove(seq_id);
        }
        self.metrics.num_finished.error += request.num_unfinished as u64;
        request.leave_queue(&self.shared.num_queued);
        let _ = request.events.send(RequestEvent::Failed(failure));
    }

    /// After a failed step: fail everything in flight and start over.
    fn recover(&mut self, failure: RequestFailure) {
        tracing::error!(
            requests = self.requests.len(),
            "engine step failed: {failure}; failing the requests in flight"
        );
        self.metrics.num_step_failures += 1;
        self.stats_base += self.scheduler.stats();
        match Scheduler::new(self.config.scheduler.clone()) {
            Ok(scheduler) => self.scheduler = scheduler,
            // Unreachable: the same config built the first scheduler.
            Err(e) => tracing::error!("cannot rebuild the scheduler: {e}"),
        }
        self.seqs.clear();
        let mut failed: Vec<ActiveRequest> =
            self.requests.drain().map(|(_, request)| request).collect();
        for request in &mut failed {
            self.metrics.num_finished.error += request.num_unfinished as u64;
            request.leave_queue(&self.shared.num_queued);
        }
        self.publish_metrics();
        // Requests that finished before the failure keep their `Done`.
        self.send_pending_done();
        for request in failed {
            let _ = request.events.send(RequestEvent::Failed(failure.clone()));
        }
    }

    fn step(&mut self) -> Result<StepOutcome, RequestFailure> {
        let started = Instant::now();
        let plan = self.scheduler.schedule(started);
        self.note_admissions(&plan);
        if plan.is_empty() {
            let is_stalled = plan.finished.is_empty() && plan.preempted.is_empty();
            self.drain_finished();
            return Ok(if is_stalled {
                StepOutcome::Stalled
            } else {
                StepOutcome::Ran
            });
        }
        // Gauges show this step's batch while it runs; counters are final
        // before any event of the step goes out.
        self.record_plan(&plan);
        self.publish_metrics();
        let sampled = self.forward_and_sample(&plan)?;
        let outputs: Vec<StepOutput> = sampled.iter().map(|(output, _)| *output).collect();
        let now = Instant::now();
        self.scheduler
            .update(&plan, &outputs, now)
            .map_err(|e| RequestFailure::Internal(e.to_string()))?;
        self.emit_tokens(sampled, now);
        let duration = started.elapsed();
        self.metrics.last_step.duration = duration;
        self.metrics.busy_time += duration;
        self.drain_finished();
        Ok(StepOutcome::Ran)
    }

    /// Requests whose first choice was scheduled leave the queued count.
    fn note_admissions(&mut self, plan: &StepPlan) {
        for scheduled in &plan.scheduled {
            let Some(seq) = self.seqs.get(&scheduled.seq_id) else {
                continue;
            };
            if let Some(request) = self.requests.get_mut(&seq.request) {
                request.leave_queue(&self.shared.num_queued);
            }
        }
    }

    /// Runs the batch and samples one token per row, in plan order.
    fn forward_and_sample(
        &mut self,
        plan: &StepPlan,
    ) -> Result<Vec<(StepOutput, SampledToken)>, RequestFailure> {
        // Field by field: the logits borrow the runner while sampling
        // updates the sequences' state.
        let StepLoop {
            model,
            runner,
            scheduler,
            requests,
            seqs,
            row,
            ..
        } = self;
        let inputs = batch_inputs(scheduler, plan)?;
        let vocab = model.config.vocab_size;
        let logits = run_batch(runner.as_mut(), &inputs, plan.num_logits(), vocab)?;
        let rows = plan
            .scheduled
            .iter()
            .filter(|s| s.wants_logits)
            .zip(logits.chunks_exact(vocab));
        let mut sampled = Vec::with_capacity(plan.num_logits());
        for (s, logits_row) in rows {
            let seq = scheduler
                .sequence(s.seq_id)
                .ok_or_else(|| RequestFailure::Internal(format!("{} is not live", s.seq_id)))?;
            let active = seqs
                .get_mut(&s.seq_id)
                .ok_or_else(|| RequestFailure::Internal(format!("{} has no state", s.seq_id)))?;
            let params = &requests
                .get(&active.request)
                .ok_or_else(|| RequestFailure::Internal("orphan sequence".into()))?
                .params;
            sampled.push(active.sample_next(seq, logits_row, params, &model.tokenizer, row));
        }
        Ok(sampled)
    }

    /// Token events (text through the detokenizer and stop strings); adds the
    /// remaining choices of requests whose first choice just got its first
    /// token.
    fn emit_tokens(&mut self, sampled: Vec<(StepOutput, SampledToken)>, now: Instant) {
        let mut ready_for_choices = Vec::new();
        for (output, token) in sampled {
            let Some(active) = self.seqs.get_mut(&output.seq_id) else {
                continue;
            };
            let Some(request) = self.requests.get(&active.request) else {
                continue;
            };
            active.num_emitted += 1;
            if output.is_stop {
                active.stop_token = Some(output.token);
            }
            let delta = active.text.push(output.token, output.is_stop);
            if delta.stop_string.is_some() {
                self.scheduler
                    .finish(output.seq_id, FinishReason::Stop, now);
            }
            self.metrics.num_generation_tokens += 1;
            if active.index == 0 && active.num_emitted == 1 {
                self.metrics.num_prompt_tokens += request.prompt.len() as u64;
                if request.next_choice < request.params.n {
                    ready_for_choices.push(active.request);
                }
            }
            let logprobs = token.logprob.map(|logprob| TokenLogprobs {
                logprob,
                top: token.top_logprobs,
            });
            let event = TokenEvent {
                index: active.index,
                token_id: output.token,
                text: delta.text,
                logprobs,
            };
            if request.events.send(RequestEvent::Token(event)).is_err() {
                self.orphaned.push(active.request);
            }
        }
        for id in ready_for_choices {
            self.add_choices(id, usize::MAX);
        }
    }

    /// Final events for the sequences the scheduler finished.
    fn drain_finished(&mut self) {
        for seq in self.scheduler.take_finished() {
            let Some(mut active) = self.seqs.remove(&seq.id()) else {
                continue;
            };
            let tail = active.text.finish();
            let mut reason = seq.finish_reason().unwrap_or(FinishReason::Abort);
            let stop_reason = match active.text.stopped_by() {
                Some(i) => {
                    reason = FinishReason::Stop;
                    Some(StopReason::String(i))
                }
                None if reason == FinishReason::Stop => active.stop_token.map(StopReason::Token),
                None => None,
            };
            self.metrics.num_finished.count(reason);
            let Some(request) = self.requests.get_mut(&active.request) else {
                continue;
            };
            request.live_seqs.retain(|&s| s != seq.id());
            if active.index == 0 {
                request.cached_tokens = seq.num_cached_tokens();
            }
            request.completion_tokens += seq.num_output_tokens();
            let event = ChoiceFinished {
                index: active.index,
                reason,
                stop_reason,
                text: tail.text,
                output_token_ids: seq.output_tokens().to_vec(),
                num_cached_tokens: seq.num_cached_tokens(),
                num_preemptions: seq.num_preemptions(),
                timings: seq.timings().clone(),
            };
            self.finish_choice(active.request, event);
        }
        if !self.pending_done.is_empty() {
            // Once for every request this finished, before their `Done`s: a
            // client that reads the metrics after `Done` sees its blocks
            // freed.
            self.publish_metrics();
            self.send_pending_done();
        }
    }

    /// Sends a choice's final event; after the request's last, holds its
    /// `Done` until the metrics are published (see `drain_finished`).
    fn finish_choice(&mut self, id: RequestId, event: ChoiceFinished) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let _ = request.events.send(RequestEvent::Finished(event));
        request.num_unfinished -= 1;
        if request.num_unfinished > 0 {
            return;
        }
        let Some(mut request) = self.requests.remove(&id) else {
            return;
        };
        request.leave_queue(&self.shared.num_queued);
        let usage = Usage {
            prompt_tokens: request.prompt.len(),
            completion_tokens: request.completion_tokens,
            cached_tokens: request.cached_tokens,
        };
        self.pending_done.push((request.events, usage));
    }

    fn send_pending_done(&mut self) {
        for (events, usage) in self.pending_done.drain(..) {
            let _ = events.send(RequestEvent::Done(usage));
        }
    }

    fn record_plan(&mut self, plan: &StepPlan) {
        let m = &mut self.metrics;
        m.last_step = StepMetrics {
            num_seqs: plan.num_seqs(),
            num_prefill_tokens: plan.num_prefill_tokens(),
            num_decode_tokens: plan.num_decode_tokens(),
            duration: Duration::ZERO,
        };
        m.num_prefill_tokens_computed += plan.num_prefill_tokens() as u64;
        m.num_decode_tokens_computed += plan.num_decode_tokens() as u64;
    }

    fn publish_metrics(&mut self) {
        let mut stats = self.stats_base;
        stats += self.scheduler.stats();
        let pool = self.scheduler.pool();
        let m = &mut self.metrics;
        m.num_running = self.scheduler.num_running();
        m.num_waiting = self.scheduler.num_waiting();
        m.num_preempted_waiting = self.scheduler.num_preempted_waiting();
        m.num_kv_blocks = pool.num_blocks();
        m.num_kv_blocks_used = pool.num_used_blocks();
        m.num_kv_blocks_cached = pool.num_cached_blocks();
        m.num_steps = stats.num_steps;
        m.num_preemptions = stats.num_preemptions;
        m.prefix_cache_queries = stats.prefix_cache_queries;
        m.prefix_cache_hits = stats.prefix_cache_hits;
        *self
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = m.clone();
    }
}

fn finished_event(index: usize, reason: FinishReason, timings: SequenceTimings) -> ChoiceFinished {
    ChoiceFinished {
        index,
        reason,
        stop_reason: None,
        text: String::new(),
        output_token_ids: Vec::new(),
        num_cached_tokens: 0,
        num_preemptions: 0,
        timings,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
