//! `fulcrum generate`: one prompt through the engine, its text streamed to
//! stdout as it is generated (`--json`: one object with ids, text, finish
//! reason, speed and, with `--top-logprobs N`, the alternatives at every
//! position — what scripts and comparisons need). With `--prompts FILE.jsonl`
//! it is the offline throughput mode instead (see `offline`).
//!
//! Sampling defaults to greedy so that a bare `fulcrum generate` is
//! reproducible and comparable with llama.cpp's greedy output.

mod offline;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use fulcrum_engine::sampler::MAX_LOGPROBS;
use fulcrum_engine::{
    Engine, EngineHandle, EngineOptions, Prompt, RequestEvent, RequestInput, SamplingParams,
    SequenceTimings, TokenLogprobs,
};
use fulcrum_model::chat::ChatMessage;
use fulcrum_model::registry::DEFAULT_MODEL;
use fulcrum_model::Numerics;
use serde_json::json;

use super::engine_args::{resolve, EngineArgs, SamplingArgs};

const DEFAULT_MAX_TOKENS: usize = 256;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model alias or path to a .gguf file.
    #[arg(long, short, default_value = DEFAULT_MODEL, env = "FULCRUM_MODEL")]
    model: String,
    /// The prompt. Read from stdin when absent (one trailing newline is dropped).
    #[arg(long, short)]
    prompt: Option<String>,
    /// Apply the model's chat template: the prompt is the user's message.
    #[arg(long)]
    chat: bool,
    /// With --chat: a system message.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Print prompt tokens, prefill and decode speed and time to first token to stderr.
    #[arg(long)]
    stats: bool,
    /// Print one JSON object instead of streaming text (with --prompts: a summary).
    #[arg(long)]
    json: bool,
    /// With --json or --prompts: the N most likely tokens at every generated position.
    #[arg(long, value_name = "N")]
    top_logprobs: Option<usize>,
    /// Offline mode: run every prompt of a JSONL file at once, one `{"prompt": …}` or
    /// `{"prompt_ids": […]}` per line, with optional per-line sampling fields.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "prompt")]
    prompts: Option<PathBuf>,
    /// Offline mode: where to write one result line per prompt [default: stdout].
    #[arg(long, value_name = "FILE.jsonl", requires = "prompts")]
    out: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    // Warnings only by default: stdout carries the results, stderr the progress bar.
    super::init_logging("warn");
    let defaults = SamplingParams {
        max_tokens: Some(DEFAULT_MAX_TOKENS),
        ..SamplingParams::greedy()
    };
    let mut params = args.sampling.to_params(defaults)?;
    if let Some(n) = args.top_logprobs {
        if n > MAX_LOGPROBS {
            bail!("`--top-logprobs` must be in [0, {MAX_LOGPROBS}], got {n}");
        }
        if !args.json && args.prompts.is_none() {
            bail!("`--top-logprobs` needs `--json` (or `--prompts`)");
        }
        params.logprobs = Some(n);
    }
    if let Some(path) = &args.prompts {
        return offline::run(&args, params, path);
    }
    let text = match &args.prompt {
        Some(p) => p.clone(),
        None => read_stdin_prompt()?,
    };
    if text.is_empty() && !args.chat {
        bail!("the prompt is empty");
    }
    let engine = start_engine(
        &args.model,
        args.engine.numerics,
        &single_stream(&args.engine),
    )?;
    let prompt = if args.chat {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system.as_str()));
        }
        messages.push(ChatMessage::new("user", text));
        Prompt::Tokens(engine.chat_prompt(&messages)?)
    } else {
        Prompt::Text(text)
    };
    let result = generate_one(&engine, prompt, params, &args);
    engine.shutdown(Duration::ZERO);
    result
}

/// Loads the model and starts an engine with the knobs given.
pub(crate) fn start_engine(
    model: &str,
    numerics: Numerics,
    options: &EngineOptions,
) -> Result<EngineHandle> {
    let model = Arc::new(super::load_model(model, numerics)?);
    let config = resolve(options, &model.config)?;
    tracing::debug!("engine: {config}");
    Ok(Engine::start(model, config)?)
}

/// The knobs for one request at a time: a batch of one, so the default KV
/// cache is one context rather than a share of the machine's memory.
pub(crate) fn single_stream(engine_args: &EngineArgs) -> EngineOptions {
    EngineOptions {
        max_num_seqs: 1,
        ..engine_args.to_options()
    }
}

