//! `fulcrum models list | pull ALIAS | path ALIAS`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use fulcrum_model::registry::{self, ALIASES};

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Known aliases and whether each is cached.
    List,
    /// Fetch a model into the cache (`$FULCRUM_HOME`, default ~/.cache/fulcrum).
    Pull { alias: String },
    /// Print the cached file's path (pulling it first if needed); a GGUF
    /// file's path is printed as given.
    Path { alias: String },
}

pub fn run(args: ModelsArgs) -> Result<()> {
    match args.action {
        Action::List => {
            println!("{:<14} {:<8} DESCRIPTION", "ALIAS", "CACHED");
            for a in ALIASES {
                let cached = if registry::cached(a).is_some() {
                    "yes"
                } else {
                    "no"
                };
                let default = if a.alias == registry::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!("{:<14} {:<8} {}{default}", a.alias, cached, a.description);
            }
            println!(
                "cache: {}",
                registry::fulcrum_home().join("models").display()
            );
            Ok(())
        }
        Action::Pull { alias } => {
            let Some(spec) = registry::find_alias(&alias) else {
                bail!("unknown model alias `{alias}` (try `fulcrum models list`)");
            };
            let path = registry::pull(spec, &mut |line| eprintln!("{line}"))?;
            println!("{}", path.display());
            Ok(())
        }
        Action::Path { alias } => {
            // A GGUF path is printed as given, so scripts take either.
            if registry::find_alias(&alias).is_none() && !std::path::Path::new(&alias).is_file() {
                bail!("unknown model alias `{alias}` and no such file (try `fulcrum models list`)");
            }
            println!("{}", super::resolve_model(&alias)?.display());
            Ok(())
        }
    }
}
