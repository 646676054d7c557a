//! Request bodies → typed requests, with errors that name the field.
//!
//! Why not axum's `Json` extractor: it insists on a JSON content type (which
//! `curl -d` does not send) and its rejections are plain text; here a wrong
//! type becomes a 400 in OpenAI's shape whose `param` is the field's path
//! (`messages[0].content`), and an oversized body a 413 naming the limit.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Parses a buffered body (`limit`: the configured maximum, for the 413).
pub(crate) fn parse_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::InvalidJson {
                message: format!("reading the request body: {}", rejection.body_text()),
                param: None,
            }
        }
    })?;
    // Syntax first, then shape: serde would happily read a struct from a
    // JSON array, and its complaint about `[0]` would puzzle a client.
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidJson {
        message: format!("the request body is not valid JSON: {e}"),
        param: None,
    })?;
    if !value.is_object() {
        return Err(ApiError::InvalidJson {
            message: "the request body must be a JSON object".into(),
            param: None,
        });
    }
    let value = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::InvalidJson {
            message: format!("`{path}`: {}", e.into_inner()),
            param: Some(path),
        }
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::GenerateRequest;

    fn parse(body: &[u8]) -> Result<GenerateRequest, ApiError> {
        parse_json(Ok(Bytes::copy_from_slice(body)), 100)
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse(br#"{"prompt": "hi", "temperature": "hot"}"#).unwrap_err();
        let ApiError::InvalidJson { message, param } = e else {
            panic!("{e:?}")
        };
        assert_eq!(param.as_deref(), Some("temperature"));
        assert!(
            message.starts_with("`temperature`: invalid type: string \"hot\""),
            "{message}"
        );
        let e = parse(br#"{"stream_options": {"include_usage": 1}}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::InvalidJson { param: Some(p), .. } if p == "stream_options.include_usage")
        );
        let e = parse(br#"{"max_tokens": -1}"#).unwrap_err();
        assert!(matches!(e, ApiError::InvalidJson { param: Some(p), .. } if p == "max_tokens"));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_invalid_json() {
        for body in [
            &b"\xff\xfe\x00garbage"[..],
            b"",
            b"{\"prompt\": \"a\"} x",
            b"[1, 2]",
            b"{\"prompt\": ",
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
        }
        parse(br#"{"prompt": "hi", "unknown_field": {"x": 1}, "seed": -5}"#).unwrap();
    }
}
