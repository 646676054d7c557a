//! One accepted generation request: the engine requests of its prompts,
//! their event streams merged into one sequence of [`Update`]s, which the
//! non-streaming handlers fold ([`Generation::collect`]) and the SSE stream
//! turns into chunks.
//!
//! Why a type of its own: both response styles need the same bookkeeping —
//! choice indices across a batch of prompts (`prompt * n + index`, as
//! OpenAI numbers them), usage summed over prompts, latency histograms
//! observed as choices finish, the request's log line — and the same
//! cancellation rule: a [`Generation`] owns the engine's `RequestHandle`s,
//! so dropping it (a handler future or an SSE body dropped because the
//! client went away) aborts every engine request it holds.

use fulcrum_engine::{
    ChoiceFinished, EngineHandle, FinishReason, Prompt, RequestEvent, RequestFailure,
    RequestHandle, RequestInput, TokenEvent, TokenLogprobs,
};
use futures_util::stream::{self, BoxStream, SelectAll, StreamExt};

use crate::error::ApiError;
use crate::params::GenerationPlan;
use crate::protocol::Usage;
use crate::request_log::RequestLog;
use crate::state::AppState;

/// What happened next in a generation.
#[derive(Debug)]
pub enum Update {
    /// A token of choice `choice` (already renumbered across prompts).
    Token { choice: usize, token: TokenEvent },
    /// Choice `choice` finished; `finished.text` is its held-back tail.
    Finished {
        choice: usize,
        finished: ChoiceFinished,
    },
    /// Every choice of every prompt finished. The last update.
    Done(Usage),
    /// The request failed (an engine error); the last update.
    Failed(ApiError),
}

pub struct Generation {
    events: SelectAll<BoxStream<'static, (usize, RequestEvent)>>,
    /// Choices per prompt.
    n: usize,
    num_prompts: usize,
    num_prompts_done: usize,
    usage: Usage,
    state: AppState,
    log: RequestLog,
    is_over: bool,
}

impl Generation {
    /// Queues one engine request per prompt of `plan`. A refusal of any
    /// (429 when the queue is full) drops the ones already queued.
    pub fn start(
        state: &AppState,
        engine: &EngineHandle,
        plan: &GenerationPlan,
        mut log: RequestLog,
    ) -> Result<Generation, ApiError> {
        let mut streams = Vec::with_capacity(plan.prompts.len());
        let mut num_prompt_tokens = 0;
        for (i, prompt) in plan.prompts.iter().enumerate() {
            let input = RequestInput {
                prompt: Prompt::Tokens(prompt.token_ids.clone()),
                params: prompt.params.clone(),
                priority: plan.priority,
            };
            let handle = engine
                .add_request(input)
                .map_err(|e| ApiError::from_engine(e, &plan.fields))?;
            num_prompt_tokens += prompt.token_ids.len();
            streams.push(events_of(i, handle));
        }
        log.set_prompt_tokens(num_prompt_tokens);
        Ok(Generation {
            events: stream::select_all(streams),
            n: plan.n,
            num_prompts: plan.prompts.len(),
            num_prompts_done: 0,
            usage: Usage::default(),
            state: state.clone(),
            log,
            is_over: false,
        })
    }

    /// Choices in all (prompts × n).
    pub fn num_choices(&self) -> usize {
        self.num_prompts * self.n
    }

    /// The next update; `None` after `Done` or `Failed`.
    pub async fn next(&mut self) -> Option<Update> {
        while !self.is_over {
            let Some((prompt, event)) = self.events.next().await else {
                // Every stream ends with a terminal event, so this means no
                // prompt at all; report it as done rather than hang.
                return Some(self.done());
            };
            match event {
                RequestEvent::Token(token) => {
                    return Some(Update::Token {
                        choice: prompt * self.n + token.index,
                        token,
                    });
                }
                RequestEvent::Finished(finished) => {
                    if finished.reason != FinishReason::Abort {
                        self.state.metrics().observe_choice(&finished.timings);
                    }
                    self.log.note_finished(&finished);
                    return Some(Update::Finished {
                        choice: prompt * self.n + finished.index,
                        finished,
                    });
                }
                RequestEvent::Done(usage) => {
                    self.usage.prompt_tokens += usage.prompt_tokens;
                    self.usage.completion_tokens += usage.completion_tokens;
                    self.usage.prompt_tokens_details.cached_tokens += usage.cached_tokens;
                    self.num_prompts_done += 1;
                    if self.num_prompts_done == self.num_prompts {
                        return Some(self.done());
                    }
                }
                RequestEvent::Failed(failure) => return Some(self.fail(failure)),
            }
        }
        None
    }

