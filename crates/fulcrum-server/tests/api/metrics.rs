//! `/metrics`: fulcrum's series and, with `--metrics-compat vllm` (on for
//! the shared server), vLLM's names for the same observations.

use serde_json::json;

use crate::common::{get, post, shared};

#[tokio::test]
async fn metrics_export_both_namings_after_a_request() {
    let base = shared();
    let (status, body) = post(
        base,
        "/v1/completions",
        &json!({"prompt": "One, two,", "max_tokens": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let response = crate::common::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let (_, text) = get(base, "/metrics").await;
    let histograms = [
        "fulcrum_time_to_first_token_seconds",
        "fulcrum_time_per_output_token_seconds",
        "fulcrum_inter_token_latency_seconds",
        "fulcrum_e2e_request_latency_seconds",
        "fulcrum_request_queue_time_seconds",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
    ];
    for name in histograms {
        assert!(
            text.contains(&format!("# TYPE {name} histogram")),
            "{name} missing:\n{text}"
        );
        let count = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}_count")))
            .unwrap();
        assert!(!count.ends_with(" 0"), "{count}");
    }
    let series = [
        ("fulcrum_prompt_tokens_total", "counter"),
        ("fulcrum_generation_tokens_total", "counter"),
        ("fulcrum_requests_finished_total", "counter"),
        ("fulcrum_preemptions_total", "counter"),
        ("fulcrum_prefix_cache_hits_total", "counter"),
        ("fulcrum_prefix_cache_queries_total", "counter"),
        ("fulcrum_requests_running", "gauge"),
        ("fulcrum_requests_waiting", "gauge"),
        ("fulcrum_kv_cache_usage_ratio", "gauge"),
        ("fulcrum_kv_cache_blocks_used", "gauge"),
        ("fulcrum_batch_size", "gauge"),
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
        ("vllm:kv_cache_usage_perc", "gauge"),
        ("vllm:prefix_cache_queries_total", "counter"),
        ("vllm:prefix_cache_hits_total", "counter"),
        ("vllm:num_preemptions_total", "counter"),
        ("vllm:prompt_tokens_total", "counter"),
        ("vllm:generation_tokens_total", "counter"),
    ];
    for (name, kind) in series {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}")),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("model_name=\"smollm2-135m\""));
}

#[tokio::test]
async fn tokenize_and_detokenize_round_trip() {
    let base = shared();
    let (status, body) = post(
        base,
        "/tokenize",
        &json!({"prompt": "Hello world", "return_token_strs": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tokens = body["tokens"].as_array().unwrap().clone();
    assert_eq!(body["count"], tokens.len());
    assert_eq!(body["token_strs"].as_array().unwrap().len(), tokens.len());
    assert_eq!(body["max_model_len"], crate::common::MAX_MODEL_LEN);
    let (status, body) = post(base, "/detokenize", &json!({"tokens": tokens})).await;
    assert_eq!(
        (status, body["prompt"].as_str()),
        (200, Some("Hello world")),
        "{body}"
    );
    let (status, body) = post(base, "/detokenize", &json!({"tokens": [1, 4000000]})).await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("tokens[1]")),
        "{body}"
    );
    let messages = json!({"messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = post(base, "/tokenize", &messages).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["count"].as_u64().unwrap() > 1);
}
