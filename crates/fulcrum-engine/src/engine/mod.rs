//! The engine: the step loop on its own thread, and the handles that talk to
//! it.
//!
//! Principal types:
//! - [`Engine::start`] → [`EngineHandle`] (cheap to clone, `Send + Sync`):
//!   `add_request`, `abort`, `metrics`, `shutdown`.
//! - [`RequestHandle`]: one request's event stream ([`RequestEvent`]),
//!   awaited with `recv().await` from async code or `blocking_recv()` from
//!   a plain thread; dropping it aborts the request.
//! - [`EngineConfig`] (from [`EngineOptions`]), [`EngineMetrics`],
//!   [`StepRunner`] / [`ModelRunner`].
//!
//! Why a dedicated thread with channels: a step is CPU-bound work on the
//! worker pool that must never block an async runtime, and the scheduler is
//! synchronous by design. Requests go in over a `std` channel the loop
//! blocks on when idle (no spinning); events come out over per-request
//! `tokio` unbounded channels, which a sync thread can feed without a
//! runtime and an axum handler can await. Unbounded is safe here: each
//! stream is bounded by the request's `max_tokens`, and a reader that goes
//! away aborts the request at the next step.
//!
//! Validation happens in `add_request`, on the caller's thread: the prompt is
//! tokenized and checked there, so a refusal is an immediate typed error
//! (the server's 400/429/503), and the loop only ever sees valid requests.

mod metrics;
mod options;
mod request;
mod runner;
mod step_loop;
mod text;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fulcrum_model::chat::ChatMessage;
use fulcrum_model::Model;
use tokio::sync::mpsc as events;

pub use metrics::{EngineMetrics, FinishCounts, StepMetrics};
pub use options::{
    available_memory_bytes, format_bytes, EngineConfig, EngineConfigError, EngineOptions,
    KvCacheSize, DEFAULT_BLOCK_SIZE, DEFAULT_KV_CACHE_FRACTION, DEFAULT_KV_CACHE_MAX_BYTES,
    DEFAULT_MAX_BATCHED_TOKENS, DEFAULT_MAX_MODEL_LEN_CAP, DEFAULT_MAX_NUM_SEQS,
};
pub use request::{
    ChoiceFinished, ChoiceOutput, EngineError, Prompt, RequestEvent, RequestFailure, RequestId,
    RequestInput, RequestOutput, StopReason, TokenEvent, TokenLogprobs, Usage,
};
pub use runner::{split, ModelRunner, StepRunner};

use request::OutputCollector;
use step_loop::{Command, NewRequest, StepLoop};

/// Failure to start the engine thread.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the engine configuration does not fit the scheduler: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("spawning the engine thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Starts engines.
pub struct Engine;

impl Engine {
    /// Allocates the KV cache, starts the worker pool and the step loop.
    pub fn start(model: Arc<Model>, config: EngineConfig) -> Result<EngineHandle, StartError> {
        config.scheduler.validate()?;
        let runner = ModelRunner::new(model.clone(), &config);
        Self::start_with_runner(model, config, Box::new(runner))
    }

