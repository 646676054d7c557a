//! The one error type of the library. Each variant names what the user can
//! fix (the flag, the file and line, the URL), so the CLI prints it as is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A configuration value that cannot work, named by its flag.
    #[error("invalid {flag}: {reason}")]
    InvalidConfig { flag: &'static str, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A dataset line that is neither a prompt nor a conversation.
    #[error("{}:{line}: {reason}", path.display())]
    Dataset {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("tokenizer of {}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    /// The server could not be asked something the run needs before it starts.
    #[error("{url}: {message}")]
    Server { url: String, message: String },
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The engine could not be configured or started for a configuration.
    #[error("configuration `{label}`: {message}")]
    Engine { label: String, message: String },
    #[error("drawing {}: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

impl BenchError {
    pub(crate) fn config(flag: &'static str, reason: impl Into<String>) -> BenchError {
        BenchError::InvalidConfig {
            flag,
            reason: reason.into(),
        }
    }
}
