//! Every error class, in OpenAI's shape with the right status: 400 (invalid
//! JSON, wrong types, out-of-range values, beyond the context), 404, 405,
//! 413, and the panicking handler that must not take the server down.

use axum::routing::get;
use axum::Router;
use fulcrum_server::AppState;
use serde_json::json;

use crate::common::{
    assert_error, get as http_get, http, post, shared, Setup, MAX_MODEL_LEN, MAX_TOKENS_LIMIT,
};

#[tokio::test]
async fn garbage_bytes_and_bad_json_are_400() {
    let base = shared();
    for body in [
        &b"\x00\xff\xfe garbage \x80"[..],
        b"",
        b"{\"prompt\": \"hi\"",
        b"[1, 2, 3]",
        b"{\"prompt\": \"a\"} trailing",
    ] {
        let response = http()
            .post(format!("{base}/v1/completions"))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let value: serde_json::Value = response.json().await.unwrap();
        assert_error(&(status, value), 400, "invalid_json", None);
    }
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let base = shared();
    let cases = [
        (json!({"prompt": "hi", "max_tokens": "ten"}), "max_tokens"),
        (json!({"prompt": "hi", "temperature": "hot"}), "temperature"),
        (json!({"prompt": "hi", "stream": "yes"}), "stream"),
        (json!({"prompt": "hi", "n": -1}), "n"),
        (
            json!({"prompt": "hi", "stream_options": {"include_usage": "x"}}),
            "stream_options.include_usage",
        ),
    ];
    for (body, field) in cases {
        assert_error(
            &post(base, "/v1/completions", &body).await,
            400,
            "invalid_json",
            Some(field),
        );
    }
    let body = json!({"messages": [{"role": "user", "content": 42}]});
    let response = post(base, "/v1/chat/completions", &body).await;
    assert_eq!(
        response.1["error"]["param"], "messages[0].content",
        "{}",
        response.1
    );
    assert_eq!(response.0, 400);
}

#[tokio::test]
async fn out_of_range_values_name_the_field_and_the_limit() {
    let base = shared();
    let cases = [
        (json!({"prompt": "hi", "top_p": 1.5}), "top_p", "(0, 1]"),
        (
            json!({"prompt": "hi", "temperature": -1}),
            "temperature",
            ">= 0",
        ),
        (json!({"prompt": "hi", "n": 0}), "n", "[1, 128]"),
        (
            json!({"prompt": "hi", "logprobs": 50}),
            "logprobs",
            "[0, 20]",
        ),
        (
            json!({"prompt": "hi", "presence_penalty": 5}),
            "presence_penalty",
            "[-2, 2]",
        ),
        (
            json!({"prompt": "hi", "max_tokens": 0}),
            "max_tokens",
            "at least 1",
        ),
        (json!({"prompt": [1, 99999999]}), "prompt", "vocabulary"),
        (json!({"prompt": ""}), "prompt", "empty"),
        (json!({"max_tokens": 1}), "prompt", "required"),
        (
            json!({"prompt": "hi", "echo": true}),
            "echo",
            "not supported",
        ),
        (
            json!({"prompt": vec![[1]; 129]}),
            "prompt",
            "at most 128 prompts",
        ),
    ];
    for (body, field, limit) in cases {
        let (status, value) = post(base, "/v1/completions", &body).await;
        assert_eq!(status, 400, "{body} → {value}");
        assert_eq!(value["error"]["param"], field, "{body} → {value}");
        let message = value["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(limit),
            "{body}: {message:?} should mention {limit:?}"
        );
    }
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 30});
    let (status, value) = post(base, "/v1/chat/completions", &body).await;
    assert_eq!(
        (status, &value["error"]["param"]),
        (400, &json!("top_logprobs")),
        "{value}"
    );
}

#[tokio::test]
async fn prompt_and_max_tokens_beyond_the_context_are_400() {
    let base = shared();
    let prompt = "Hello there, how are you? ".repeat(10);
    let body = json!({"prompt": prompt, "max_tokens": MAX_TOKENS_LIMIT});
    let response = post(base, "/v1/completions", &body).await;
    assert_error(
        &response,
        400,
        "context_length_exceeded",
        Some("max_tokens"),
    );
    let message = response.1["error"]["message"].as_str().unwrap();
    assert!(message.contains(&MAX_MODEL_LEN.to_string()), "{message}");

    let long_prompt: Vec<u32> = vec![42; MAX_MODEL_LEN + 1];
    let response = post(
        base,
        "/v1/completions",
        &json!({"prompt": long_prompt, "max_tokens": 1}),
    )
    .await;
    assert_error(
        &response,
        400,
        "context_length_exceeded",
        Some("max_tokens"),
    );

    let body = json!({"messages": [{"role": "user", "content": prompt}], "max_completion_tokens": MAX_TOKENS_LIMIT});
    let response = post(base, "/v1/chat/completions", &body).await;
    assert_error(
        &response,
        400,
        "context_length_exceeded",
        Some("max_completion_tokens"),
    );
}

#[tokio::test]
async fn max_tokens_over_the_servers_limit_is_400() {
    let base = shared();
    let body = json!({"prompt": "Hi", "max_tokens": MAX_TOKENS_LIMIT + 1});
    let (status, value) = post(base, "/v1/completions", &body).await;
    assert_eq!(
        (status, &value["error"]["param"]),
        (400, &json!("max_tokens")),
        "{value}"
    );
    let message = value["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("at most {MAX_TOKENS_LIMIT}")),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_models_and_routes_are_404() {
    let base = shared();
    let response = post(
        base,
        "/v1/completions",
        &json!({"model": "gpt-4", "prompt": "hi"}),
    )
    .await;
    assert_error(&response, 404, "model_not_found", Some("model"));
    let response = post(
        base,
        "/v1/chat/completions",
        &json!({"model": "gpt-4", "messages": []}),
    )
    .await;
    assert_eq!(response.0, 404);
    let response = post(base, "/v1/nope", &json!({})).await;
    assert_error(&response, 404, "not_found", None);
    let (status, body) = http_get(base, "/v1/completions").await;
    assert_eq!(status, 405, "{body}");
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let base = shared();
    // The shared server takes at most 64 KiB.
    let body = json!({"prompt": "x".repeat(100 << 10)});
    assert_error(
        &post(base, "/v1/completions", &body).await,
        413,
        "request_too_large",
        None,
    );
    assert_error(
        &post(base, "/tokenize", &body).await,
        413,
        "request_too_large",
        None,
    );
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_goes_on() {
    async fn panics() -> &'static str {
        panic!("a handler bug")
    }
    let routes: Router<AppState> = Router::new().route("/panic", get(panics));
    let server = Setup {
        extra_routes: Some(routes),
        load_engine: false,
        ..Setup::default()
    }
    .start()
    .await;
    let response = http()
        .get(format!("{}/panic", server.base_url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let value = response.json().await.unwrap();
    assert_error(&(status, value), 500, "internal_error", None);
    // Still serving, on new connections and old.
    let (status, _) = http_get(&server.base_url, "/metrics").await;
    assert_eq!(status, 200);
    server.stop().await;
}
