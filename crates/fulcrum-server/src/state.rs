//! [`AppState`]: what every handler shares — the configuration, the engine
//! once it is loaded, the metrics, response ids.
//!
//! Why the engine sits in a `OnceLock`: the listener is bound before the
//! model loads (a port conflict fails at once, `/health` answers 503 while
//! loading instead of refusing connections, as llama.cpp's server does), and
//! a slot that is written once and then only read needs no lock on the hot
//! path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fulcrum_engine::EngineHandle;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    engine: OnceLock<EngineHandle>,
    is_shutting_down: AtomicBool,
    metrics: Metrics,
    /// Unix seconds at start (`created` of `/v1/models`).
    started_at: u64,
    /// Distinguishes response ids across restarts.
    id_prefix: String,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(config: ServerConfig) -> AppState {
        let metric_model_name = config
            .served_model_names
            .first()
            .cloned()
            .unwrap_or_default();
        let metrics = Metrics::new(config.metrics_compat, &metric_model_name);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        AppState {
            inner: Arc::new(Inner {
                config,
                engine: OnceLock::new(),
                is_shutting_down: AtomicBool::new(false),
                metrics,
                started_at: now.as_secs(),
                id_prefix: format!(
                    "{:08x}",
                    (now.as_nanos() as u64 ^ u64::from(std::process::id())) as u32
                ),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Installs the loaded engine; model endpoints answer from now on.
    /// Returns it back if one is installed already.
    pub fn set_engine(&self, engine: EngineHandle) -> Result<(), EngineHandle> {
        self.inner.engine.set(engine)
    }

    /// The engine, or why requests cannot be served now (503).
    pub fn engine(&self) -> Result<&EngineHandle, ApiError> {
        if self.is_shutting_down() {
            return Err(ApiError::ShuttingDown);
        }
        self.inner.engine.get().ok_or(ApiError::Loading)
    }

    /// The engine if loaded, whatever the server's state (for metrics and
    /// shutdown).
    pub fn loaded_engine(&self) -> Option<&EngineHandle> {
        self.inner.engine.get()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down.load(Ordering::Acquire)
            || self
                .inner
                .engine
                .get()
                .is_some_and(EngineHandle::is_shutting_down)
    }

    /// From now on every model endpoint answers 503.
    pub fn begin_shutdown(&self) {
        self.inner.is_shutting_down.store(true, Ordering::Release);
    }

    /// The name `/v1/models` lists and responses carry.
    pub fn primary_model_name(&self) -> String {
        match (
            self.inner.config.served_model_names.first(),
            self.inner.engine.get(),
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(engine)) => engine.model().name.clone(),
            (None, None) => String::new(),
        }
    }

    /// Checks a request's `model` (absent means the one served): the served
    /// names and the model's own name are accepted, anything else is 404.
    pub fn check_model(
        &self,
        requested: Option<&str>,
        engine: &EngineHandle,
    ) -> Result<String, ApiError> {
        let Some(requested) = requested else {
            return Ok(self.primary_model_name());
        };
        let is_known = self
            .inner
            .config
            .served_model_names
            .iter()
            .any(|n| n == requested)
            || engine.model().name == requested;
        if is_known {
            Ok(requested.to_string())
        } else {
            Err(ApiError::ModelNotFound(requested.to_string()))
        }
    }

    pub fn started_at(&self) -> u64 {
        self.inner.started_at
    }

    /// A fresh response id: `{prefix}-{hex}`.
    pub fn next_response_id(&self, prefix: &str) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}{n:08x}", self.inner.id_prefix)
    }
}

/// Unix seconds now (`created` of responses).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
