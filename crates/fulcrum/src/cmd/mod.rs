//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod engine_args;
pub mod generate;
pub mod models;
pub mod roofline;
pub mod serve;
pub mod tokenize;

use std::path::PathBuf;

/// Log lines on stderr filtered by `RUST_LOG`, or by `default` when it is
/// unset (e.g. `RUST_LOG=fulcrum::steps=trace` prints every engine step).
pub fn init_logging(default: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Resolves `--model` (alias or path), pulling an alias on first use with
/// progress lines on stderr.
pub fn resolve_model(model: &str) -> anyhow::Result<PathBuf> {
    Ok(fulcrum_model::registry::resolve(model, &mut |line| {
        eprintln!("{line}")
    })?)
}

/// Loads a model by alias or path.
pub fn load_model(
    model: &str,
    numerics: fulcrum_model::Numerics,
) -> anyhow::Result<fulcrum_model::Model> {
    let path = resolve_model(model)?;
    fulcrum_model::Model::load_with(&path, numerics)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
}
