//! Server-sent events in OpenAI's streaming shape: one `data: {chunk}` event
//! per token (or held-back text released), a final chunk per choice with its
//! `finish_reason`, with `stream_options.include_usage` a last chunk with
//! empty `choices` and the `usage`, then `data: [DONE]`.
//!
//! The endpoint-specific chunk shapes come from a [`ChunkFormat`]; this
//! module owns the framing and the ordering. An error after the headers
//! went out (an engine failure, a shutdown that aborted the request) is
//! sent as `data: {"error": …}` and ends the stream without `[DONE]`, as
//! OpenAI's API does, so a client cannot mistake it for a complete answer.
//!
//! Cancellation: the stream owns the [`Generation`]; when the client
//! disconnects, hyper drops the body, and with it the engine's request
//! handles, which aborts them.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use fulcrum_engine::{ChoiceFinished, FinishReason};
use futures_util::stream;

use crate::error::ApiError;
use crate::generation::{ChoiceText, Generation, TokenLogprob, Update};
use crate::protocol::Usage;
use crate::request_log::LoggedByHandler;

/// How one endpoint renders its chunks (as JSON text).
pub trait ChunkFormat: Send + 'static {
    /// Chunks sent before the first token (chat: each choice's role).
    fn opening(&mut self, num_choices: usize) -> Vec<String>;
    /// A token's chunk, `None` to send nothing (no text, no logprobs).
    fn token(
        &mut self,
        choice: usize,
        text: &str,
        logprob: Option<&TokenLogprob>,
    ) -> Option<String>;
    /// The choice's last chunk; `text` is its held-back tail (usually empty).
    fn finish(&mut self, choice: usize, text: &str, finished: &ChoiceFinished) -> String;
    /// The usage chunk (`choices: []`).
    fn usage(&mut self, usage: &Usage) -> String;
}

struct StreamState<F> {
    generation: Generation,
    format: F,
    choices: Vec<ChoiceText>,
    pending: VecDeque<Event>,
    include_usage: bool,
    is_over: bool,
}

/// The SSE response for `generation`.
pub fn respond<F: ChunkFormat>(
    generation: Generation,
    mut format: F,
    include_usage: bool,
) -> Response {
    let num_choices = generation.num_choices();
    let pending = format.opening(num_choices).into_iter().map(data).collect();
    let state = StreamState {
        generation,
        format,
        choices: (0..num_choices).map(|_| ChoiceText::default()).collect(),
        pending,
        include_usage,
        is_over: false,
    };
    let events = stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), s));
            }
            if s.is_over {
                return None;
            }
            match s.generation.next().await {
                Some(update) => s.on_update(update),
                None => s.is_over = true,
            }
        }
    });
    let mut response = Sse::new(events).into_response();
    response.extensions_mut().insert(LoggedByHandler);
    response
}

impl<F: ChunkFormat> StreamState<F> {
    fn on_update(&mut self, update: Update) {
        match update {
            Update::Token { choice, token } => {
                let Some(c) = self.choices.get_mut(choice) else {
                    return;
                };
                let logprob = c.push_token(&token);
                if let Some(chunk) = self.format.token(choice, &token.text, logprob) {
                    self.pending.push_back(data(chunk));
                }
            }
            Update::Finished { finished, .. } if finished.reason == FinishReason::Abort => {
                let error = ApiError::ShuttingDown;
                self.generation.abandon(&error);
                self.fail(&error);
            }
            Update::Finished { choice, finished } => {
                if let Some(c) = self.choices.get_mut(choice) {
                    c.push_tail(&finished.text);
                }
                self.pending
                    .push_back(data(self.format.finish(choice, &finished.text, &finished)));
            }
            Update::Done(usage) => {
                if self.include_usage {
                    self.pending.push_back(data(self.format.usage(&usage)));
                }
                self.pending.push_back(data("[DONE]".to_string()));
                self.is_over = true;
            }
            Update::Failed(error) => self.fail(&error),
        }
    }

    fn fail(&mut self, error: &ApiError) {
        let body = serde_json::to_string(&error.body()).unwrap_or_else(|_| "{}".into());
        self.pending.push_back(data(body));
        self.is_over = true;
    }
}

/// A `data:` event. Compact JSON never holds a raw line break, which SSE
/// could not carry in one field.
fn data(text: String) -> Event {
    Event::default().data(text)
}
