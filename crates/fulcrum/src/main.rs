//! `fulcrum` — the command-line interface. Each subcommand lives in its own
//! module under `cmd/`; this file only parses and dispatches.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fulcrum",
    version,
    about = "An LLM inference server: continuous batching, paged KV cache, chunked prefill, measured trade-offs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage models: list aliases, pull, print a cached file's path.
    Models(cmd::models::ModelsArgs),
    /// Tokenize text (or detokenize ids) with a model's tokenizer.
    Tokenize(cmd::tokenize::TokenizeArgs),
    /// Generate text from a prompt (or, with --prompts, from a file of prompts at once).
    Generate(cmd::generate::GenerateArgs),
    /// Chat with a model in the terminal.
    Chat(cmd::chat::ChatArgs),
    /// Serve the OpenAI-compatible HTTP API (completions, chat, streaming, metrics).
    Serve(cmd::serve::ServeArgs),
    /// Measure throughput and latency: load-test a server, sweep engine knobs.
    Bench(cmd::bench::BenchArgs),
    /// Find the engine knobs with the best goodput under a latency SLO; print the `fulcrum serve` line.
    Tune(cmd::bench::tune::TuneArgs),
    /// Measure this machine's memory bandwidth and peak int8/f32 throughput.
    Roofline(cmd::roofline::RooflineArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models(a) => cmd::models::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Tune(a) => cmd::bench::tune::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Roofline(a) => cmd::roofline::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
