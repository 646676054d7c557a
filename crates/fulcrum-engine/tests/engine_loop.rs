//! The step loop's mechanics — events, stops, `n`, aborts, backpressure,
//! failures, shutdown, metrics — with SmolLM2's tokenizer and a scripted
//! runner in place of the forward pass (fast; outputs known in advance).
//! The real forward pass is exercised in `determinism.rs`.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{greedy, options, resolve, smollm2, text_request, ScriptedRunner};
use fulcrum_engine::{
    Engine, EngineError, EngineHandle, EngineOptions, FinishReason, Prompt, RequestEvent,
    RequestFailure, RequestInput, SamplingParams, StopReason,
};

fn start(options: EngineOptions, runner: ScriptedRunner) -> EngineHandle {
    let model = smollm2();
    let config = resolve(&model, &options);
    Engine::start_with_runner(model, config, Box::new(runner)).expect("engine starts")
}

fn scripted() -> ScriptedRunner {
    ScriptedRunner::new(smollm2().config.vocab_size)
}

/// What the scripted runner produces after `prompt`, `n` tokens.
fn expected_tokens(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    for _ in 0..n {
        let next = ScriptedRunner::next_token(*tokens.last().unwrap(), tokens.len());
        tokens.push(next);
    }
    tokens.split_off(prompt.len())
}

/// Waits until the engine's gauges show nothing in flight.
fn wait_until_idle(engine: &EngineHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = engine.metrics();
        if m.num_running == 0 && m.num_waiting == 0 && m.num_kv_blocks_used == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "engine never went idle: {m:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_stream_is_tokens_then_finished_then_done() {
    let engine = start(options(256, 128), scripted());
    let mut handle = engine
        .add_request(text_request("The capital of France is", greedy(6)))
        .unwrap();
    let prompt = handle.prompt_token_ids().to_vec();
    let mut events = Vec::new();
    while let Some(event) = handle.blocking_recv() {
        events.push(event);
    }
    assert_eq!(events.len(), 6 + 2, "{events:?}");
    let tokens: Vec<u32> = events[..6]
        .iter()
        .map(|e| match e {
            RequestEvent::Token(t) => t.token_id,
            other => panic!("expected a token, got {other:?}"),
        })
        .collect();
    assert_eq!(tokens, expected_tokens(&prompt, 6));
    let RequestEvent::Finished(finished) = &events[6] else {
        panic!("{:?}", events[6])
    };
    assert_eq!(
        (finished.reason, finished.output_token_ids.clone()),
        (FinishReason::Length, tokens.clone())
    );
    let timings = &finished.timings;
    assert_eq!(timings.token_times.len(), 6);
    assert!(timings.queue_time().is_some() && timings.ttft().unwrap() <= timings.e2e().unwrap());
    assert_eq!(timings.inter_token_latencies().count(), 5);
    let RequestEvent::Done(usage) = events[7] else {
        panic!("{:?}", events[7])
    };
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (prompt.len(), 6)
    );

    // The text is the tokenizer's decoding of the ids, streamed.
    let text: String = events[..6]
        .iter()
        .map(|e| {
            if let RequestEvent::Token(t) = e {
                t.text.clone()
            } else {
                String::new()
            }
        })
        .collect();
    assert_eq!(text, engine.model().tokenizer.decode(&tokens, true));
    wait_until_idle(&engine);
    let m = engine.metrics();
    assert_eq!(
        (
            m.num_generation_tokens,
            m.num_prompt_tokens,
            m.num_finished.length
        ),
        (6, prompt.len() as u64, 1)
    );
    assert_eq!(m.num_prefill_tokens_computed, prompt.len() as u64);
    assert_eq!(m.num_decode_tokens_computed, 5);
}

#[test]
fn stop_strings_end_the_text_and_never_leak() {
    let engine = start(options(256, 128), scripted());
    let plain = engine
        .add_request(text_request("Once upon a time", greedy(12)))
        .unwrap()
        .blocking_collect()
        .unwrap();
    let text = &plain.choices[0].text;
    // A stop string from the middle of the output, spanning token borders.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "scripted output too short: {text:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 4].iter().collect();
    let at = text.find(&stop).unwrap();
    let params = SamplingParams {
        stop: vec!["never-seen".into(), stop.clone()],
        ..greedy(12)
    };
    let out = engine
        .add_request(text_request("Once upon a time", params))
        .unwrap()
        .blocking_collect()
        .unwrap();
    let choice = &out.choices[0];
    assert_eq!(
        choice.text,
        text[..at],
        "the text ends right before {stop:?}"
    );
    assert_eq!(
        (choice.finish_reason, choice.stop_reason.clone()),
        (FinishReason::Stop, Some(StopReason::String(1)))
    );
    assert!(choice.token_ids.len() < 12);
}

