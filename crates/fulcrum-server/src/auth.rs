//! `--api-key`: every `/v1/*` request needs `Authorization: Bearer <key>`
//! (`/health`, `/metrics` and the tokenizer endpoints stay open, as in vLLM,
//! for probes and scrapers).
//!
//! The comparison is constant-time in the key's bytes (`subtle`), so the
//! time a refusal takes does not reveal how much of a guess was right.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.config().api_key.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if is_same_key(token, expected) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn is_same_key(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_and_compared() {
        assert_eq!(bearer_token("Bearer sk-123"), Some("sk-123"));
        assert_eq!(bearer_token("bearer  sk-123 "), Some("sk-123"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("sk-123"), None);
        assert!(is_same_key("sk-123", "sk-123"));
        assert!(!is_same_key("sk-124", "sk-123"));
        assert!(!is_same_key("sk-12", "sk-123"));
        assert!(!is_same_key("", "sk-123"));
    }
}
