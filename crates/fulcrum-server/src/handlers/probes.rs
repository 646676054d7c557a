//! What load balancers and scrapers call: `GET /health` (200 when the model
//! is loaded and the server is not shutting down, else 503, so a balancer
//! drains it) and `GET /metrics` (always 200: latency histograms exist
//! before the engine does). Also the fallbacks for unknown routes.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::json;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.engine()?;
    Ok(json(&json!({"status": "ok"})))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let engine = state.loaded_engine().map(|e| e.metrics());
    let text = state.metrics().render(engine.as_ref());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

pub async fn not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}

pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}
