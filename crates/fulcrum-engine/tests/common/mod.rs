//! Shared by the engine's end-to-end tests: the real SmolLM2 (loaded once
//! per test binary), configs, a scripted runner, and run helpers.

#![allow(dead_code)]

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fulcrum_engine::engine::StepRunner;
use fulcrum_engine::{
    EngineConfig, EngineHandle, EngineOptions, KvCacheSize, Prompt, RequestInput, RequestOutput,
    SamplingParams,
};
use fulcrum_model::{ForwardError, Model, SeqInput};

pub fn smollm2() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = fulcrum_model::registry::test_model_path("smollm2-135m");
            Arc::new(Model::load(&path).expect("loading SmolLM2"))
        })
        .clone()
}

/// Options with a KV cache of `kv_tokens` tokens and 2 threads.
pub fn options(kv_tokens: usize, max_model_len: usize) -> EngineOptions {
    EngineOptions {
        kv_cache: Some(KvCacheSize::Tokens(kv_tokens)),
        max_model_len: Some(max_model_len),
        threads: Some(2),
        ..EngineOptions::default()
    }
}

pub fn resolve(model: &Model, options: &EngineOptions) -> EngineConfig {
    EngineConfig::resolve(options, &model.config).expect("valid test config")
}

pub fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens: Some(max_tokens),
        ..SamplingParams::greedy()
    }
}

pub fn text_request(prompt: &str, params: SamplingParams) -> RequestInput {
    RequestInput::new(Prompt::Text(prompt.to_string()), params)
}

/// Submits every input at once, then waits for all of them.
pub fn run_all(engine: &EngineHandle, inputs: &[RequestInput]) -> Vec<RequestOutput> {
    let handles: Vec<_> = inputs
        .iter()
        .map(|i| engine.add_request(i.clone()).expect("accepted"))
        .collect();
    handles
        .into_iter()
        .map(|h| h.blocking_collect().expect("completed"))
        .collect()
}

/// Another runner (the real forward pass), held in its first call until the
/// test releases it. A test that needs a fixed schedule submits one request,
/// waits until the first step has entered (`entered`), queues the rest and
/// releases: the first step then always holds exactly the first request,
/// however the threads happen to be scheduled.
pub struct GatedRunner<R: StepRunner> {
    pub inner: R,
    /// `(entered, release)`, taken by the first call.
    pub gate: Option<(Sender<()>, Receiver<()>)>,
}

impl<R: StepRunner> StepRunner for GatedRunner<R> {
    fn forward(&mut self, seqs: &[SeqInput<'_>]) -> Result<&[f32], ForwardError> {
        if let Some((entered, release)) = self.gate.take() {
            let _ = entered.send(());
            let _ = release.recv();
        }
        self.inner.forward(seqs)
    }
}

/// A stand-in for the forward pass: the next token is a fixed function of
/// the sequence's last token and length (always a plain text token of
/// SmolLM2's vocabulary), so outputs are known without a model. It can fail
/// on a chosen call, hold each call until released, or sleep.
pub struct ScriptedRunner {
    vocab: usize,
    logits: Vec<f32>,
    num_calls: usize,
    pub panic_on_call: Option<usize>,
    pub delay: Duration,
    /// `(entered, release)`: announce each call, then wait for a release.
    pub gate: Option<(Sender<()>, Receiver<()>)>,
}

impl ScriptedRunner {
    pub fn new(vocab: usize) -> Self {
        ScriptedRunner {
            vocab,
            logits: Vec::new(),
            num_calls: 0,
            panic_on_call: None,
            delay: Duration::ZERO,
            gate: None,
        }
    }

    pub fn next_token(last: u32, num_tokens: usize) -> u32 {
        200 + ((last as usize * 31 + num_tokens * 7) % 2000) as u32
    }
}

impl StepRunner for ScriptedRunner {
    fn forward(&mut self, seqs: &[SeqInput<'_>]) -> Result<&[f32], ForwardError> {
        self.num_calls += 1;
        if let Some((entered, release)) = &self.gate {
            let _ = entered.send(());
            let _ = release.recv();
        }
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.panic_on_call == Some(self.num_calls) {
            panic!("injected fault in call {}", self.num_calls);
        }
        let rows: Vec<&SeqInput> = seqs.iter().filter(|s| s.wants_logits).collect();
        self.logits.clear();
        self.logits.resize(rows.len() * self.vocab, 0.0);
        for (r, s) in rows.iter().enumerate() {
            let last = *s.tokens.last().expect("non-empty step");
            let next = Self::next_token(last, s.num_computed_tokens + s.tokens.len()) as usize;
            let row = &mut self.logits[r * self.vocab..][..self.vocab];
            row[next] = 10.0;
            row[next + 1] = 8.0;
        }
        Ok(&self.logits)
    }
}
