//! `POST /v1/chat/completions`: messages rendered with the model's chat
//! template → the assistant's reply, whole or streamed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use fulcrum_engine::ChoiceFinished;

use super::{json, logged, start, ResponseMeta};
use crate::generation::{Collected, TokenLogprob};
use crate::params::Endpoint;
use crate::protocol::{
    ChatChoice, ChatChunk, ChatChunkChoice, ChatDelta, ChatLogprobs, ChatMessageOut, ChatResponse,
    ChatTokenLogprob, ChatTopLogprob, Usage,
};
use crate::sse::{self, ChunkFormat};
use crate::state::AppState;

pub async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (plan, meta, generation) = match start(&state, body, Endpoint::Chat) {
        Ok(started) => started,
        Err(e) => return e.into_response(),
    };
    if plan.stream {
        return sse::respond(generation, ChatChunks { meta }, plan.include_usage);
    }
    match generation.collect().await {
        Ok(collected) => logged(json(&response(&meta, collected))),
        Err(e) => logged(e.into_response()),
    }
}

fn response(meta: &ResponseMeta, collected: Collected) -> ChatResponse {
    let choices = collected
        .choices
        .into_iter()
        .enumerate()
        .map(|(index, choice)| ChatChoice {
            index,
            logprobs: meta
                .wants_logprobs
                .then(|| logprobs(meta, &choice.logprobs)),
            finish_reason: choice
                .finished
                .as_ref()
                .map_or("stop", |f| f.reason.as_openai_str()),
            stop_reason: choice.finished.as_ref().and_then(|f| meta.stop_reason(f)),
            message: ChatMessageOut {
                role: "assistant",
                content: choice.text,
            },
        })
        .collect();
    ChatResponse {
        id: meta.id.clone(),
        object: "chat.completion",
        created: meta.created,
        model: meta.model.clone(),
        choices,
        usage: collected.usage,
    }
}

fn logprobs(meta: &ResponseMeta, entries: &[TokenLogprob]) -> ChatLogprobs {
    let content = entries
        .iter()
        .map(|entry| {
            let token = meta.token_text(entry.token_id);
            let top_logprobs = entry
                .logprobs
                .top
                .iter()
                .map(|&(id, logprob)| {
                    let token = meta.token_text(id);
                    ChatTopLogprob {
                        bytes: token.as_bytes().to_vec(),
                        token,
                        logprob,
                    }
                })
                .collect();
            ChatTokenLogprob {
                bytes: token.as_bytes().to_vec(),
                token,
                logprob: entry.logprobs.logprob,
                top_logprobs,
            }
        })
        .collect();
    ChatLogprobs { content }
}

struct ChatChunks {
    meta: ResponseMeta,
}

impl ChatChunks {
    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Option<Usage>) -> String {
        let chunk = ChatChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices,
            usage,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    }
}

impl ChunkFormat for ChatChunks {
    /// OpenAI opens each choice with the assistant's role and empty content.
    fn opening(&mut self, num_choices: usize) -> Vec<String> {
        (0..num_choices)
            .map(|index| {
                let delta = ChatDelta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                };
                let choice = ChatChunkChoice {
                    index,
                    delta,
                    logprobs: None,
                    finish_reason: None,
                    stop_reason: None,
                };
                self.chunk(vec![choice], None)
            })
            .collect()
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
        let choice = ChatChunkChoice {
            index: choice,
            delta: ChatDelta {
                role: None,
                content: Some(text.to_string()),
            },
            logprobs: logprob.map(|entry| logprobs(&self.meta, std::slice::from_ref(entry))),
            finish_reason: None,
            stop_reason: None,
        };
        Some(self.chunk(vec![choice], None))
    }

    fn finish(&mut self, choice: usize, text: &str, finished: &ChoiceFinished) -> String {
        let choice = ChatChunkChoice {
            index: choice,
            delta: ChatDelta {
                role: None,
                content: (!text.is_empty()).then(|| text.to_string()),
            },
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
