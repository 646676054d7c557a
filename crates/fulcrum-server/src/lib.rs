//! # fulcrum-server — the OpenAI-compatible HTTP API
//!
//! What users deploy: an axum server on the engine that existing OpenAI,
//! vLLM and llama.cpp clients talk to unchanged, with the Prometheus series
//! operators scrape.
//!
//! Principal types:
//! - [`ServerConfig`]: address, API key, limits, metrics naming.
//! - [`Server`]: a bound listener and its [`AppState`]; `run(shutdown)`
//!   serves until the shutdown future resolves, then drains.
//! - [`AppState`]: what every handler shares. The engine slot is empty while
//!   the model loads (every model endpoint answers 503 then), so the port
//!   is open and `/health` answers from the first second.
//! - [`ApiError`]: the one mapping from every failure to an HTTP status and
//!   OpenAI's error shape.
//!
//! How a generation request flows: the body is parsed into a typed request
//! (`protocol`), checked and turned into token ids and `SamplingParams` at
//! this edge (`params`), handed to the engine as one request per prompt, and
//! the engine's event streams are merged into one [`generation`] that both
//! the non-streaming handlers and the SSE stream ([`sse`]) consume.
//! Dropping that generation (a client that went away, streaming or not)
//! drops the engine's `RequestHandle`s, which aborts the requests: their KV
//! blocks are free at the next step.

pub mod config;
pub mod error;
pub mod generation;
pub mod handlers;
pub mod metrics;
pub mod params;
pub mod protocol;
pub mod request_log;
pub mod server;
pub mod sse;
pub mod state;

mod auth;
mod body;

pub use config::{MetricsCompat, ServerConfig};
pub use error::ApiError;
pub use metrics::Metrics;
pub use server::{run_until_signal, Server};
pub use state::AppState;
