//! Test servers on ephemeral loopback ports with the real SmolLM2 model.
//!
//! Most tests share one server (started once, on a runtime thread of its
//! own, so it outlives each test's runtime); tests that need their own
//! knobs (an API key, a tiny queue, shutdown) or exact counters start a
//! dedicated one. Engines run with one forward thread and small KV caches:
//! the suite shares two cores with the rest of the build.

use std::future::IntoFuture;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::Client;
use axum::Router;
use fulcrum_engine::{Engine, EngineConfig, EngineHandle, EngineOptions, KvCacheSize};
use fulcrum_model::Model;
use fulcrum_server::{AppState, MetricsCompat, Server, ServerConfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const MODEL: &str = "smollm2-135m";
pub const MAX_MODEL_LEN: usize = 1024;
/// The shared server's `--max-tokens-limit`.
pub const MAX_TOKENS_LIMIT: usize = 1000;

pub fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = fulcrum_model::registry::test_model_path("smollm2-135m");
            Arc::new(Model::load(&path).expect("loading SmolLM2"))
        })
        .clone()
}

pub fn engine_options() -> EngineOptions {
    EngineOptions {
        max_num_seqs: 32,
        max_model_len: Some(MAX_MODEL_LEN),
        kv_cache: Some(KvCacheSize::Tokens(8192)),
        threads: Some(1),
        ..EngineOptions::default()
    }
}

pub fn start_engine(options: &EngineOptions) -> EngineHandle {
    let model = model();
    let config = EngineConfig::resolve(options, &model.config).expect("engine config");
    Engine::start(model, config).expect("starting the engine")
}

pub fn server_config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        served_model_names: vec![MODEL.to_string()],
        shutdown_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    }
}

/// What a dedicated server is started with.
pub struct Setup {
    pub config: ServerConfig,
    pub engine: EngineOptions,
    /// False: the server answers as while the model loads.
    pub load_engine: bool,
    pub extra_routes: Option<Router<AppState>>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            config: server_config(),
            engine: engine_options(),
            load_engine: true,
            extra_routes: None,
        }
    }
}

/// A server running on the current tokio runtime.
pub struct TestServer {
    pub base_url: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Setup {
    pub async fn start(self) -> TestServer {
        let mut server = Server::bind(self.config)
            .await
            .expect("binding 127.0.0.1:0");
        if let Some(routes) = self.extra_routes {
            server = server.merge_routes(routes);
        }
        let base_url = format!("http://{}", server.local_addr().unwrap());
        let state = server.state().clone();
        if self.load_engine {
            let engine = tokio::task::spawn_blocking(move || start_engine(&self.engine))
                .await
                .unwrap();
            assert!(state.set_engine(engine).is_ok());
        }
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = signal.await;
        }));
        TestServer {
            base_url,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }
}

impl TestServer {
    /// Signals shutdown; returns the run's result once it drained.
    pub fn begin_stop(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.take().expect("stopped twice")
    }

    pub async fn stop(mut self) {
        let result =
            tokio::time::timeout(Duration::from_secs(30), self.begin_stop().into_future()).await;
        result
            .expect("the server did not stop in time")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The shared server's base URL (vLLM metric names on, 64 KiB body limit,
/// at most [`MAX_TOKENS_LIMIT`] tokens per completion).
pub fn shared() -> &'static str {
    static BASE_URL: OnceLock<String> = OnceLock::new();
    BASE_URL.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = ServerConfig {
                    metrics_compat: MetricsCompat::Vllm,
                    max_body_bytes: 64 << 10,
                    max_tokens_limit: Some(MAX_TOKENS_LIMIT),
                    ..server_config()
                };
                let server = Setup {
                    config,
                    ..Setup::default()
                }
                .start()
                .await;
                sender.send(server.base_url.clone()).unwrap();
                std::future::pending::<()>().await;
            });
        });
        receiver.recv().expect("the shared server failed to start")
    })
}

pub fn openai(base_url: &str) -> Client<OpenAIConfig> {
    openai_with_key(base_url, "unused")
}

pub fn openai_with_key(base_url: &str, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{base_url}/v1"))
            .with_api_key(key),
    )
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// POSTs JSON; returns the status and the body as JSON (Null if not JSON).
pub async fn post(base_url: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = http()
        .post(format!("{base_url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub async fn get(base_url: &str, path: &str) -> (u16, String) {
    let response = http()
        .get(format!("{base_url}{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Asserts an OpenAI-shaped error with this status, code and param.
#[track_caller]
pub fn assert_error(actual: &(u16, Value), status: u16, code: &str, param: Option<&str>) {
    let (s, body) = actual;
    assert_eq!(*s, status, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    match param {
        Some(p) => assert_eq!(error["param"], p, "{body}"),
        None => assert!(error["param"].is_null(), "{body}"),
    }
}

/// The sum of a metric's samples whose labels contain `label` ("" for all).
pub async fn metric(base_url: &str, name: &str, label: &str) -> f64 {
    let (status, text) = get(base_url, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` until `name` (with `label`) equals `value`.
pub async fn wait_for_metric(base_url: &str, name: &str, label: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = metric(base_url, name, label).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{name}{label}` stayed at {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Token count of `text` as the server tokenizes prompts.
pub async fn num_tokens(base_url: &str, text: &str) -> u32 {
    let (status, body) = post(base_url, "/tokenize", &serde_json::json!({"prompt": text})).await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_u64().unwrap() as u32
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}
