//! vLLM's `POST /tokenize` and `POST /detokenize`: the model's tokenizer (and
//! chat template) over HTTP, so clients can count tokens exactly as the
//! server will.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;

use super::json;
use crate::body::parse_json;
use crate::error::ApiError;
use crate::params::chat_messages;
use crate::protocol::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};
use crate::state::AppState;

pub async fn tokenize(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: TokenizeRequest = parse_json(body, state.config().max_body_bytes)?;
    let engine = state.engine()?;
    state.check_model(request.model.as_deref(), engine)?;
    let model = engine.model();
    let tokens = match (request.prompt, request.messages) {
        (Some(prompt), None) => {
            model
                .tokenizer
                .encode(&prompt, request.add_special_tokens.unwrap_or(true), true)
        }
        (None, Some(messages)) => {
            let messages = chat_messages(Some(&messages))?;
            let text = model
                .chat_template
                .render(&messages, request.add_generation_prompt.unwrap_or(true))
                .map_err(|e| {
                    ApiError::invalid("messages", format!("the chat template failed: {e}"))
                })?;
            model
                .tokenizer
                .encode(&text, request.add_special_tokens.unwrap_or(false), true)
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "prompt",
                "give `prompt` or `messages`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "prompt",
                "`prompt` or `messages` is required",
            ))
        }
    };
    let token_strs = request.return_token_strs.unwrap_or(false).then(|| {
        tokens
            .iter()
            .map(|&id| {
                model
                    .tokenizer
                    .token_text(id)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    });
    Ok(json(&TokenizeResponse {
        count: tokens.len(),
        max_model_len: engine.config().max_model_len(),
        tokens,
        token_strs,
    }))
}

pub async fn detokenize(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: DetokenizeRequest = parse_json(body, state.config().max_body_bytes)?;
    let engine = state.engine()?;
    state.check_model(request.model.as_deref(), engine)?;
    let tokenizer = &engine.model().tokenizer;
    let vocab_size = tokenizer.vocab_size();
    if let Some((i, id)) = request
        .tokens
        .iter()
        .enumerate()
        .find(|(_, &id)| id as usize >= vocab_size)
    {
        let param = format!("tokens[{i}]");
        return Err(ApiError::invalid(
            param.clone(),
            format!("`{param}` ({id}) is outside the vocabulary ({vocab_size} tokens)"),
        ));
    }
    Ok(json(&DetokenizeResponse {
        prompt: tokenizer.decode(&request.tokens, false),
    }))
}
