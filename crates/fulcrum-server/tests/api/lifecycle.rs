//! The server's life around requests: 401 without the key, 503 while
//! loading and shutting down, 429 under a flood, a client that disconnects
//! (streaming or not) freeing its KV blocks, graceful shutdown.

use std::time::Duration;

use async_openai::types::completions::CreateCompletionRequestArgs;
use fulcrum_engine::EngineOptions;
use fulcrum_server::ServerConfig;
use serde_json::json;

use crate::common::{
    assert_error, engine_options, get, http, metric, openai_with_key, post, server_config,
    sse_data, start_engine, wait_for_metric, Setup, MODEL,
};

const BLOCKS_USED: &str = "fulcrum_kv_cache_blocks_used";
const FINISHED: &str = "fulcrum_requests_finished_total";

#[tokio::test]
async fn v1_needs_the_api_key_and_probes_stay_open() {
    let config = ServerConfig {
        api_key: Some("sk-test-123".into()),
        ..server_config()
    };
    let server = Setup {
        config,
        ..Setup::default()
    }
    .start()
    .await;
    let base = server.base_url.as_str();
    for auth in [
        None,
        Some("Bearer sk-test-12"),
        Some("Bearer sk-test-1234"),
        Some("Basic sk-test-123"),
        Some("sk-test-123"),
    ] {
        let mut request = http()
            .post(format!("{base}/v1/completions"))
            .json(&json!({"prompt": "hi", "max_tokens": 1}));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
        let status = response.status().as_u16();
        assert_error(
            &(status, response.json().await.unwrap()),
            401,
            "invalid_api_key",
            None,
        );
    }
    let (status, _) = get(base, "/v1/models").await;
    assert_eq!(status, 401);
    for open in ["/health", "/metrics"] {
        assert_eq!(get(base, open).await.0, 200, "{open}");
    }
    // A real client with the key gets through.
    let client = openai_with_key(base, "sk-test-123");
    assert_eq!(client.models().list().await.unwrap().data[0].id, MODEL);
    let request = CreateCompletionRequestArgs::default()
        .model(MODEL)
        .prompt("Hi")
        .max_tokens(2u32)
        .build()
        .unwrap();
    assert_eq!(
        client
            .completions()
            .create(request)
            .await
            .unwrap()
            .choices
            .len(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn loading_is_503_until_the_engine_is_set() {
    let server = Setup {
        load_engine: false,
        ..Setup::default()
    }
    .start()
    .await;
    let base = server.base_url.as_str();
    let (status, body) = get(base, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("model_loading"), "{body}");
    assert_error(
        &post(base, "/v1/completions", &json!({"prompt": "hi"})).await,
        503,
        "model_loading",
        None,
    );
    assert_eq!(get(base, "/v1/models").await.0, 503);
    assert_eq!(
        get(base, "/metrics").await.0,
        200,
        "metrics answer while loading"
    );

    let engine = tokio::task::spawn_blocking(|| start_engine(&engine_options()))
        .await
        .unwrap();
    assert!(server.state.set_engine(engine).is_ok());
    assert_eq!(get(base, "/health").await.0, 200);
    let (status, body) = post(
        base,
        "/v1/completions",
        &json!({"prompt": "hi", "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Shutting down: refused with 503 (here flagged without closing the listener).
    server.state.begin_shutdown();
    assert_error(
        &post(base, "/v1/completions", &json!({"prompt": "hi"})).await,
        503,
        "shutting_down",
        None,
    );
    assert_eq!(get(base, "/health").await.0, 503);
    server.stop().await;
}

#[tokio::test]
async fn a_flood_over_max_waiting_gets_429_and_the_rest_complete() {
    let engine = EngineOptions {
        max_num_seqs: 1,
        max_waiting: Some(2),
        ..engine_options()
    };
    let server = Setup {
        engine,
        ..Setup::default()
    }
    .start()
    .await;
    let base = server.base_url.clone();
    let requests = (0..16).map(|i| {
        let base = base.clone();
        tokio::spawn(async move {
            let response = http()
                .post(format!("{base}/v1/completions"))
                .json(&json!({"prompt": format!("Request {i}:"), "max_tokens": 4}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").is_some();
            (
                status,
                retry_after,
                response.json::<serde_json::Value>().await.unwrap(),
            )
        })
    });
    let results = futures_util::future::join_all(requests).await;
    let (mut ok, mut refused) = (0, 0);
    for result in results {
        let (status, retry_after, body) = result.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert!(retry_after, "429 carries Retry-After");
                assert_error(&(status, body), 429, "queue_full", None);
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok >= 1 && refused >= 1, "{ok} answered, {refused} refused");
    wait_for_metric(&base, BLOCKS_USED, "", 0.0).await;
    server.stop().await;
}

/// A long generation (`ignore_eos`) that a client abandons.
fn long_request(stream: bool) -> serde_json::Value {
    json!({"prompt": "Once upon a time", "max_tokens": 600, "ignore_eos": true, "stream": stream})
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_blocks() {
    let server = Setup {
        engine: EngineOptions {
            max_num_seqs: 4,
            ..engine_options()
        },
        ..Setup::default()
    }
    .start()
    .await;
    let base = server.base_url.as_str();

    // Streaming: read two chunks, then hang up.
    let mut response = http()
        .post(format!("{base}/v1/completions"))
        .json(&long_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut num_chunks = 0;
    while num_chunks < 2 {
        let chunk = response
            .chunk()
            .await
            .unwrap()
            .expect("the stream ended early");
        num_chunks += sse_data(std::str::from_utf8(&chunk).unwrap()).len();
    }
    assert!(
        metric(base, BLOCKS_USED, "").await > 0.0,
        "the request holds blocks while it runs"
    );
    drop(response);
    wait_for_metric(base, BLOCKS_USED, "", 0.0).await;
    wait_for_metric(base, FINISHED, "abort", 1.0).await;

    // Not streaming: the client gives up once its request runs.
    let url = format!("{base}/v1/completions");
    let request =
        tokio::spawn(async move { http().post(url).json(&long_request(false)).send().await });
    wait_for_metric(base, "fulcrum_requests_running", "", 1.0).await;
    request.abort();
    assert!(request.await.is_err_and(|e| e.is_cancelled()));
    wait_for_metric(base, FINISHED, "abort", 2.0).await;
    wait_for_metric(base, BLOCKS_USED, "", 0.0).await;
    assert_eq!(
        metric(base, FINISHED, "length").await,
        0.0,
        "neither request ran to its end"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_streams_in_flight_finish() {
    let server = Setup::default().start().await;
    let base = server.base_url.clone();
    let mut server = server;
    let body =
        json!({"prompt": "Once upon a time", "max_tokens": 24, "ignore_eos": true, "stream": true});
    let mut response = http()
        .post(format!("{base}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut text = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let stopped = server.begin_stop();
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // No longer accepting connections.
    assert!(http().get(format!("{base}/health")).send().await.is_err());
}

#[tokio::test]
async fn shutdown_past_its_timeout_aborts_streams_with_an_error_event() {
    let config = ServerConfig {
        shutdown_timeout: Duration::ZERO,
        ..server_config()
    };
    let mut server = Setup {
        config,
        ..Setup::default()
    }
    .start()
    .await;
    let base = server.base_url.clone();
    let mut response = http()
        .post(format!("{base}/v1/completions"))
        .json(&long_request(true))
        .send()
        .await
        .unwrap();
    let mut text = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let stopped = server.begin_stop();
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = sse_data(&text);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "shutting_down", "{text}");
    assert!(!text.contains("[DONE]"));
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
