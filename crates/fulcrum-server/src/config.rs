//! [`ServerConfig`]: the server's own knobs (the engine's live in
//! `EngineOptions`). Plain data; the CLI fills it from flags.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Default request body limit: a prompt at the longest default context
/// (8192 tokens) as JSON token ids is under 100 KiB; 2 MiB leaves room for
/// long chat histories while bounding what one connection can make us buffer.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 20;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Which metric names `/metrics` exports besides fulcrum's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsCompat {
    #[default]
    None,
    /// Also vLLM's `vllm:*` series, so its dashboards and KV-aware routers work.
    Vllm,
}

impl FromStr for MetricsCompat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(MetricsCompat::None),
            "vllm" => Ok(MetricsCompat::Vllm),
            other => Err(format!(
                "unknown metrics compatibility `{other}`: expected `none` or `vllm`"
            )),
        }
    }
}

impl fmt::Display for MetricsCompat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsCompat::None => "none",
            MetricsCompat::Vllm => "vllm",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Names clients may send as `model`; the first is the one `/v1/models`
    /// lists. The model's own name (GGUF `general.name`) is always accepted.
    pub served_model_names: Vec<String>,
    /// Required as `Authorization: Bearer …` on `/v1/*` when set.
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// Most tokens one completion may ask for (beyond the context check).
    pub max_tokens_limit: Option<usize>,
    /// How long in-flight requests may run on after a shutdown signal.
    pub shutdown_timeout: Duration,
    pub metrics_compat: MetricsCompat,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            served_model_names: Vec::new(),
            api_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_tokens_limit: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            metrics_compat: MetricsCompat::None,
        }
    }
}
