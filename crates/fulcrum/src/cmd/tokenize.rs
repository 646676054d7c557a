//! `fulcrum tokenize --model M [--no-bos] [--no-special] TEXT` prints the ids as
//! a JSON array; `--detokenize` reads a JSON array of ids and prints the text.

use anyhow::{Context, Result};
use clap::Args;
use fulcrum_gguf::GgufFile;
use fulcrum_model::registry::DEFAULT_MODEL;
use fulcrum_model::tokenizer::Tokenizer;

#[derive(Args)]
pub struct TokenizeArgs {
    /// Model alias or path to a .gguf file.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    model: String,
    /// Do not add the BOS token even if the model asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Treat special-token text such as `<|im_start|>` as plain text.
    #[arg(long)]
    no_special: bool,
    /// Read a JSON array of ids and print the text instead.
    #[arg(long)]
    detokenize: bool,
    /// The text (or, with --detokenize, the JSON array). Read from stdin when absent.
    input: Option<String>,
}

pub fn run(a: TokenizeArgs) -> Result<()> {
    let path = super::resolve_model(&a.model)?;
    let file = GgufFile::open(&path)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let input = match a.input {
        Some(s) => s,
        None => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
    };
    if a.detokenize {
        let ids: Vec<u32> = serde_json::from_str(input.trim())
            .context("--detokenize expects a JSON array of token ids")?;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= tok.vocab_size()) {
            anyhow::bail!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                tok.vocab_size()
            );
        }
        println!("{}", tok.decode(&ids, false));
    } else {
        let ids = tok.encode(&input, !a.no_bos, !a.no_special);
        println!("{}", serde_json::to_string(&ids)?);
    }
    Ok(())
}