#[test]
fn stop_token_ids_end_the_sequence_and_add_no_text() {
    let engine = start(options(256, 128), scripted());
    let prompt = engine.tokenize(&Prompt::Text("Hello".into()));
    let expected = expected_tokens(&prompt, 8);
    let params = SamplingParams {
        stop_token_ids: vec![expected[3]],
        ..greedy(8)
    };
    let out = engine
        .add_request(text_request("Hello", params))
        .unwrap()
        .blocking_collect()
        .unwrap();
    let choice = &out.choices[0];
    assert_eq!(choice.token_ids, expected[..4]);
    assert_eq!(choice.stop_reason, Some(StopReason::Token(expected[3])));
    assert_eq!(
        choice.text,
        engine.model().tokenizer.decode(&expected[..3], true)
    );
}

#[test]
fn n_choices_share_the_prompt_through_the_prefix_cache() {
    let engine = start(options(512, 128), scripted());
    // 40+ tokens: at least two full blocks to share.
    let prompt = "In a small village at the edge of the forest there lived an old clockmaker who repaired every clock in the valley";
    let params = SamplingParams {
        n: 3,
        temperature: 0.8,
        seed: Some(7),
        logprobs: Some(2),
        ..greedy(5)
    };
    let out = engine
        .add_request(text_request(prompt, params.clone()))
        .unwrap()
        .blocking_collect()
        .unwrap();
    assert_eq!(
        out.choices.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(out
        .choices
        .iter()
        .all(|c| c.token_ids.len() == 5 && c.logprobs.len() == 5));
    assert!(out.choices[0]
        .logprobs
        .iter()
        .all(|l| l.top.len() == 2 && l.top[0].1 >= l.top[1].1));
    assert_eq!(out.usage.completion_tokens, 15);
    let num_full_blocks = out.prompt_token_ids.len() / 16;
    assert!(
        out.choices[1..]
            .iter()
            .all(|c| c.num_cached_tokens == num_full_blocks * 16),
        "{:?}",
        out.choices
    );
    // Seeded: the same request samples the same tokens.
    let again = engine
        .add_request(text_request(prompt, params))
        .unwrap()
        .blocking_collect()
        .unwrap();
    let ids = |o: &fulcrum_engine::RequestOutput| {
        o.choices
            .iter()
            .map(|c| c.token_ids.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&out), ids(&again));
}

#[test]
fn abort_and_drop_free_the_blocks() {
    let mut runner = scripted();
    runner.delay = Duration::from_millis(2);
    let engine = start(options(256, 128), runner);
    let mut handle = engine
        .add_request(text_request("Tell me a long story", greedy(100)))
        .unwrap();
    assert!(matches!(
        handle.blocking_recv(),
        Some(RequestEvent::Token(_))
    ));
    handle.abort();
    let mut last = None;
    while let Some(event) = handle.blocking_recv() {
        last = Some(event.clone());
        if let RequestEvent::Finished(f) = event {
            assert_eq!(f.reason, FinishReason::Abort);
            assert!(f.output_token_ids.len() < 100);
        }
    }
    assert!(matches!(last, Some(RequestEvent::Done(_))));
    wait_until_idle(&engine);

    let mut dropped = engine
        .add_request(text_request("Tell me another story", greedy(100)))
        .unwrap();
    assert!(matches!(
        dropped.blocking_recv(),
        Some(RequestEvent::Token(_))
    ));
    drop(dropped);
    wait_until_idle(&engine);
    assert_eq!(engine.metrics().num_finished.abort, 2);
}

#[test]
fn the_waiting_queue_pushes_back_when_full() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let mut runner = scripted();
    runner.gate = Some((entered_tx, release_rx));
    let engine = start(
        EngineOptions {
            max_waiting: Some(1),
            ..options(256, 128)
        },
        runner,
    );
    let first = engine.add_request(text_request("one", greedy(2))).unwrap();
    entered.recv().unwrap(); // `first` is scheduled, its step held
    let second = engine.add_request(text_request("two", greedy(2))).unwrap();
    let third = engine.add_request(text_request("three", greedy(2)));
    assert_eq!(
        third.unwrap_err(),
        EngineError::QueueFull { max_waiting: 1 }
    );
    // Release every step until both finish.
    std::thread::spawn(move || while release.send(()).is_ok() {});
    first.blocking_collect().unwrap();
    second.blocking_collect().unwrap();
    engine
        .add_request(text_request("four", greedy(2)))
        .unwrap()
        .blocking_collect()
        .unwrap();
}

