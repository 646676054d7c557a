//! One `tracing` line per request.
//!
//! Why generation requests log themselves: their line is worth most when it
//! carries what the response alone cannot show — tokens in and out, TTFT,
//! the finish reasons, whether the client went away — and for a stream
//! that is only known when the body ends, long after the middleware saw
//! the headers. So a generation's [`RequestLog`] writes the line when the
//! request ends (or is dropped: a disconnect), and marks its response with
//! `LoggedByHandler`; `log_requests` writes the line for everything
//! else (including generation requests refused before they started).
//! Probes (`/health`, `/metrics`) log at debug level, so a scraper does not
//! drown the log.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use fulcrum_engine::ChoiceFinished;

use crate::error::{ApiError, ErrorMessage};
use crate::protocol::Usage;

/// Marks a response whose request logs its own line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoggedByHandler;

/// A generation request's log line, written once.
#[derive(Debug)]
pub struct RequestLog {
    id: String,
    endpoint: &'static str,
    started: Instant,
    is_stream: bool,
    user: Option<String>,
    num_prompt_tokens: usize,
    /// Finish reason of each finished choice, comma-separated.
    finish_reasons: String,
    ttft: Option<Duration>,
    is_logged: bool,
}

impl RequestLog {
    pub fn new(
        id: &str,
        endpoint: &'static str,
        is_stream: bool,
        user: Option<&str>,
    ) -> RequestLog {
        RequestLog {
            id: id.to_string(),
            endpoint,
            started: Instant::now(),
            is_stream,
            user: user.map(str::to_string),
            num_prompt_tokens: 0,
            finish_reasons: String::new(),
            ttft: None,
            is_logged: false,
        }
    }

    pub fn set_prompt_tokens(&mut self, n: usize) {
        self.num_prompt_tokens = n;
    }

    pub fn note_finished(&mut self, finished: &ChoiceFinished) {
        if !self.finish_reasons.is_empty() {
            self.finish_reasons.push(',');
        }
        self.finish_reasons
            .push_str(finished.reason.as_openai_str());
        if self.ttft.is_none() {
            self.ttft = finished.timings.ttft();
        }
    }

    pub fn succeeded(&mut self, usage: &Usage) {
        if std::mem::replace(&mut self.is_logged, true) {
            return;
        }
        tracing::info!(
            id = %self.id,
            endpoint = self.endpoint,
            status = 200,
            stream = self.is_stream,
            prompt_tokens = usage.prompt_tokens,
            cached_tokens = usage.prompt_tokens_details.cached_tokens,
            completion_tokens = usage.completion_tokens,
            finish = %self.finish_reasons,
            ttft_ms = self.ttft.map_or(-1.0, ms),
            e2e_ms = ms(self.started.elapsed()),
            user = self.user.as_deref().unwrap_or(""),
            "request done"
        );
    }

    pub fn failed(&mut self, error: &ApiError) {
        if std::mem::replace(&mut self.is_logged, true) {
            return;
        }
        tracing::warn!(
            id = %self.id,
            endpoint = self.endpoint,
            status = error.status().as_u16(),
            stream = self.is_stream,
            prompt_tokens = self.num_prompt_tokens,
            e2e_ms = ms(self.started.elapsed()),
            "request failed: {error}"
        );
    }

    /// The client went away before the end; the engine aborts the request.
    pub fn disconnected(&mut self) {
        if std::mem::replace(&mut self.is_logged, true) {
            return;
        }
        tracing::info!(
            id = %self.id,
            endpoint = self.endpoint,
            status = 499,
            stream = self.is_stream,
            prompt_tokens = self.num_prompt_tokens,
            finish = %self.finish_reasons,
            e2e_ms = ms(self.started.elapsed()),
            "client disconnected; request aborted"
        );
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// Logs every request whose handler does not log its own line.
pub(crate) async fn log_requests(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    if response.extensions().get::<LoggedByHandler>().is_some() {
        return response;
    }
    let status = response.status().as_u16();
    let elapsed_ms = ms(started.elapsed());
    let is_probe = path == "/health" || path == "/metrics";
    match response.extensions().get::<ErrorMessage>() {
        _ if is_probe => tracing::debug!(%method, path, status, elapsed_ms, "probe"),
        Some(ErrorMessage(error)) if status >= 500 && status != 503 => {
            tracing::warn!(%method, path, status, elapsed_ms, "request failed: {error}");
        }
        Some(ErrorMessage(error)) => {
            tracing::info!(%method, path, status, elapsed_ms, "request refused: {error}")
        }
        None => tracing::info!(%method, path, status, elapsed_ms, "request done"),
    }
    response
}
