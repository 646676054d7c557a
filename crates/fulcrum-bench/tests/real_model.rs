//! End to end with the real SmolLM2 model: `bench serve` against the real
//! fulcrum server on a loopback port, and a small in-process sweep. Tiny
//! workloads (short prompts, 8–16 output tokens, a few seconds) on one
//! forward thread: the suite shares two cores with the rest of the build.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::assert_complete_and_consistent;
use fulcrum_bench::{
    run_serve, EngineBench, InProcessDriver, LoadSpec, NoProgress, PromptVocabulary, RequestRate,
    ServeConfig, SweepGrid, SweepReport, Workload, WorkloadSpec,
};
use fulcrum_engine::{Engine, EngineConfig, EngineOptions, KvCacheSize, Policy};
use fulcrum_model::Model;
use fulcrum_server::{Server, ServerConfig};

const MODEL: &str = "smollm2-135m";

fn model_path() -> PathBuf {
    fulcrum_model::registry::test_model_path(MODEL)
}

fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(Model::load(model_path()).expect("loading SmolLM2")))
        .clone()
}

fn engine_options() -> EngineOptions {
    EngineOptions {
        max_num_seqs: 8,
        max_model_len: Some(256),
        kv_cache: Some(KvCacheSize::Tokens(2048)),
        threads: Some(1),
        ..EngineOptions::default()
    }
}

/// Short prompts of the model's own tokens, 8–16 output tokens.
fn tiny_workload(seed: u64) -> Workload {
    let spec = WorkloadSpec::Random {
        input_len: "8:32".parse().unwrap(),
        output_len: "8:16".parse().unwrap(),
    };
    let vocabulary = PromptVocabulary::from_gguf_path(&model_path()).unwrap();
    Workload::new(spec, vocabulary, seed).unwrap()
}

#[tokio::test]
async fn bench_serve_against_the_real_server_accounts_for_every_request_and_token() {
    let model = model();
    let config = EngineConfig::resolve(&engine_options(), &model.config).unwrap();
    let engine = Engine::start(model, config).unwrap();
    let server_config = ServerConfig {
        addr: ([127, 0, 0, 1], 0).into(),
        served_model_names: vec![MODEL.into()],
        ..ServerConfig::default()
    };
    let server = Server::bind(server_config).await.unwrap();
    let base_url = format!("http://{}", server.local_addr().unwrap());
    assert!(server.state().set_engine(engine.clone()).is_ok());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let load = LoadSpec {
        request_rate: RequestRate::PerSecond(4.0),
        num_requests: None,
        duration: Some(Duration::from_secs(3)),
        seed: 3,
        slo: "ttft=5s,tpot=1s".parse().unwrap(),
        ..LoadSpec::default()
    };
    let config = ServeConfig {
        load,
        request_timeout: Duration::from_secs(60),
        ..ServeConfig::new(&base_url)
    };
    let report = run_serve(&config, tiny_workload(3), Arc::new(NoProgress))
        .await
        .unwrap();
    let json = assert_complete_and_consistent(&report);
    let metrics = engine.metrics();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();

    let s = &report.summary;
    assert_eq!(s.failed, 0, "{:?}", s.errors);
    assert!(
        s.completed >= 3,
        "about 12 requests in 3 s at 4/s, got {}",
        s.completed
    );
    assert!(s.duration_s >= 3.0);
    assert_eq!(
        metrics.num_requests_added,
        report.requests.len() as u64,
        "the server saw exactly the requests reported"
    );
    assert_eq!(
        s.total_input_tokens, metrics.num_prompt_tokens,
        "prompt tokens agree with the engine's count"
    );
    assert_eq!(
        s.total_output_tokens, metrics.num_generation_tokens,
        "output tokens agree with the engine's count"
    );
    for r in &report.requests {
        assert_eq!(
            r.prompt_tokens, r.sent_prompt_len as u64,
            "token-id prompts arrive at their exact length"
        );
        assert_eq!(
            r.output_tokens, r.max_tokens as u64,
            "ignore_eos holds the output length"
        );
        assert!(r.ttft_ms.unwrap() <= r.e2e_ms);
    }
    assert_eq!(json["config"]["model"], MODEL, "found with GET /v1/models");
    assert!(s.goodput.unwrap() > 0.0);
}

#[test]
fn in_process_sweep_writes_the_frontier_plot_and_consistent_summaries() {
    let bench = EngineBench::new(model());
    let base = engine_options();
    let load = LoadSpec {
        num_requests: Some(4),
        slo: "ttft=10s".parse().unwrap(),
        ..LoadSpec::default()
    };
    let grid = SweepGrid {
        policies: vec![Policy::Static, Policy::Chunked],
        ..SweepGrid::single(&base, &load)
    };
    let points = grid.points(&base, &load).unwrap();
    bench.warm_up(&points[0].options).unwrap();
    let mut driver = InProcessDriver {
        request_timeout: Duration::from_secs(60),
    };
    let mut outcomes = Vec::new();
    for point in &points {
        let (outcome, report) = bench
            .run_point(point, tiny_workload(5), &mut driver, Arc::new(NoProgress))
            .unwrap();
        assert_complete_and_consistent(&report);
        assert_eq!(
            (report.summary.completed, report.summary.failed),
            (4, 0),
            "{:?}",
            report.summary.errors
        );
        let sent_output: u64 = report.requests.iter().map(|r| r.max_tokens as u64).sum();
        assert_eq!(report.summary.total_output_tokens, sent_output);
        assert_eq!(outcome.summary, report.summary);
        for r in &report.requests {
            assert_eq!(
                r.itl_ms.len() + 1,
                r.output_tokens as usize,
                "one inter-token gap per engine token"
            );
        }
        outcomes.push(outcome);
    }
    // The same seed: both configurations served exactly the same requests.
    assert_eq!(
        outcomes[0].summary.total_input_tokens,
        outcomes[1].summary.total_input_tokens
    );
    assert_eq!(
        outcomes[0].summary.total_output_tokens,
        outcomes[1].summary.total_output_tokens
    );
    assert_eq!(
        (outcomes[0].policy, outcomes[1].policy),
        (Policy::Static, Policy::Chunked)
    );
    assert_eq!(
        outcomes[1].max_batched_tokens,
        fulcrum_engine::engine::DEFAULT_MAX_BATCHED_TOKENS,
        "the engine's default budget, as resolved"
    );

    let report = SweepReport::new(serde_json::json!({"test": true}), outcomes);
    assert!(!report.frontier.ttft_p99.is_empty() && !report.frontier.tpot_p99.is_empty());
    let labels = ["static", "chunked"];
    assert!(report
        .frontier
        .ttft_p99
        .iter()
        .all(|l| labels.contains(&l.as_str())));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sweep-test");
    std::fs::create_dir_all(&dir).unwrap();
    let paths = report
        .plot("SmolLM2 · test sweep", &dir.join("frontier"))
        .unwrap();
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(svg.contains("static") && svg.contains("chunked") && svg.contains("Pareto frontier"));
    assert_eq!(&std::fs::read(&paths[1]).unwrap()[..4], b"\x89PNG");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 2);
    assert_eq!(json["points"][0]["summary"]["completed"], 4);
    assert!(report.to_table().contains("chunked"));
}
