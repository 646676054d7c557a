//! The router, its layers, and the server's life: bind, serve, drain.
//!
//! Layers, outermost first: the request log (so refusals and panics are
//! logged too), panic catching (a panicking handler becomes a 500 for its
//! own request; the server and every other connection go on), the body
//! limit (413 instead of buffering any size), and on `/v1/*` only, the API
//! key check.
//!
//! Shutdown ([`Server::run`]): when the shutdown future resolves, the server
//! stops accepting connections, every model endpoint answers 503, and the
//! engine is told to finish what is in flight within
//! `shutdown_timeout` and abort the rest; the run ends once those requests'
//! connections close (or a short grace after the deadline for clients that
//! stop reading).

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use fulcrum_engine::EngineHandle;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::handlers::{chat, completions, models, probes, tokenize};
use crate::request_log::log_requests;
use crate::state::AppState;

/// After the shutdown timeout, how long connections may take to close
/// before the run ends anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The routes, before layers; `/v1/*` behind the API key.
pub fn routes(state: &AppState) -> Router<AppState> {
    let v1 = Router::new()
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list_models))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .route("/health", get(probes::health))
        .route("/metrics", get(probes::metrics))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .merge(v1)
        .fallback(probes::not_found)
        .method_not_allowed_fallback(probes::method_not_allowed)
}

/// `routes` with the layers every request goes through.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    tracing::error!("a request handler panicked: {message}");
    ApiError::Internal("the request handler panicked".into()).into_response()
}

/// A bound listener with its state.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    extra_routes: Option<Router<AppState>>,
}

impl Server {
    /// Binds `config.addr` (port 0 picks a free one). The engine comes
    /// later, through `state().set_engine`.
    pub async fn bind(config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(config.addr).await?;
        Ok(Server {
            listener,
            state: AppState::new(config),
            extra_routes: None,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Adds routes behind the same layers (tests use it to mount a handler
    /// that panics).
    pub fn merge_routes(mut self, routes: Router<AppState>) -> Server {
        self.extra_routes = Some(routes);
        self
    }

    /// Serves until `shutdown` resolves, then drains (see the module doc).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
        let Server {
            listener,
            state,
            extra_routes,
        } = self;
        let mut routes = routes(&state);
        if let Some(extra) = extra_routes {
            routes = routes.merge(extra);
        }
        let app = with_layers(routes, state.clone());
        let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let mut serving = tokio::spawn(serve.into_future());
        tokio::select! {
            result = &mut serving => return flatten(result),
            () = shutdown => {}
        }
        let timeout = state.config().shutdown_timeout;
        tracing::info!("shutting down: accepting no connections; requests in flight have {timeout:?} to finish");
        state.begin_shutdown();
        let engine_stopped = state.loaded_engine().cloned().map(|engine| {
            tokio::task::spawn_blocking(move || {
                let metrics = engine.shutdown(timeout);
                let aborted = metrics.num_finished.abort;
                tracing::info!(aborted, "engine stopped");
            })
        });
        let _ = stop_accepting.send(());
        match tokio::time::timeout(timeout + DRAIN_GRACE, &mut serving).await {
            Ok(result) => flatten(result)?,
            Err(_) => {
                tracing::warn!("connections still open {DRAIN_GRACE:?} after the shutdown timeout; closing them");
                serving.abort();
            }
        }
        if let Some(stopped) = engine_stopped {
            let _ = stopped.await;
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

fn flatten(result: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    result.map_err(|e| io::Error::other(format!("the server task failed: {e}")))?
}

/// What `run_until_signal` needs to load the engine (on its own thread,
/// while the server already answers 503).
pub type EngineLoader = Box<dyn FnOnce() -> Result<EngineHandle, String> + Send>;

/// `fulcrum serve`: binds, loads the engine with `load` while answering 503,
/// serves until SIGINT or SIGTERM, then drains. Blocks; runs its own tokio
/// runtime (HTTP work is light: two worker threads, beside the engine's).
pub fn run_until_signal(config: ServerConfig, load: EngineLoader) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let server = Server::bind(config).await?;
        tracing::info!("listening on http://{}", server.local_addr()?);
        let state = server.state().clone();
        let load_error = Arc::new(Mutex::new(None));
        let (failed, load_failed) = tokio::sync::oneshot::channel::<()>();
        let slot = load_error.clone();
        std::thread::Builder::new()
            .name("fulcrum-load".into())
            .spawn(move || match load() {
                Ok(engine) if state.is_shutting_down() => {
                    engine.shutdown(Duration::ZERO);
                }
                Ok(engine) => {
                    if state.set_engine(engine).is_ok() {
                        tracing::info!("ready");
                    }
                }
                Err(e) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    let _ = failed.send(());
                }
            })?;
        server
            .run(async move {
                tokio::select! {
                    () = shutdown_signal() => {}
                    Ok(()) = load_failed => {}
                }
            })
            .await?;
        let error = load_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match error {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(()),
        }
    });
    // The loader thread (if a signal came during loading) must not hold the
    // process: blocking tasks get a moment, then the runtime goes.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