    /// As `start`, with another forward-pass strategy (or a test double).
    /// The runner's KV cache must have `config.scheduler.num_blocks` blocks
    /// of `block_size` tokens.
    pub fn start_with_runner(
        model: Arc<Model>,
        config: EngineConfig,
        runner: Box<dyn StepRunner>,
    ) -> Result<EngineHandle, StartError> {
        config.scheduler.validate()?;
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::channel();
        let step_loop = StepLoop::new(
            model.clone(),
            config.clone(),
            runner,
            receiver,
            shared.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name("fulcrum-engine".into())
            .spawn(move || step_loop.run())?;
        Ok(EngineHandle {
            inner: Arc::new(Inner {
                model,
                config,
                commands,
                shared,
                next_request_id: AtomicU64::new(1),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

/// State the handles and the loop share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) metrics: Mutex<EngineMetrics>,
    /// Requests accepted by `add_request` and not yet scheduled.
    pub(crate) num_queued: AtomicUsize,
    pub(crate) is_shutting_down: AtomicBool,
}

struct Inner {
    model: Arc<Model>,
    config: EngineConfig,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    next_request_id: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The engine, as callers see it. Cheap to clone; the step loop ends on
/// `shutdown`, or once every handle (engine and request) is gone.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl EngineHandle {
    pub fn model(&self) -> &Arc<Model> {
        &self.inner.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// A snapshot of the gauges and counters, as of the last step.
    pub fn metrics(&self) -> EngineMetrics {
        self.inner
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shared.is_shutting_down.load(Ordering::Acquire)
    }

    /// Token ids of a conversation rendered with the model's chat template
    /// (ending with the opening of an assistant turn), for `Prompt::Tokens`.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, EngineError> {
        let text = self
            .inner
            .model
            .chat_template
            .render(messages, true)
            .map_err(|e| EngineError::ChatTemplate(e.to_string()))?;
        Ok(self.inner.model.tokenizer.encode(&text, false, true))
    }

    /// The prompt's token ids, as `add_request` would compute them.
    pub fn tokenize(&self, prompt: &Prompt) -> Vec<u32> {
        match prompt {
            Prompt::Text(text) => self.inner.model.tokenizer.encode(text, true, true),
            Prompt::Tokens(ids) => ids.clone(),
        }
    }

    /// Validates and queues a request. Never blocks on the engine.
    pub fn add_request(&self, input: RequestInput) -> Result<RequestHandle, EngineError> {
        let arrival = Instant::now();
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        input.params.validate()?;
        let prompt = self.tokenize(&input.prompt);
        let max_tokens = self.check_prompt(&prompt, input.params.max_tokens)?;
        let shared = &self.inner.shared;
        let max_waiting = self.inner.config.max_waiting;
        if shared.num_queued.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            shared.num_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::QueueFull { max_waiting });
        }
        let id = RequestId(self.inner.next_request_id.fetch_add(1, Ordering::Relaxed));
        let (sender, receiver) = events::unbounded_channel();
        let commands = self.inner.commands.clone();
        let prompt_token_ids: Arc<[u32]> = prompt.into();
        let request = NewRequest {
            id,
            prompt: prompt_token_ids.clone(),
            params: input.params,
            max_tokens,
            priority: input.priority,
            arrival,
            events: sender,
        };
        if commands.send(Command::Add(Box::new(request))).is_err() {
            shared.num_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::ShuttingDown);
        }
        Ok(RequestHandle {
            id,
            prompt_token_ids,
            events: receiver,
            commands,
            is_done: false,
            collector: None,
        })
    }

    /// Checks the prompt against the vocabulary and `max_model_len`; returns
    /// the resolved `max_tokens`.
    fn check_prompt(
        &self,
        prompt: &[u32],
        max_tokens: Option<usize>,
    ) -> Result<usize, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let vocab_size = self.inner.model.config.vocab_size;
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(EngineError::TokenOutOfRange { id, vocab_size });
        }
        let max_model_len = self.inner.config.max_model_len();
        let room = max_model_len.saturating_sub(prompt.len());
        match max_tokens {
            Some(m) if m <= room => Ok(m),
            None if room > 0 => Ok(room),
            _ => Err(EngineError::ContextLengthExceeded {
                num_prompt_tokens: prompt.len(),
                max_tokens,
                max_model_len,
            }),
        }
    }

    /// Aborts a request (a no-op if it already finished). Its blocks are
    /// freed at the next step.
    pub fn abort(&self, id: RequestId) {
        let _ = self.inner.commands.send(Command::Abort(id));
    }

    /// Stops accepting requests, lets the ones in flight finish for up to
    /// `timeout`, aborts the rest, and waits for the loop to end. Returns the
    /// final metrics. Blocking: call it from a plain thread (or
    /// `spawn_blocking`). Later calls return at once.
    pub fn shutdown(&self, timeout: Duration) -> EngineMetrics {
        self.inner
            .shared
            .is_shutting_down
            .store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        let _ = self.inner.commands.send(Command::Shutdown { deadline });
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the engine thread panicked outside a step");
            }
        }
        self.metrics()
    }
}

/// One request's event stream. Dropping it before the terminal event aborts
/// the request.
pub struct RequestHandle {
    id: RequestId,
    prompt_token_ids: Arc<[u32]>,
    events: events::UnboundedReceiver<RequestEvent>,
    commands: mpsc::Sender<Command>,
    is_done: bool,
    collector: Option<OutputCollector>,
}

impl RequestHandle {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The prompt as the engine runs it.
    pub fn prompt_token_ids(&self) -> &[u32] {
        &self.prompt_token_ids
    }

    /// The next event; `None` after the terminal one (or if the engine
    /// stopped).
    pub async fn recv(&mut self) -> Option<RequestEvent> {
        let event = self.events.recv().await;
        self.observe(event)
    }

    /// As `recv`, blocking the thread. Panics if called inside an async
    /// runtime (tokio's rule); use `recv().await` there.
    pub fn blocking_recv(&mut self) -> Option<RequestEvent> {
        let event = self.events.blocking_recv();
        self.observe(event)
    }

    /// Aborts the request; the stream then ends with the choices finished
    /// as `abort`.
    pub fn abort(&self) {
        let _ = self.commands.send(Command::Abort(self.id));
    }

    /// Waits for the whole request and folds its events.
    pub async fn collect(mut self) -> Result<RequestOutput, RequestFailure> {
        loop {
            let event = self.recv().await;
            if let Some(result) = self.fold(event) {
                return result;
            }
        }
    }

    /// As `collect`, blocking the thread.
    pub fn blocking_collect(mut self) -> Result<RequestOutput, RequestFailure> {
        loop {
            let event = self.blocking_recv();
            if let Some(result) = self.fold(event) {
                return result;
            }
        }
    }

    fn fold(
        &mut self,
        event: Option<RequestEvent>,
    ) -> Option<Result<RequestOutput, RequestFailure>> {
        let Some(event) = event else {
            return Some(Err(RequestFailure::EngineStopped));
        };
        let collector = self.collector.get_or_insert_with(OutputCollector::default);
        collector.push(event, &self.prompt_token_ids)
    }

    fn observe(&mut self, event: Option<RequestEvent>) -> Option<RequestEvent> {
        match &event {
            Some(e) if e.is_terminal() => self.is_done = true,
            None => self.is_done = true,
            Some(_) => {}
        }
        event
    }
}

impl std::fmt::Debug for RequestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandle")
            .field("id", &self.id)
            .field("num_prompt_tokens", &self.prompt_token_ids.len())
            .field("is_done", &self.is_done)
            .finish()
    }
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("model", &self.inner.model.name)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        if !self.is_done {
            self.abort();
        }
    }
}
