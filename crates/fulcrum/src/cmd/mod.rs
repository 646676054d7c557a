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
