//! `POST /v1/completions`: a prompt (text, token ids, or a batch of either)
//! → text, whole or streamed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use fulcrum_engine::ChoiceFinished;
use serde_json::{Map, Value};

use super::{json, logged, start, ResponseMeta};
use crate::generation::{Collected, TokenLogprob};
use crate::params::Endpoint;
use crate::protocol::{CompletionChoice, CompletionLogprobs, CompletionResponse, Usage};
use crate::sse::{self, ChunkFormat};
use crate::state::AppState;

pub async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (plan, meta, generation) = match start(&state, body, Endpoint::Completions) {
        Ok(started) => started,
        Err(e) => return e.into_response(),
    };
    if plan.stream {
        return sse::respond(generation, CompletionChunks { meta }, plan.include_usage);
    }
    match generation.collect().await {
        Ok(collected) => logged(json(&response(&meta, collected))),
        Err(e) => logged(e.into_response()),
    }
}

fn response(meta: &ResponseMeta, collected: Collected) -> CompletionResponse {
    let choices = collected
        .choices
        .into_iter()
        .enumerate()
        .map(|(index, choice)| CompletionChoice {
            index,
            logprobs: meta
                .wants_logprobs
                .then(|| logprobs(meta, &choice.logprobs)),
            finish_reason: choice.finished.as_ref().map(|f| f.reason.as_openai_str()),
            stop_reason: choice.finished.as_ref().and_then(|f| meta.stop_reason(f)),
            text: choice.text,
        })
        .collect();
    CompletionResponse {
        id: meta.id.clone(),
        object: "text_completion",
        created: meta.created,
        model: meta.model.clone(),
        choices,
        usage: Some(collected.usage),
    }
}

/// The legacy parallel-array logprobs of `entries`.
fn logprobs(meta: &ResponseMeta, entries: &[TokenLogprob]) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    for entry in entries {
        out.tokens.push(meta.token_text(entry.token_id));
        out.token_logprobs.push(entry.logprobs.logprob);
        let top: Map<String, Value> = entry
            .logprobs
            .top
            .iter()
            .map(|&(id, lp)| (meta.token_text(id), Value::from(f64::from(lp))))
            .collect();
        out.top_logprobs.push(top);
        out.text_offset.push(entry.text_offset);
    }
    out
}

struct CompletionChunks {
    meta: ResponseMeta,
}

impl CompletionChunks {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> String {
        let chunk = CompletionResponse {
            id: self.meta.id.clone(),
            object: "text_completion",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices,
            usage,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    }
}

impl ChunkFormat for CompletionChunks {
    fn opening(&mut self, _num_choices: usize) -> Vec<String> {
        Vec::new()
    }

    fn token(
        &mut self,
        choice: usize,
        text: &str,
        logprob: Option<&TokenLogprob>,
    ) -> Option<String> {
        if text.is_empty() && logprob.is_none() {
            return None;
        }
        let logprobs = logprob.map(|entry| logprobs(&self.meta, std::slice::from_ref(entry)));
        let choice = CompletionChoice {
            index: choice,
            text: text.to_string(),
            logprobs,
            finish_reason: None,
            stop_reason: None,
        };
        Some(self.chunk(vec![choice], None))
    }

    fn finish(&mut self, choice: usize, text: &str, finished: &ChoiceFinished) -> String {
        let choice = CompletionChoice {
            index: choice,
            text: text.to_string(),
            logprobs: None,
            finish_reason: Some(finished.reason.as_openai_str()),
            stop_reason: self.meta.stop_reason(finished),
        };
        self.chunk(vec![choice], None)
    }

    fn usage(&mut self, usage: &Usage) -> String {
        self.chunk(Vec::new(), Some(*usage))
    }
}
