//! One module per endpoint. Generation endpoints share `start` (parse,
//! check, queue) and `ResponseMeta` (what every response and chunk of a
//! request carries); the rest are a few lines each.

pub mod chat;
pub mod completions;
pub mod models;
pub mod probes;
pub mod tokenize;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use fulcrum_engine::{ChoiceFinished, StopReason};
use fulcrum_model::tokenizer::Tokenizer;
use serde::Serialize;

use crate::body::parse_json;
use crate::error::ApiError;
use crate::generation::Generation;
use crate::params::{self, Endpoint, GenerationPlan};
use crate::protocol::{GenerateRequest, StopReasonOut};
use crate::request_log::{LoggedByHandler, RequestLog};
use crate::state::{unix_now, AppState};

/// A JSON response.
pub(crate) fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("serializing the response: {e}")).into_response(),
    }
}

/// Marks a response as logged by its generation (see `request_log`).
pub(crate) fn logged(mut response: Response) -> Response {
    response.extensions_mut().insert(LoggedByHandler);
    response
}

/// What every response and chunk of one request carries, and the lookups
/// rendering needs.
pub(crate) struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub tokenizer: Arc<Tokenizer>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    /// Whether the client asked for logprobs.
    pub wants_logprobs: bool,
}

impl ResponseMeta {
    /// vLLM's `stop_reason`: the stop string, or a requested stop token id.
    pub fn stop_reason(&self, finished: &ChoiceFinished) -> Option<StopReasonOut> {
        match finished.stop_reason {
            Some(StopReason::String(i)) => self.stop.get(i).cloned().map(StopReasonOut::String),
            Some(StopReason::Token(id)) if self.stop_token_ids.contains(&id) => {
                Some(StopReasonOut::Token(id))
            }
            _ => None,
        }
    }

    /// A token's own text (invalid UTF-8 of a partial character becomes U+FFFD).
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false)
    }
}

/// Parses, checks and queues a generation request.
pub(crate) fn start(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<(GenerationPlan, ResponseMeta, Generation), ApiError> {
    let request: GenerateRequest = parse_json(body, state.config().max_body_bytes)?;
    let engine = state.engine()?;
    let plan = params::plan(request, endpoint, state, engine)?;
    let (prefix, path) = match endpoint {
        Endpoint::Completions => ("cmpl", "/v1/completions"),
        Endpoint::Chat => ("chatcmpl", "/v1/chat/completions"),
    };
    let params = plan.params().cloned().unwrap_or_default();
    let meta = ResponseMeta {
        id: state.next_response_id(prefix),
        created: unix_now(),
        model: plan.model.clone(),
        tokenizer: engine.model().tokenizer.clone(),
        stop: params.stop,
        stop_token_ids: params.stop_token_ids,
        wants_logprobs: params.logprobs.is_some(),
    };
    let log = RequestLog::new(&meta.id, path, plan.stream, plan.user.as_deref());
    let generation = Generation::start(state, engine, &plan, log)?;
    Ok((plan, meta, generation))
}
