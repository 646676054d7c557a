//! A bounded load test: 200 requests, 32 at a time, half of them streaming,
//! short prompts and at most 16 tokens each. Every request must be answered,
//! and afterwards no KV block may still be in use.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::{http, metric, sse_data, wait_for_metric, Setup};

const NUM_REQUESTS: usize = 200;
const CONCURRENCY: usize = 32;

/// One request; returns its completion token count (from `usage`).
async fn one(base: &str, i: usize) -> u64 {
    let stream = i % 2 == 1;
    let max_tokens = 1 + i % 16;
    let body = json!({
        "prompt": format!("Request number {i} says:"),
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": i,
        "stream": stream,
        "stream_options": {"include_usage": true},
    });
    let response = http()
        .post(format!("{base}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "request {i}");
    let text = response.text().await.unwrap();
    let usage: Value = if stream {
        let events = sse_data(&text);
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "request {i}: {text}"
        );
        let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        usage_chunk["usage"].clone()
    } else {
        serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
    };
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap();
    assert!(
        (1..=max_tokens as u64).contains(&completion_tokens),
        "request {i}: {usage}"
    );
    completion_tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_all_answered_and_no_block_leaks() {
    let server = Setup::default().start().await;
    let base = server.base_url.clone();
    let started = Instant::now();
    let tokens: Vec<u64> = futures_util::stream::iter(0..NUM_REQUESTS)
        .map(|i| {
            let base = base.clone();
            async move {
                tokio::spawn(async move { one(&base, i).await })
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert_eq!(tokens.len(), NUM_REQUESTS);
    let total: u64 = tokens.iter().sum();
    eprintln!("{NUM_REQUESTS} requests, {total} tokens in {elapsed:.1?}");

    wait_for_metric(&base, "fulcrum_kv_cache_blocks_used", "", 0.0).await;
    assert_eq!(metric(&base, "fulcrum_requests_running", "").await, 0.0);
    assert_eq!(metric(&base, "fulcrum_requests_waiting", "").await, 0.0);
    let finished = metric(&base, "fulcrum_requests_finished_total", "").await;
    assert_eq!(finished, NUM_REQUESTS as f64);
    assert_eq!(
        metric(&base, "fulcrum_requests_finished_total", "abort").await,
        0.0
    );
    assert_eq!(
        metric(&base, "fulcrum_generation_tokens_total", "").await,
        total as f64
    );
    assert_eq!(
        metric(&base, "fulcrum_e2e_request_latency_seconds_count", "").await,
        NUM_REQUESTS as f64
    );
    server.stop().await;
}
