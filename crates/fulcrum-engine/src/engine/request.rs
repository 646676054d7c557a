//! What goes into the engine and what comes out, per request.
//!
//! - In: [`RequestInput`] (a [`Prompt`], [`SamplingParams`], a priority).
//!   `EngineHandle::add_request` validates it into token ids and a resolved
//!   output limit, or refuses it with an [`EngineError`] that names the field
//!   and the limit (the server maps each variant to an HTTP status).
//! - Out: a stream of [`RequestEvent`]s: a [`TokenEvent`] per generated
//!   token of each choice, a [`ChoiceFinished`] per choice, then exactly one
//!   terminal event: [`RequestEvent::Done`] with the [`Usage`], or
//!   [`RequestEvent::Failed`].
//! - [`RequestOutput`]: the whole stream folded into one value, for callers
//!   that do not stream (the CLI's `--json`, non-streaming HTTP responses).

use std::fmt;

use crate::sampler::{SamplingError, SamplingParams};
use crate::scheduler::AddError;
use crate::sequence::{FinishReason, SequenceTimings};

/// Identifies a request for its lifetime in the engine (and in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

/// A prompt as text or as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Tokenized with the model's special tokens added (BOS where the model
    /// asks for it) and special-token text parsed, like llama.cpp's
    /// completion endpoint. A rendered chat template already holds its
    /// special tokens: pass it through `EngineHandle::chat_prompt` instead.
    Text(String),
    /// Used as given.
    Tokens(Vec<u32>),
}

/// One request as a caller states it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInput {
    pub prompt: Prompt,
    pub params: SamplingParams,
    /// Lower is served first; equal priorities in arrival order.
    pub priority: i32,
}

impl RequestInput {
    pub fn new(prompt: Prompt, params: SamplingParams) -> Self {
        RequestInput {
            prompt,
            params,
            priority: 0,
        }
    }
}

/// Why `add_request` refused a request. Every variant but `QueueFull` and
/// `ShuttingDown` is the client's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    InvalidParams(#[from] SamplingError),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("prompt token id {id} is outside the vocabulary ({vocab_size} tokens)")]
    TokenOutOfRange { id: u32, vocab_size: usize },
    #[error("{}", context_length_message(*.num_prompt_tokens, *.max_tokens, *.max_model_len))]
    ContextLengthExceeded {
        num_prompt_tokens: usize,
        max_tokens: Option<usize>,
        max_model_len: usize,
    },
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("the engine is at capacity: {max_waiting} requests are already waiting; retry later")]
    QueueFull { max_waiting: usize },
    #[error("the engine is shutting down")]
    ShuttingDown,
}

fn context_length_message(
    num_prompt_tokens: usize,
    max_tokens: Option<usize>,
    max_model_len: usize,
) -> String {
    match max_tokens {
        Some(m) => format!(
            "this model's maximum context length is {max_model_len} tokens, but {} tokens were requested \
             ({num_prompt_tokens} in the prompt, {m} for the completion)",
            num_prompt_tokens.saturating_add(m)
        ),
        None => format!(
            "this model's maximum context length is {max_model_len} tokens, but the prompt has \
             {num_prompt_tokens} tokens, leaving no room for the completion"
        ),
    }
}

/// Why an accepted request ended without completing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailure {
    /// A step panicked; every request in flight failed with it and the
    /// engine started over with an empty KV cache.
    #[error("internal error in the engine step: {0}")]
    StepPanicked(String),
    /// The model refused the batch (a bookkeeping bug, handled like a panic).
    #[error("internal error in the forward pass: {0}")]
    Forward(String),
    /// The step's bookkeeping did not add up (handled like a panic).
    #[error("internal error in the engine: {0}")]
    Internal(String),
    /// The scheduler refused the request after `add_request` accepted it.
    #[error(transparent)]
    Rejected(#[from] AddError),
    /// The engine stopped before the request finished (its channel closed).
    #[error("the engine stopped before the request finished")]
    EngineStopped,
}

/// Logprobs of one generated token, from the raw model distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// The most likely tokens, most likely first: `(id, logprob)`.
    pub top: Vec<(u32, f32)>,
}