fn read_stdin_prompt() -> Result<String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("(reading the prompt from stdin; end it with Ctrl-D)");
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("reading the prompt from stdin")?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

fn generate_one(
    engine: &EngineHandle,
    prompt: Prompt,
    params: SamplingParams,
    args: &GenerateArgs,
) -> Result<()> {
    let mut handle = engine.add_request(RequestInput::new(prompt, params))?;
    let prompt_ids = handle.prompt_token_ids().to_vec();
    let mut stdout = std::io::stdout().lock();
    let mut text = String::new();
    let mut logprobs: Vec<TokenLogprobs> = Vec::new();
    let mut finished = None;
    while let Some(event) = handle.blocking_recv() {
        let piece = match event {
            RequestEvent::Token(t) => {
                logprobs.extend(t.logprobs);
                t.text
            }
            RequestEvent::Finished(f) => {
                let tail = f.text.clone();
                finished = Some(f);
                tail
            }
            RequestEvent::Done(_) => break,
            RequestEvent::Failed(e) => bail!("generation failed: {e}"),
        };
        if !args.json && !piece.is_empty() {
            stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing to stdout")?;
        }
        text.push_str(&piece);
    }
    let Some(finished) = finished else {
        bail!("the engine stopped before the request finished")
    };
    let speed = Speed::of(
        &finished.timings,
        prompt_ids.len() - finished.num_cached_tokens,
    );
    if args.json {
        let mut object = json!({
            "prompt_ids": prompt_ids,
            "output_ids": finished.output_token_ids,
            "text": text,
            "finish_reason": finished.reason.as_openai_str(),
            "prompt_tokens": prompt_ids.len(),
            "output_tokens": finished.output_token_ids.len(),
            "prefill_tokens_per_s": speed.prefill_tokens_per_s,
            "decode_tokens_per_s": speed.decode_tokens_per_s,
            "ttft_ms": speed.ttft_ms,
        });
        if args.top_logprobs.is_some() {
            object["top_logprobs"] = top_logprobs_json(&logprobs);
        }
        writeln!(stdout, "{object}")?;
    } else {
        writeln!(stdout)?;
    }
    if args.stats {
        eprintln!(
            "prompt tokens {}, output tokens {}, prefill {} tok/s, decode {} tok/s, TTFT {} ms ({})",
            prompt_ids.len(),
            finished.output_token_ids.len(),
            fmt_opt(speed.prefill_tokens_per_s),
            fmt_opt(speed.decode_tokens_per_s),
            fmt_opt(speed.ttft_ms),
            finished.reason.as_openai_str(),
        );
    }
    Ok(())
}

/// `[[{"id", "logprob"}, …] per position]`, most likely first.
pub(crate) fn top_logprobs_json(logprobs: &[TokenLogprobs]) -> serde_json::Value {
    logprobs
        .iter()
        .map(|l| {
            l.top
                .iter()
                .map(|&(id, logprob)| json!({ "id": id, "logprob": logprob }))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .into()
}

fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

/// Single-request speed from its timings.
pub(crate) struct Speed {
    /// Prompt tokens computed per second, first scheduled → first token.
    pub prefill_tokens_per_s: Option<f64>,
    /// Tokens after the first per second, first → last token.
    pub decode_tokens_per_s: Option<f64>,
    pub ttft_ms: Option<f64>,
}

impl Speed {
    pub(crate) fn of(timings: &SequenceTimings, num_prefilled_tokens: usize) -> Speed {
        let per_s =
            |n: usize, d: Duration| (d > Duration::ZERO).then(|| n as f64 / d.as_secs_f64());
        let prefill = match (timings.first_scheduled, timings.first_token()) {
            (Some(start), Some(first)) => {
                per_s(num_prefilled_tokens, first.saturating_duration_since(start))
            }
            _ => None,
        };
        let decode = match (timings.token_times.first(), timings.token_times.last()) {
            (Some(&first), Some(&last)) if timings.token_times.len() > 1 => per_s(
                timings.token_times.len() - 1,
                last.saturating_duration_since(first),
            ),
            _ => None,
        };
        Speed {
            prefill_tokens_per_s: prefill,
            decode_tokens_per_s: decode,
            ttft_ms: timings.ttft().map(ms),
        }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
