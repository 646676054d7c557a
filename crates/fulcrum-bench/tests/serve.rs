//! `bench serve` end to end against the mock server in `mock/`: the report
//! must be complete (every key a consumer reads), consistent (totals equal
//! sums over requests, every request sent accounted for, percentiles
//! ordered) and true to what the server did.

mod common;
mod mock;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::assert_complete_and_consistent;
use fulcrum_bench::{
    run_serve, LenRange, LoadSpec, NoProgress, PromptVocabulary, RequestRate, ServeConfig,
    Workload, WorkloadSpec,
};

fn token_vocabulary() -> PromptVocabulary {
    PromptVocabulary::from_token_ids("test ids", (1000..2000).collect())
}

fn random_workload(input: &str, output: &str, seed: u64) -> Workload {
    let spec = WorkloadSpec::Random {
        input_len: input.parse().unwrap(),
        output_len: output.parse().unwrap(),
    };
    Workload::new(spec, token_vocabulary(), seed).unwrap()
}

#[tokio::test]
async fn poisson_run_bounded_by_time_is_complete_and_consistent() {
    let behaviour = mock::Behaviour {
        fail_every: 5,
        ..mock::Behaviour::default()
    };
    let (url, seen) = mock::start(behaviour.clone()).await;
    let load = LoadSpec {
        request_rate: RequestRate::PerSecond(25.0),
        burstiness: 0.5,
        num_requests: None,
        duration: Some(Duration::from_secs(2)),
        seed: 11,
        slo: "ttft=200ms,tpot=40ms".parse().unwrap(),
        ..LoadSpec::default()
    };
    let config = ServeConfig {
        model: Some(mock::MODEL.into()),
        load,
        ..ServeConfig::new(url)
    };
    let report = run_serve(
        &config,
        random_workload("5:40", "3:12", 11),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let json = assert_complete_and_consistent(&report);

    let s = &report.summary;
    let sent = report.requests.len();
    assert!(
        (10..=150).contains(&sent),
        "about 50 requests in 2 s at 25/s, got {sent}"
    );
    assert_eq!(
        sent,
        seen.num_completions.load(Ordering::SeqCst),
        "the server saw exactly the requests reported"
    );
    assert_eq!(s.failed, seen.num_failed.load(Ordering::SeqCst));
    assert!(s.failed > 0 && s.completed > 0);
    assert!(
        s.duration_s >= 2.0,
        "the whole window counts: {}",
        s.duration_s
    );
    assert!(
        report.requests.iter().all(|r| r.start_s < 2.0),
        "nothing is sent after the deadline"
    );
    assert!(
        s.errors
            .keys()
            .all(|e| e.starts_with("HTTP 500") && e.contains("injected failure")),
        "{:?}",
        s.errors
    );
    assert!(s.goodput.unwrap() > 0.0);

    for r in report.requests.iter().filter(|r| r.is_ok()) {
        assert_eq!(
            r.output_tokens, r.max_tokens as u64,
            "usage, not chunk count, gives output tokens"
        );
        assert_eq!(r.prompt_tokens, r.sent_prompt_len as u64);
        assert!((3..=12).contains(&r.max_tokens) && (5..=40).contains(&r.sent_prompt_len));
        let ttft = r.ttft_ms.unwrap();
        assert!(
            ttft >= 20.0,
            "the mock waits 20 ms before the first token: {ttft}"
        );
        assert!(
            r.itl_ms.len() < r.max_tokens,
            "chunks carry several tokens: one gap per chunk"
        );
        let tpot = r.tpot_ms.unwrap();
        assert!((tpot - (r.e2e_ms - ttft) / (r.output_tokens - 1) as f64).abs() < 1e-9);
    }
    for body in seen.bodies.lock().unwrap().iter() {
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["model"], mock::MODEL);
        assert!(body["prompt"]
            .as_array()
            .unwrap()
            .iter()
            .all(|id| (1000..2000).contains(&id.as_u64().unwrap())));
    }
    assert_eq!(json["config"]["request_rate"], 25.0);
    assert_eq!(json["config"]["workload"]["kind"], "random");
    assert_eq!(json["config"]["slo"], "ttft=200ms,tpot=40ms");
    assert_eq!(json["slo"], "ttft=200ms,tpot=40ms");
}

