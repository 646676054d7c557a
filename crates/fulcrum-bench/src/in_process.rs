//! The same load, offered to an engine in this process: no HTTP, no SSE, no
//! JSON.
//!
//! Why: a sweep over scheduler knobs wants the scheduler's trade-off, not
//! the HTTP stack's overhead on top of it. Requests go straight to
//! `EngineHandle::add_request` on the schedule of [`crate::load`] (the same
//! arrivals from the same seed as `bench serve`), and every figure comes
//! from the engine's own per-request timings: arrival (taken inside
//! `add_request`), the instant of every output token and the finish. Each
//! token is its own "chunk", so the ITL is the engine's true inter-token
//! gap; TTFT/TPOT/E2E follow the same definitions as over HTTP
//! ([`RequestRecord::success`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum_engine::{
    ChoiceFinished, EngineHandle, RequestEvent, RequestInput, SamplingParams, Usage,
};
use serde_json::json;

use crate::error::BenchError;
use crate::load::{block_on, dispatch, LoadSpec};
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::report::Report;
use crate::runner::merge;
use crate::workload::{Prompt, RequestSpec, Workload};

/// Offers `load` to `engine` on the current tokio runtime. A request still
/// running after `request_timeout` is aborted (its blocks freed at the next
/// step) and recorded as failed.
pub async fn run_in_process(
    engine: &EngineHandle,
    load: &LoadSpec,
    mut workload: Workload,
    request_timeout: Duration,
    progress: Arc<dyn Progress>,
) -> Result<Report, BenchError> {
    if request_timeout.is_zero() {
        return Err(BenchError::config("--timeout", "must be longer than zero"));
    }
    let send = |spec: RequestSpec| {
        let engine = engine.clone();
        async move { send_one(&engine, spec, request_timeout).await }
    };
    let run = dispatch(load, &mut workload, progress, send).await?;
    let mut config = json!({
        "target": "in-process engine",
        "model": engine.model().name,
        "engine": engine.config().to_string(),
        "request_timeout_s": request_timeout.as_secs_f64(),
        "workload": workload.spec(),
        "prompts": workload.vocabulary().describe(),
        "prompt_lengths_approximate": workload.is_approximate(),
    });
    merge(&mut config, load.describe());
    Ok(Report::new(config, run.records, run.duration, &load.slo))
}

/// [`run_in_process`] on a single-threaded runtime of its own.
pub fn run_in_process_blocking(
    engine: &EngineHandle,
    load: &LoadSpec,
    workload: Workload,
    request_timeout: Duration,
    progress: Arc<dyn Progress>,
) -> Result<Report, BenchError> {
    block_on(run_in_process(
        engine,
        load,
        workload,
        request_timeout,
        progress,
    ))
}

/// The request as `bench serve` sends it: greedy, `max_tokens`, and
/// `ignore_eos` for synthetic prompts.
fn request_input(spec: RequestSpec) -> RequestInput {
    let prompt = match spec.prompt {
        Prompt::Tokens(ids) => fulcrum_engine::Prompt::Tokens(ids),
        Prompt::Text(text) => fulcrum_engine::Prompt::Text(text),
    };
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: Some(spec.max_tokens),
        ignore_eos: spec.ignore_eos,
        ..SamplingParams::default()
    };
    RequestInput::new(prompt, params)
}

async fn send_one(engine: &EngineHandle, spec: RequestSpec, timeout: Duration) -> RequestRecord {
    let sent = Instant::now();
    let mut handle = match engine.add_request(request_input(spec)) {
        Ok(handle) => handle,
        Err(e) => {
            return RequestRecord::failure(format!("refused by the engine: {e}"), sent.elapsed())
        }
    };
    let events = async {
        let mut finished: Option<ChoiceFinished> = None;
        loop {
            match handle.recv().await {
                Some(RequestEvent::Token(_)) => {}
                Some(RequestEvent::Finished(f)) => finished = Some(f),
                Some(RequestEvent::Done(usage)) => return Ok((finished, usage)),
                Some(RequestEvent::Failed(failure)) => return Err(failure.to_string()),
                None => return Err("the engine stopped before the request finished".to_string()),
            }
        }
    };
    match tokio::time::timeout(timeout, events).await {
        Ok(Ok((Some(finished), usage))) => record_of(&finished, usage, sent),
        Ok(Ok((None, _))) => RequestRecord::failure(
            "the engine finished the request without a choice",
            sent.elapsed(),
        ),
        Ok(Err(message)) => RequestRecord::failure(message, sent.elapsed()),
        // Dropping the handle (with the future) aborts the request.
        Err(_) => RequestRecord::failure(
            format!("timed out after {} s", timeout.as_secs_f64()),
            sent.elapsed(),
        ),
    }
}

/// Times relative to the engine's arrival stamp.
fn record_of(finished: &ChoiceFinished, usage: Usage, sent: Instant) -> RequestRecord {
    let t = &finished.timings;
    let offsets: Vec<Duration> = t
        .token_times
        .iter()
        .map(|&at| at.saturating_duration_since(t.arrival))
        .collect();
    let e2e = t.e2e().unwrap_or_else(|| sent.elapsed());
    RequestRecord::success(
        &offsets,
        e2e,
        usage.prompt_tokens as u64,
        usage.completion_tokens as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_engine::{FinishReason, SequenceTimings};

    #[test]
    fn records_use_the_engines_per_token_times() {
        let arrival = Instant::now();
        let ms = |n: u64| arrival + Duration::from_millis(n);
        let timings = SequenceTimings {
            arrival,
            first_scheduled: Some(ms(5)),
            token_times: vec![ms(100), ms(110), ms(130)],
            finished: Some(ms(130)),
        };
        let finished = ChoiceFinished {
            index: 0,
            reason: FinishReason::Length,
            stop_reason: None,
            text: String::new(),
            output_token_ids: vec![1, 2, 3],
            num_cached_tokens: 0,
            num_preemptions: 0,
            timings,
        };
        let usage = Usage {
            prompt_tokens: 40,
            completion_tokens: 3,
            cached_tokens: 0,
        };
        let r = record_of(&finished, usage, arrival);
        assert_eq!(r.ttft_ms, Some(100.0));
        assert_eq!(r.itl_ms, [10.0, 20.0]);
        assert_eq!(r.tpot_ms, Some(15.0));
        assert_eq!(r.e2e_ms, 130.0);
        assert_eq!((r.prompt_tokens, r.output_tokens), (40, 3));
    }

    #[test]
    fn requests_are_greedy_and_keep_the_workloads_lengths() {
        let spec = RequestSpec {
            prompt: Prompt::Tokens(vec![5, 6]),
            prompt_len: 2,
            max_tokens: 9,
            ignore_eos: true,
        };
        let input = request_input(spec);
        assert_eq!(input.prompt, fulcrum_engine::Prompt::Tokens(vec![5, 6]));
        assert_eq!(
            (
                input.params.temperature,
                input.params.max_tokens,
                input.params.ignore_eos
            ),
            (0.0, Some(9), true)
        );
        assert!(input.params.validate().is_ok());
    }
}