    fn done(&mut self) -> Update {
        self.is_over = true;
        self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
        self.log.succeeded(&self.usage);
        Update::Done(self.usage)
    }

    fn fail(&mut self, failure: RequestFailure) -> Update {
        self.is_over = true;
        // The other prompts' requests are aborted as their streams drop.
        self.events = SelectAll::new();
        let error = ApiError::from_failure(failure);
        self.log.failed(&error);
        Update::Failed(error)
    }

    /// Marks the request as failed after a choice was aborted by the engine
    /// (the server is shutting down): the answer is incomplete.
    pub fn abandon(&mut self, error: &ApiError) {
        self.is_over = true;
        self.events = SelectAll::new();
        self.log.failed(error);
    }

    /// Waits for the whole request (non-streaming responses).
    pub async fn collect(mut self) -> Result<Collected, ApiError> {
        let mut choices: Vec<ChoiceText> = (0..self.num_choices())
            .map(|_| ChoiceText::default())
            .collect();
        loop {
            match self.next().await {
                Some(Update::Token { choice, token }) => {
                    if let Some(c) = choices.get_mut(choice) {
                        c.push_token(&token);
                    }
                }
                Some(Update::Finished { choice, finished }) => {
                    if finished.reason == FinishReason::Abort {
                        let error = ApiError::ShuttingDown;
                        self.abandon(&error);
                        return Err(error);
                    }
                    if let Some(c) = choices.get_mut(choice) {
                        c.push_tail(&finished.text);
                        c.finished = Some(finished);
                    }
                }
                Some(Update::Done(usage)) => return Ok(Collected { choices, usage }),
                Some(Update::Failed(error)) => return Err(error),
                None => {
                    return Err(ApiError::Internal(
                        "the generation ended without a result".into(),
                    ))
                }
            }
        }
    }
}

/// One engine request's events, tagged with its prompt's index; ends after
/// the terminal event (then the handle drops without aborting anything).
fn events_of(prompt: usize, handle: RequestHandle) -> BoxStream<'static, (usize, RequestEvent)> {
    stream::unfold(Some(handle), move |handle| async move {
        let mut handle = handle?;
        match handle.recv().await {
            Some(event) => {
                let next = (!event.is_terminal()).then_some(handle);
                Some(((prompt, event), next))
            }
            None => Some((
                (prompt, RequestEvent::Failed(RequestFailure::EngineStopped)),
                None,
            )),
        }
    })
    .boxed()
}

/// A whole request's result.
#[derive(Debug)]
pub struct Collected {
    /// In choice order.
    pub choices: Vec<ChoiceText>,
    pub usage: Usage,
}

/// One choice's text so far, and its tokens' logprobs with their offsets.
#[derive(Debug, Default)]
pub struct ChoiceText {
    pub text: String,
    num_chars: usize,
    pub logprobs: Vec<TokenLogprob>,
    pub finished: Option<ChoiceFinished>,
}

/// A generated token's logprobs, and where its text starts in the choice.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub token_id: u32,
    /// In characters, as OpenAI's `text_offset`.
    pub text_offset: usize,
    pub logprobs: TokenLogprobs,
}

impl ChoiceText {
    /// Appends a token's text; returns its logprob entry if it has one.
    pub fn push_token(&mut self, token: &TokenEvent) -> Option<&TokenLogprob> {
        let text_offset = self.num_chars;
        self.push_tail(&token.text);
        let logprobs = token.logprobs.clone()?;
        self.logprobs.push(TokenLogprob {
            token_id: token.token_id,
            text_offset,
            logprobs,
        });
        self.logprobs.last()
    }

    /// Appends text released at the end.
    pub fn push_tail(&mut self, text: &str) {
        self.text.push_str(text);
        self.num_chars += text.chars().count();
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.is_over {
            self.log.disconnected();
        }
    }
}
