//! `fulcrum chat`: a conversation in the terminal on the default model.
//!
//! Each line read from stdin is a user turn; the whole conversation is
//! rendered with the model's chat template and the reply streams to stdout.
//! `/reset` starts over, `/exit` (or end of input) quits. It works the same
//! when stdin is a pipe (no prompt is drawn then), so scripts and tests can
//! drive it. The prefix cache makes each turn cheap: the conversation so far
//! is mostly served from cached blocks.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use fulcrum_engine::{
    EngineError, EngineHandle, Prompt, RequestEvent, RequestInput, SamplingParams,
};
use fulcrum_model::chat::ChatMessage;
use fulcrum_model::registry::DEFAULT_MODEL;

use super::engine_args::{EngineArgs, SamplingArgs};
use super::generate::{single_stream, start_engine};

const DEFAULT_MAX_TOKENS: usize = 512;

#[derive(Args)]
pub struct ChatArgs {
    /// Model alias or path to a .gguf file.
    #[arg(long, short, default_value = DEFAULT_MODEL, env = "FULCRUM_MODEL")]
    model: String,
    /// A system message that starts the conversation (kept across /reset).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let defaults = SamplingParams {
        temperature: 0.6,
        top_p: 0.9,
        max_tokens: Some(DEFAULT_MAX_TOKENS),
        ..SamplingParams::default()
    };
    let params = args.sampling.to_params(defaults)?;
    let engine = start_engine(
        &args.model,
        args.engine.numerics,
        &single_stream(&args.engine),
    )?;
    let result = converse(&engine, &args, params);
    engine.shutdown(Duration::ZERO);
    result
}

fn converse(engine: &EngineHandle, args: &ChatArgs, params: SamplingParams) -> Result<()> {
    let is_interactive = std::io::stdin().is_terminal();
    let start: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s.as_str()))
        .collect();
    let mut messages = start.clone();
    if is_interactive {
        eprintln!(
            "fulcrum chat with {} — /reset starts over, /exit quits",
            engine.model().name
        );
    }
    let mut stdout = std::io::stdout().lock();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if is_interactive {
            write!(stdout, "> ").and_then(|()| stdout.flush())?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = start.clone();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new("user", line.trim()));
        match reply(engine, &messages, &params, &mut stdout) {
            Ok(text) => messages.push(ChatMessage::new("assistant", text)),
            Err(Refused(EngineError::ContextLengthExceeded { max_model_len, .. })) => {
                messages.pop();
                eprintln!("(the conversation no longer fits the {max_model_len}-token context: /reset to start over)");
            }
            Err(Refused(e)) => bail!(e),
            Err(Failed(e)) => return Err(e),
        }
    }
    Ok(())
}

enum ReplyError {
    /// The engine refused the turn (it stays out of the conversation).
    Refused(EngineError),
    Failed(anyhow::Error),
}
use ReplyError::{Failed, Refused};

/// Streams the assistant's reply to `out` and returns its text.
fn reply(
    engine: &EngineHandle,
    messages: &[ChatMessage],
    params: &SamplingParams,
    out: &mut impl Write,
) -> Result<String, ReplyError> {
    let prompt = engine.chat_prompt(messages).map_err(Refused)?;
    let room = engine.config().max_model_len().saturating_sub(prompt.len());
    let max_tokens = params.max_tokens.map_or(room, |m| m.min(room)).max(1);
    let params = SamplingParams {
        max_tokens: Some(max_tokens),
        ..params.clone()
    };
    let mut handle = engine
        .add_request(RequestInput::new(Prompt::Tokens(prompt), params))
        .map_err(Refused)?;
    let mut text = String::new();
    let write = |out: &mut dyn Write, piece: &str| {
        out.write_all(piece.as_bytes()).and_then(|()| out.flush())
    };
    while let Some(event) = handle.blocking_recv() {
        let piece = match event {
            RequestEvent::Token(t) => t.text,
            RequestEvent::Finished(f) => f.text,
            RequestEvent::Done(_) => break,
            RequestEvent::Failed(e) => {
                return Err(Failed(anyhow::anyhow!("generation failed: {e}")))
            }
        };
        write(out, &piece).map_err(|e| Failed(e.into()))?;
        text.push_str(&piece);
    }
    writeln!(out).map_err(|e| Failed(e.into()))?;
    Ok(text.trim().to_string())
}
