//! `fulcrum serve`: the OpenAI-compatible HTTP server (`fulcrum-server`) on
//! an engine configured by the shared engine flags.
//!
//! The port is bound first and the model loaded afterwards, so a port
//! conflict fails at once and `/health` answers 503 (not "connection
//! refused") while a first run pulls the model. The start-up summary
//! (model, KV capacity, policy, ISA) is logged once the engine runs.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use fulcrum_engine::{Engine, EngineHandle, EngineOptions};
use fulcrum_kernels::Isa;
use fulcrum_model::registry::DEFAULT_MODEL;
use fulcrum_server::config::{DEFAULT_MAX_BODY_BYTES, DEFAULT_SHUTDOWN_TIMEOUT};
use fulcrum_server::{MetricsCompat, ServerConfig};

use super::engine_args::{resolve, EngineArgs};

#[derive(Args)]
pub struct ServeArgs {
    /// Model alias or path to a .gguf file.
    #[arg(long, short, default_value = DEFAULT_MODEL, env = "FULCRUM_MODEL")]
    model: String,
    /// Name clients send as `model` and `/v1/models` lists (repeatable, or comma-separated)
    /// [default: --model as given].
    /// The model's own name (GGUF general.name) is accepted too.
    #[arg(long, env = "FULCRUM_SERVED_MODEL_NAME", value_delimiter = ',')]
    served_model_name: Vec<String>,
    /// Address to bind; 0.0.0.0 exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1", env = "FULCRUM_HOST")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000, env = "FULCRUM_PORT")]
    port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/* (/health and /metrics stay open).
    #[arg(long, env = "FULCRUM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body accepted (413 beyond).
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, env = "FULCRUM_MAX_BODY_BYTES")]
    max_body_bytes: usize,
    /// Most tokens one completion may request (400 beyond) [default: the room left in the context].
    #[arg(long, env = "FULCRUM_MAX_TOKENS_LIMIT")]
    max_tokens_limit: Option<usize>,
    /// Seconds in-flight requests may run on after SIGINT/SIGTERM before they are aborted.
    #[arg(long, default_value_t = DEFAULT_SHUTDOWN_TIMEOUT.as_secs_f64(), env = "FULCRUM_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: f64,
    /// Also export vLLM's metric names (`vllm`), for its dashboards and routers.
    #[arg(long, default_value = "none", env = "FULCRUM_METRICS_COMPAT")]
    metrics_compat: MetricsCompat,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    super::init_logging("info");
    let addr = socket_addr(&args.host, args.port)?;
    if !(args.shutdown_timeout.is_finite() && args.shutdown_timeout >= 0.0) {
        return Err(anyhow!(
            "`--shutdown-timeout` must be a number of seconds >= 0, got {}",
            args.shutdown_timeout
        ));
    }
    let served_model_names = if args.served_model_name.is_empty() {
        vec![args.model.clone()]
    } else {
        args.served_model_name.clone()
    };
    let config = ServerConfig {
        addr,
        served_model_names,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        max_body_bytes: args.max_body_bytes,
        max_tokens_limit: args.max_tokens_limit,
        shutdown_timeout: Duration::from_secs_f64(args.shutdown_timeout),
        metrics_compat: args.metrics_compat,
    };
    let model = args.model.clone();
    let options = args.engine.to_options();
    let numerics = args.engine.numerics;
    let load =
        Box::new(move || start_engine(&model, numerics, &options).map_err(|e| format!("{e:#}")));
    fulcrum_server::run_until_signal(config, load).context("serving")
}

/// Loads the model, starts the engine, logs the start-up summary.
fn start_engine(
    model: &str,
    numerics: fulcrum_model::Numerics,
    options: &EngineOptions,
) -> Result<EngineHandle> {
    let path = super::resolve_model(model)?;
    tracing::info!("loading {}", path.display());
    let model = fulcrum_model::Model::load_with(&path, numerics)
        .map_err(|e| anyhow!("loading {}: {e}", path.display()))?;
    let model = Arc::new(model);
    let config = resolve(options, &model.config)?;
    tracing::info!(
        model = %model.name,
        kv_tokens = config.num_kv_tokens(),
        policy = %config.scheduler.policy,
        isa = Isa::active().name(),
        numerics = %model.numerics,
        "engine: {config}"
    );
    Ok(Engine::start(model, config)?)
}

fn socket_addr(host: &str, port: u16) -> Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving `--host {host}`"))?
        .next()
        .ok_or_else(|| anyhow!("`--host {host}` resolves to no address"))
}
