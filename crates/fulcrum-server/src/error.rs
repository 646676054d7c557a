//! The one place where a failure becomes an HTTP status and OpenAI's error
//! body, `{"error": {"message", "type", "param", "code"}}`.
//!
//! Why one enum and one `status()`: clients (and the load generator) branch
//! on status codes — 400 means "fix the request", 429 and 503 mean "retry
//! later" — so the mapping must be the same whichever handler refused, and
//! reviewable in one screen. Engine refusals ([`EngineError`]) and failures
//! of accepted requests ([`RequestFailure`]) are converted here too; the
//! message of a 400 names the field (`param`) and the limit.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fulcrum_engine::{AddError, EngineError, RequestFailure};
use serde::Serialize;

/// Every way a request can fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or a field has the wrong type (`param`: its path).
    #[error("{message}")]
    InvalidJson {
        message: String,
        param: Option<String>,
    },
    /// A field's value is out of range or unsupported.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// The prompt plus the completion would not fit the context.
    #[error("{message}")]
    ContextLengthExceeded { message: String, param: String },
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("{0}")]
    QueueFull(String),
    #[error("the model is still loading; retry shortly")]
    Loading,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Field names of the endpoint a request came through, so an engine error
/// about `max_tokens` names the field this client actually sent.
#[derive(Debug, Clone, Copy)]
pub struct FieldNames {
    pub prompt: &'static str,
    pub max_tokens: &'static str,
    pub logprobs: &'static str,
}

impl FieldNames {
    pub const COMPLETIONS: FieldNames = FieldNames {
        prompt: "prompt",
        max_tokens: "max_tokens",
        logprobs: "logprobs",
    };
    pub const CHAT: FieldNames = FieldNames {
        prompt: "messages",
        max_tokens: "max_tokens",
        logprobs: "top_logprobs",
    };

    /// The client's name for an engine field.
    pub fn rename(&self, engine_field: &str) -> String {
        match engine_field {
            "logprobs" => self.logprobs.to_string(),
            "max_tokens" => self.max_tokens.to_string(),
            other => other.to_string(),
        }
    }
}

impl ApiError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson { .. }
            | ApiError::InvalidRequest { .. }
            | ApiError::ContextLengthExceeded { .. } => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Loading | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type`.
    fn kind(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable_error",
            StatusCode::INTERNAL_SERVER_ERROR => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `code`: a stable token clients can match on.
    fn code(&self) -> Option<&'static str> {
        Some(match self {
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::InvalidRequest { .. } => return None,
            ApiError::ContextLengthExceeded { .. } => "context_length_exceeded",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::RouteNotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "request_too_large",
            ApiError::Unauthorized => "invalid_api_key",
            ApiError::QueueFull(_) => "queue_full",
            ApiError::Loading => "model_loading",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal_error",
        })
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidJson { param, .. } | ApiError::InvalidRequest { param, .. } => {
                param.as_deref()
            }
            ApiError::ContextLengthExceeded { param, .. } => Some(param),
            ApiError::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// The body, as a JSON value (also sent as an SSE event when a stream
    /// fails after its headers went out).
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: self.kind(),
                param: self.param(),
                code: self.code(),
            },
        }
    }

    /// An engine refusal, with fields named as the client's endpoint names them.
    pub fn from_engine(error: EngineError, fields: &FieldNames) -> ApiError {
        match error {
            EngineError::InvalidParams(e) => {
                let param = fields.rename(e.field);
                ApiError::invalid(
                    param.clone(),
                    format!("`{param}` {}, got {}", e.requirement, e.value),
                )
            }
            EngineError::EmptyPrompt => {
                ApiError::invalid(fields.prompt, format!("`{}` is empty", fields.prompt))
            }
            e @ EngineError::TokenOutOfRange { .. } => {
                ApiError::invalid(fields.prompt, e.to_string())
            }
            e @ EngineError::ContextLengthExceeded { max_tokens, .. } => {
                ApiError::ContextLengthExceeded {
                    message: e.to_string(),
                    param: if max_tokens.is_some() {
                        fields.max_tokens
                    } else {
                        fields.prompt
                    }
                    .to_string(),
                }
            }
            EngineError::ChatTemplate(e) => {
                ApiError::invalid("messages", format!("the chat template failed: {e}"))
            }
            e @ EngineError::QueueFull { .. } => ApiError::QueueFull(e.to_string()),
            EngineError::ShuttingDown => ApiError::ShuttingDown,
        }
    }

    /// A request the engine accepted and then could not complete.
    pub fn from_failure(failure: RequestFailure) -> ApiError {
        match failure {
            RequestFailure::Rejected(e @ AddError::ExceedsMaxModelLen { .. }) => {
                ApiError::ContextLengthExceeded {
                    message: e.to_string(),
                    param: "max_tokens".into(),
                }
            }
            RequestFailure::Rejected(e) => ApiError::InvalidRequest {
                message: e.to_string(),
                param: None,
            },
            RequestFailure::EngineStopped => ApiError::ShuttingDown,
            e @ (RequestFailure::StepPanicked(_)
            | RequestFailure::Forward(_)
            | RequestFailure::Internal(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'a str>,
    pub code: Option<&'static str>,
}

/// The error's message, attached to the response so the request log can
/// say why without re-parsing the body.
#[derive(Debug, Clone)]
pub(crate) struct ErrorMessage(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
            .extensions_mut()
            .insert(ErrorMessage(self.to_string()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_engine::SamplingError;

    #[test]
    fn every_class_has_its_status() {
        let cases = [
            (
                ApiError::InvalidJson {
                    message: "x".into(),
                    param: None,
                },
                400,
            ),
            (ApiError::invalid("top_p", "x"), 400),
            (
                ApiError::ContextLengthExceeded {
                    message: "x".into(),
                    param: "max_tokens".into(),
                },
                400,
            ),
            (ApiError::ModelNotFound("gpt-4".into()), 404),
            (ApiError::PayloadTooLarge { limit: 10 }, 413),
            (ApiError::Unauthorized, 401),
            (ApiError::QueueFull("x".into()), 429),
            (ApiError::Loading, 503),
            (ApiError::ShuttingDown, 503),
            (ApiError::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn engine_errors_name_the_clients_field() {
        let e = EngineError::InvalidParams(SamplingError {
            field: "logprobs",
            requirement: "must be in [0, 20]",
            value: "30".into(),
        });
        let api = ApiError::from_engine(e, &FieldNames::CHAT);
        assert_eq!(api.to_string(), "`top_logprobs` must be in [0, 20], got 30");
        assert_eq!(api.param(), Some("top_logprobs"));
        let e = EngineError::ContextLengthExceeded {
            num_prompt_tokens: 10,
            max_tokens: Some(9000),
            max_model_len: 8192,
        };
        let api = ApiError::from_engine(e, &FieldNames::COMPLETIONS);
        assert_eq!(api.status(), StatusCode::BAD_REQUEST);
        assert_eq!(api.param(), Some("max_tokens"));
        assert!(api.to_string().contains("8192"), "{api}");
        assert_eq!(
            ApiError::from_engine(EngineError::QueueFull { max_waiting: 2 }, &FieldNames::CHAT)
                .status(),
            429
        );
        assert_eq!(
            ApiError::from_engine(EngineError::ShuttingDown, &FieldNames::CHAT).status(),
            503
        );
    }

    #[test]
    fn body_has_openais_shape() {
        let value = serde_json::to_value(ApiError::ModelNotFound("gpt-4".into()).body()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error": {
                "message": "the model `gpt-4` does not exist",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }})
        );
    }
}