#[tokio::test]
async fn closed_loop_keeps_the_cap_asks_for_the_model_and_sends_the_key() {
    let behaviour = mock::Behaviour {
        api_key: Some("s3cret"),
        ..mock::Behaviour::default()
    };
    let (url, seen) = mock::start(behaviour).await;
    let config = ServeConfig {
        api_key: Some("s3cret".into()),
        load: LoadSpec {
            max_concurrency: Some(3),
            num_requests: Some(12),
            ..LoadSpec::default()
        },
        ..ServeConfig::new(format!("{url}/v1"))
    };
    let report = run_serve(&config, random_workload("8", "6", 1), Arc::new(NoProgress))
        .await
        .unwrap();
    let json = assert_complete_and_consistent(&report);
    assert_eq!(
        (report.summary.completed, report.summary.failed),
        (12, 0),
        "{:?}",
        report.summary.errors
    );
    assert_eq!(
        seen.max_in_flight.load(Ordering::SeqCst),
        3,
        "at most (and, all at once, exactly) 3 in flight"
    );
    assert_eq!(
        json["config"]["model"],
        mock::MODEL,
        "found with GET /v1/models"
    );
    assert!(json["goodput"].is_null(), "no SLO, no goodput");
    assert_eq!(report.summary.total_output_tokens, 12 * 6);
    assert_eq!(report.summary.total_input_tokens, 12 * 8);
}

#[tokio::test]
async fn a_wrong_key_fails_every_request_with_the_reason() {
    let (url, _) = mock::start(mock::Behaviour {
        api_key: Some("right"),
        ..mock::Behaviour::default()
    })
    .await;
    let config = ServeConfig {
        api_key: Some("wrong".into()),
        model: Some("m".into()),
        load: LoadSpec {
            num_requests: Some(4),
            ..LoadSpec::default()
        },
        ..ServeConfig::new(url)
    };
    let report = run_serve(&config, random_workload("4", "2", 0), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!((report.summary.completed, report.summary.failed), (0, 4));
    let (error, count) = report.summary.errors.iter().next().unwrap();
    assert!(
        error.starts_with("HTTP 401") && error.contains("wrong API key"),
        "{error}"
    );
    assert_eq!(*count, 4);
    assert!(report.summary.ttft_ms.is_none());
}

#[tokio::test]
async fn file_workload_sends_text_and_the_lines_max_tokens() {
    let (url, seen) = mock::start(mock::Behaviour::default()).await;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-prompts.jsonl");
    let lines = [
        r#"{"prompt": "one two three", "max_tokens": 4}"#,
        r#"{"conversations": [{"from": "human", "value": "four five"}]}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let workload = Workload::new(
        WorkloadSpec::File {
            path,
            output_len: LenRange::fixed(3),
        },
        PromptVocabulary::words(),
        0,
    )
    .unwrap();
    let config = ServeConfig {
        model: Some(mock::MODEL.into()),
        load: LoadSpec {
            num_requests: Some(6),
            ..LoadSpec::default()
        },
        ..ServeConfig::new(url)
    };
    let report = run_serve(&config, workload, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_complete_and_consistent(&report);
    assert_eq!(report.summary.completed, 6);
    let bodies = seen.bodies.lock().unwrap();
    for body in bodies.iter() {
        assert!(
            body.get("ignore_eos").is_none(),
            "real prompts end where the model ends them"
        );
        match body["prompt"].as_str().unwrap() {
            "one two three" => assert_eq!(body["max_tokens"], 4),
            "four five" => assert_eq!(body["max_tokens"], 3),
            other => panic!("unexpected prompt {other}"),
        }
    }
    assert_eq!(report.summary.total_input_tokens, 3 * 3 + 3 * 2);
    assert_eq!(report.config["prompt_lengths_approximate"], true);
}

#[tokio::test]
async fn an_unreachable_server_is_named_before_the_run() {
    // Bind and drop a listener: the port is free and nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ServeConfig::new(format!("http://127.0.0.1:{port}"));
    let err = run_serve(&config, random_workload("4", "2", 0), Arc::new(NoProgress))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("http://127.0.0.1:{port}/v1/models: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "{err}");
}
