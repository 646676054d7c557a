//! One streaming request to an OpenAI-compatible `/v1/completions`, timed.
//!
//! The clock starts just before the request is sent and every read from the
//! socket is stamped when it arrives: events that arrive in one read share
//! that stamp (they were delivered together, so the user saw them together).
//! Output token counts come from the `usage` object the server sends at the
//! end (`stream_options.include_usage`), never from counting chunks: a
//! server may put several tokens in a chunk, or send chunks with no text.
//! A stream that ends without `[DONE]` or without `usage` is a failure:
//! its figures would be made up.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::error::BenchError;
use crate::sse::{SseEvent, SseParser};
use crate::workload::RequestSpec;

/// The longest error body quoted in a record.
const MAX_ERROR_CHARS: usize = 300;

pub struct CompletionsClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

/// What a successful stream measured, relative to the send.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamedCompletion {
    /// Arrival of each chunk that carried non-empty text.
    pub chunk_offsets: Vec<Duration>,
    /// Arrival of `[DONE]`.
    pub e2e: Duration,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl CompletionsClient {
    /// `base_url` is the server root (`http://host:port`), with or without a
    /// trailing `/v1`. `timeout` bounds each whole request.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<CompletionsClient, BenchError> {
        let trimmed = base_url.trim_end_matches('/');
        let base_url = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(BenchError::config(
                "--base-url",
                format!("`{base_url}` must start with http:// or https://"),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BenchError::Server {
                url: base_url.clone(),
                message: e.to_string(),
            })?;
        Ok(CompletionsClient {
            http,
            base_url,
            api_key,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// The first model `GET /v1/models` lists: what to send as `model` when
    /// the user did not say.
    pub async fn first_model(&self) -> Result<String, BenchError> {
        let url = format!("{}/v1/models", self.base_url);
        let fail = |message: String| BenchError::Server {
            url: url.clone(),
            message,
        };
        let response = self
            .request(reqwest::Method::GET, "/v1/models")
            .send()
            .await
            .map_err(|e| fail(describe(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| fail(describe(&e)))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {}", truncate(&body))));
        }
        let listing: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| fail(format!("not JSON ({e})")))?;
        listing["data"][0]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail("lists no models; pass --model".into()))
    }

    /// Sends one streaming completion and times it. `Err` carries the reason
    /// and the time until the failure.
    pub async fn stream_completion(
        &self,
        model: &str,
        spec: &RequestSpec,
    ) -> Result<StreamedCompletion, (String, Duration)> {
        let mut body = json!({
            "model": model,
            "prompt": spec.prompt,
            "max_tokens": spec.max_tokens,
            // Greedy: the cheapest sampler, and the same work on every server.
            "temperature": 0.0,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if spec.ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        let body = body.to_string();
        let request = self
            .request(reqwest::Method::POST, "/v1/completions")
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let sent = Instant::now();
        let fail = |message: String| Err((message, sent.elapsed()));
        let mut response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return fail(describe(&e)),
        };
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return fail(format!("HTTP {status}: {}", truncate(&text)));
        }
        let mut stream = StreamState::default();
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    let at = sent.elapsed();
                    parser.push(&bytes, &mut events);
                    for event in events.drain(..) {
                        if let Err(message) = stream.on_event(&event, at) {
                            return fail(message);
                        }
                    }
                    if stream.done_at.is_some() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return fail(format!("reading the stream: {}", describe(&e))),
            }
        }
        stream.finish().or_else(fail)
    }
}

/// What one stream has shown so far.
#[derive(Default)]
struct StreamState {
    chunk_offsets: Vec<Duration>,
    usage: Option<Usage>,
    done_at: Option<Duration>,
}

impl StreamState {
    fn on_event(&mut self, event: &SseEvent, at: Duration) -> Result<(), String> {
        if self.done_at.is_some() {
            return Ok(());
        }
        if event.data == "[DONE]" {
            self.done_at = Some(at);
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(&event.data)
            .map_err(|e| format!("malformed chunk ({e}): {}", truncate(&event.data)))?;
        if let Some(error) = chunk.error {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string);
            return Err(format!("error in stream: {}", truncate(&message)));
        }
        if chunk
            .choices
            .iter()
            .any(|c| c.text.as_deref().is_some_and(|t| !t.is_empty()))
        {
            self.chunk_offsets.push(at);
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        Ok(())
    }

    fn finish(self) -> Result<StreamedCompletion, String> {
        let e2e = self
            .done_at
            .ok_or("the stream ended before `data: [DONE]`")?;
        let usage = self.usage.ok_or(
            "the stream carried no `usage` (does the server honour stream_options.include_usage?)",
        )?;
        Ok(StreamedCompletion {
            chunk_offsets: self.chunk_offsets,
            e2e,
            prompt_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
        })
    }
}

/// reqwest's top-level message hides the cause ("error sending request");
/// the chain says what happened ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn text_chunks_are_timed_and_usage_counts_tokens() {
        let mut s = StreamState::default();
        s.on_event(&event(r#"{"choices":[{"index":0,"text":""}]}"#), ms(5))
            .unwrap();
        s.on_event(&event(r#"{"choices":[{"index":0,"text":"Hi"}]}"#), ms(10))
            .unwrap();
        s.on_event(
            &event(r#"{"choices":[{"index":0,"text":" there you"}]}"#),
            ms(30),
        )
        .unwrap();
        s.on_event(
            &event(r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":4,"total_tokens":8}}"#),
            ms(31),
        )
        .unwrap();
        s.on_event(&event("[DONE]"), ms(32)).unwrap();
        let done = s.finish().unwrap();
        assert_eq!(done.chunk_offsets, [ms(10), ms(30)]);
        assert_eq!(
            (done.e2e, done.prompt_tokens, done.output_tokens),
            (ms(32), 4, 4)
        );
    }

    #[test]
    fn truncated_streams_and_missing_usage_are_failures() {
        let mut s = StreamState::default();
        s.on_event(&event(r#"{"choices":[{"text":"x"}]}"#), ms(1))
            .unwrap();
        assert_eq!(
            s.finish().unwrap_err(),
            "the stream ended before `data: [DONE]`"
        );
        let mut s = StreamState::default();
        s.on_event(&event("[DONE]"), ms(1)).unwrap();
        assert!(s.finish().unwrap_err().contains("no `usage`"));
    }

    #[test]
    fn error_events_and_garbage_are_reported() {
        let mut s = StreamState::default();
        let err = s.on_event(
            &event(r#"{"error":{"message":"context too long","type":"invalid_request_error"}}"#),
            ms(1),
        );
        assert_eq!(err.unwrap_err(), "error in stream: context too long");
        let err = StreamState::default()
            .on_event(&event("{not json"), ms(1))
            .unwrap_err();
        assert!(err.starts_with("malformed chunk ("), "{err}");
    }

    #[test]
    fn base_urls_are_normalized_and_checked() {
        let c = CompletionsClient::new("http://127.0.0.1:8000/v1/", None, ms(1000)).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8000");
        let err = CompletionsClient::new("127.0.0.1:8000", None, ms(1000))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "invalid --base-url: `127.0.0.1:8000` must start with http:// or https://"
        );
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(truncate(&long).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(truncate(" short "), "short");
    }
}