#[test]
fn bad_requests_are_refused_with_typed_errors() {
    let engine = start(options(256, 64), scripted());
    let vocab = engine.model().config.vocab_size;
    let refuse = |input: RequestInput| engine.add_request(input).expect_err("refused");
    assert_eq!(
        refuse(RequestInput::new(Prompt::Tokens(vec![]), greedy(4))),
        EngineError::EmptyPrompt
    );
    assert_eq!(
        refuse(RequestInput::new(Prompt::Text(String::new()), greedy(4))),
        EngineError::EmptyPrompt
    );
    assert_eq!(
        refuse(RequestInput::new(
            Prompt::Tokens(vec![1, vocab as u32]),
            greedy(4)
        )),
        EngineError::TokenOutOfRange {
            id: vocab as u32,
            vocab_size: vocab
        }
    );
    let err = refuse(RequestInput::new(Prompt::Tokens(vec![300; 60]), greedy(10)));
    assert_eq!(err.to_string(), "this model's maximum context length is 64 tokens, but 70 tokens were requested (60 in the prompt, 10 for the completion)");
    let err = refuse(RequestInput::new(
        Prompt::Tokens(vec![300; 64]),
        SamplingParams::greedy(),
    ));
    assert!(
        matches!(
            err,
            EngineError::ContextLengthExceeded {
                max_tokens: None,
                ..
            }
        ),
        "{err}"
    );
    let err = refuse(text_request(
        "hi",
        SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        "`temperature` must be a finite number >= 0, got -1"
    );
    // Unset max_tokens fills the context.
    let out = engine.add_request(RequestInput::new(
        Prompt::Tokens(vec![300; 60]),
        SamplingParams::greedy(),
    ));
    assert_eq!(
        out.unwrap().blocking_collect().unwrap().choices[0]
            .token_ids
            .len(),
        4
    );
}

#[test]
fn a_panicking_step_fails_the_requests_in_flight_and_the_engine_goes_on() {
    let mut runner = scripted();
    runner.panic_on_call = Some(3);
    let engine = start(options(256, 128), runner);
    let failed = engine
        .add_request(text_request("This one meets the fault", greedy(10)))
        .unwrap()
        .blocking_collect();
    assert!(
        matches!(failed, Err(RequestFailure::StepPanicked(ref m)) if m.contains("injected fault")),
        "{failed:?}"
    );
    let prompt = engine.tokenize(&Prompt::Text("This one does not".into()));
    let ok = engine
        .add_request(text_request("This one does not", greedy(5)))
        .unwrap()
        .blocking_collect()
        .unwrap();
    assert_eq!(ok.choices[0].token_ids, expected_tokens(&prompt, 5));
    let m = engine.metrics();
    assert_eq!(
        (
            m.num_step_failures,
            m.num_finished.error,
            m.num_kv_blocks_used
        ),
        (1, 1, 0)
    );
}

#[test]
fn shutdown_drains_then_aborts_at_the_deadline() {
    let mut runner = scripted();
    runner.delay = Duration::from_millis(5);
    let engine = start(options(256, 128), runner);
    let short = engine
        .add_request(text_request("short", greedy(2)))
        .unwrap();
    let long = engine
        .add_request(text_request("long", greedy(120)))
        .unwrap();
    let started = Instant::now();
    let metrics = engine.shutdown(Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        short.blocking_collect().unwrap().choices[0].finish_reason,
        FinishReason::Length
    );
    let long = long.blocking_collect().unwrap();
    assert_eq!(long.choices[0].finish_reason, FinishReason::Abort);
    assert_eq!((metrics.num_running, metrics.num_kv_blocks_used), (0, 0));
    assert_eq!(
        engine
            .add_request(text_request("late", greedy(2)))
            .unwrap_err(),
        EngineError::ShuttingDown
    );
    engine.shutdown(Duration::ZERO); // a second call returns at once
}

#[test]
fn priorities_order_admission() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let mut runner = scripted();
    runner.gate = Some((entered_tx, release_rx));
    let engine = start(
        EngineOptions {
            max_num_seqs: 1,
            ..options(256, 128)
        },
        runner,
    );
    let blocker = engine
        .add_request(text_request("first", greedy(1)))
        .unwrap();
    entered.recv().unwrap();
    let low = engine
        .add_request(RequestInput {
            priority: 5,
            ..text_request("low", greedy(1))
        })
        .unwrap();
    let high = engine
        .add_request(RequestInput {
            priority: -5,
            ..text_request("high", greedy(1))
        })
        .unwrap();
    std::thread::spawn(move || while release.send(()).is_ok() {});
    blocker.blocking_collect().unwrap();
    let low_first = low.blocking_collect().unwrap().choices[0]
        .timings
        .first_scheduled
        .unwrap();
    let high_first = high.blocking_collect().unwrap().choices[0]
        .timings
        .first_scheduled
        .unwrap();
    assert!(
        high_first < low_first,
        "the higher priority (lower number) runs first"
    );
    drop(entered);
}

/// The server shares the engine handle across tasks and moves request
/// handles into streaming responses.
#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<EngineHandle>();
    assert_send_sync::<fulcrum_engine::RequestHandle>();
}

/// The server's path: events awaited on an async runtime, a request
/// dropped mid-stream (a client gone) is aborted.
#[tokio::test(flavor = "current_thread")]
async fn events_can_be_awaited() {
    let mut runner = scripted();
    runner.delay = Duration::from_millis(1);
    let engine = start(options(256, 128), runner);
    let out = engine
        .add_request(text_request("async", greedy(4)))
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(out.choices[0].token_ids.len(), 4);
    let mut streaming = engine
        .add_request(text_request("gone", greedy(100)))
        .unwrap();
    assert!(matches!(
        streaming.recv().await,
        Some(RequestEvent::Token(_))
    ));
    drop(streaming);
    let engine_for_wait = engine.clone();
    tokio::task::spawn_blocking(move || wait_until_idle(&engine_for_wait))
        .await
        .unwrap();
    assert_eq!(engine.metrics().num_finished.abort, 1);
}