/// One generated token of one choice.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// The choice (`0..n`).
    pub index: usize,
    pub token_id: u32,
    /// Text this token released: possibly empty (an incomplete UTF-8
    /// character, text held back while it may start a stop string, a special
    /// token), possibly more than the token's own text (held text released).
    pub text: String,
    /// When `logprobs` was asked for.
    pub logprobs: Option<TokenLogprobs>,
}

/// Why a choice stopped with [`FinishReason::Stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// EOS, an end-of-turn token, or one of `stop_token_ids`.
    Token(u32),
    /// `stop[i]` matched; the text ends right before it.
    String(usize),
}

/// One choice finished.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceFinished {
    pub index: usize,
    pub reason: FinishReason,
    pub stop_reason: Option<StopReason>,
    /// The text held back until the end (an incomplete character, a partial
    /// stop string that never completed); usually empty.
    pub text: String,
    /// Every generated token id (a stop token included).
    pub output_token_ids: Vec<u32>,
    /// Prompt tokens served from the prefix cache at the last admission.
    pub num_cached_tokens: usize,
    pub num_preemptions: u32,
    /// Arrival, first scheduled, each token, finish: queue time, TTFT, TPOT,
    /// inter-token latencies and E2E are its methods.
    pub timings: SequenceTimings,
}

/// Token counts of a whole request (all choices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens served from the prefix cache (of the first choice).
    pub cached_tokens: usize,
}

/// The stream of one request; see the module doc for the order.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestEvent {
    Token(TokenEvent),
    Finished(ChoiceFinished),
    /// Every choice finished. The last event.
    Done(Usage),
    /// The request failed. The last event.
    Failed(RequestFailure),
}

impl RequestEvent {
    /// `Done` or `Failed`: nothing follows.
    pub fn is_terminal(&self) -> bool {
        matches!(self, RequestEvent::Done(_) | RequestEvent::Failed(_))
    }
}

/// One choice, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceOutput {
    pub index: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    /// One entry per token, when `logprobs` was asked for.
    pub logprobs: Vec<TokenLogprobs>,
    pub finish_reason: FinishReason,
    pub stop_reason: Option<StopReason>,
    pub num_cached_tokens: usize,
    pub num_preemptions: u32,
    pub timings: SequenceTimings,
}

/// A whole request, folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutput {
    pub prompt_token_ids: Vec<u32>,
    /// In index order.
    pub choices: Vec<ChoiceOutput>,
    pub usage: Usage,
}

/// Folds events into a [`RequestOutput`].
#[derive(Debug, Default)]
pub(crate) struct OutputCollector {
    /// Per choice: text and logprobs so far.
    partial: Vec<(String, Vec<TokenLogprobs>)>,
    choices: Vec<ChoiceOutput>,
}

impl OutputCollector {
    /// Takes one event; returns the output (or the failure) at the terminal one.
    pub(crate) fn push(
        &mut self,
        event: RequestEvent,
        prompt_token_ids: &[u32],
    ) -> Option<Result<RequestOutput, RequestFailure>> {
        match event {
            RequestEvent::Token(t) => {
                let (text, logprobs) = self.partial_mut(t.index);
                text.push_str(&t.text);
                logprobs.extend(t.logprobs);
                None
            }
            RequestEvent::Finished(f) => {
                let (mut text, logprobs) = std::mem::take(self.partial_mut(f.index));
                text.push_str(&f.text);
                self.choices.push(ChoiceOutput {
                    index: f.index,
                    text,
                    token_ids: f.output_token_ids,
                    logprobs,
                    finish_reason: f.reason,
                    stop_reason: f.stop_reason,
                    num_cached_tokens: f.num_cached_tokens,
                    num_preemptions: f.num_preemptions,
                    timings: f.timings,
                });
                None
            }
            RequestEvent::Done(usage) => {
                let mut choices = std::mem::take(&mut self.choices);
                choices.sort_by_key(|c| c.index);
                Some(Ok(RequestOutput {
                    prompt_token_ids: prompt_token_ids.to_vec(),
                    choices,
                    usage,
                }))
            }
            RequestEvent::Failed(failure) => Some(Err(failure)),
        }
    }

    fn partial_mut(&mut self, index: usize) -> &mut (String, Vec<TokenLogprobs>) {
        if self.partial.len() <= index {
            self.partial.resize_with(index + 1, Default::default);
        }
        &mut self.partial[index]
    }
}
