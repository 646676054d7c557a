//! Validation at the edge: a parsed [`GenerateRequest`] becomes a
//! [`GenerationPlan`] — token ids per prompt and checked `SamplingParams` —
//! or a 400 that names the field and the limit.
//!
//! Prompts are tokenized here (text with the model's tokenizer, chat
//! messages through its template) and handed to the engine as token ids,
//! so the server knows each prompt's length: the default `max_tokens` under
//! `--max-tokens-limit` is clamped to the room the prompt leaves, and the
//! response's `usage` needs no second tokenization. The engine re-checks
//! what it must (vocabulary, context length, parameter ranges); errors from
//! either place go through the same mapping with this endpoint's field names.

use fulcrum_engine::{EngineHandle, Prompt, SamplingParams};
use fulcrum_model::chat::ChatMessage;
use serde_json::Value;

use crate::error::{ApiError, FieldNames};
use crate::protocol::GenerateRequest;
use crate::state::AppState;

/// OpenAI's default for `/v1/completions` (chat defaults to the room left
/// in the context).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// Most prompts in one `/v1/completions` batch: each becomes an engine
/// request, so a body of thousands of one-token prompts must not become
/// thousands of queued requests.
pub const MAX_BATCH_PROMPTS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// A checked request, ready for the engine.
#[derive(Debug, Clone)]
pub struct GenerationPlan {
    /// The name to answer with (the one the client sent, or the served one).
    pub model: String,
    /// One engine request per prompt (a batch has several).
    pub prompts: Vec<PromptPlan>,
    /// Choices per prompt.
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub priority: i32,
    pub user: Option<String>,
    pub fields: FieldNames,
}

#[derive(Debug, Clone)]
pub struct PromptPlan {
    pub token_ids: Vec<u32>,
    pub params: SamplingParams,
}

impl GenerationPlan {
    /// The sampling parameters shared by all prompts (only `max_tokens` may
    /// differ between them).
    pub fn params(&self) -> Option<&SamplingParams> {
        self.prompts.first().map(|p| &p.params)
    }
}

/// Checks `request` for `endpoint` against the loaded model.
pub fn plan(
    request: GenerateRequest,
    endpoint: Endpoint,
    state: &AppState,
    engine: &EngineHandle,
) -> Result<GenerationPlan, ApiError> {
    refuse_unsupported(&request)?;
    let model = state.check_model(request.model.as_deref(), engine)?;
    let fields = field_names(&request, endpoint);
    let prompts = match endpoint {
        Endpoint::Completions => completion_prompts(request.prompt.as_ref(), engine)?,
        Endpoint::Chat => {
            let messages = chat_messages(request.messages.as_deref())?;
            vec![engine
                .chat_prompt(&messages)
                .map_err(|e| ApiError::from_engine(e, &fields))?]
        }
    };
    let params = sampling_params(&request, endpoint)?;
    params
        .validate()
        .map_err(|e| ApiError::from_engine(e.into(), &fields))?;
    let limit = state.config().max_tokens_limit;
    if let (Some(limit), Some(m)) = (limit, params.max_tokens) {
        if m > limit {
            let field = fields.max_tokens;
            return Err(ApiError::invalid(
                field,
                format!("`{field}` must be at most {limit}, got {m}"),
            ));
        }
    }
    let max_model_len = engine.config().max_model_len();
    let prompts = prompts
        .into_iter()
        .map(|token_ids| {
            let mut params = params.clone();
            if let (Some(limit), None) = (limit, params.max_tokens) {
                let room = max_model_len.saturating_sub(token_ids.len());
                params.max_tokens = (room > 0).then_some(limit.min(room));
            }
            PromptPlan { token_ids, params }
        })
        .collect();
    Ok(GenerationPlan {
        model,
        prompts,
        n: params.n,
        stream: request.stream.unwrap_or(false),
        include_usage: request
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        priority: request.priority.unwrap_or(0),
        user: request.user,
        fields,
    })
}

fn field_names(request: &GenerateRequest, endpoint: Endpoint) -> FieldNames {
    match endpoint {
        Endpoint::Completions => FieldNames::COMPLETIONS,
        Endpoint::Chat if request.max_completion_tokens.is_some() => FieldNames {
            max_tokens: "max_completion_tokens",
            ..FieldNames::CHAT
        },
        Endpoint::Chat => FieldNames::CHAT,
    }
}

/// Fields this server knows but does not implement, refused when they would
/// change the answer.
fn refuse_unsupported(request: &GenerateRequest) -> Result<(), ApiError> {
    let unsupported =
        |field: &str, what: &str| Err(ApiError::invalid(field, format!("`{field}` {what}")));
    if request.echo == Some(true) {
        return unsupported("echo", "is not supported");
    }
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return unsupported("suffix", "is not supported");
    }
    if request.best_of.is_some_and(|b| b > request.n.unwrap_or(1)) {
        return unsupported("best_of", "greater than `n` is not supported");
    }
    if request.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return unsupported("logit_bias", "is not supported");
    }
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return unsupported("tools", "(function calling) is not supported");
    }
    if let Some(format) = &request.response_format {
        if format
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "text")
        {
            return unsupported("response_format", "other than `text` is not supported");
        }
    }
    Ok(())
}

/// `prompt`: a string, token ids, or a batch (a list of either).
fn completion_prompts(
    prompt: Option<&Value>,
    engine: &EngineHandle,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let text = |s: &str| engine.tokenize(&Prompt::Text(s.to_string()));
    let bad = |param: String| {
        ApiError::invalid(
            param,
            "`prompt` must be a string, a list of token ids, or a list of either (a batch)",
        )
    };
    match prompt {
        None | Some(Value::Null) => Err(ApiError::invalid("prompt", "`prompt` is required")),
        Some(Value::String(s)) => Ok(vec![text(s)]),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(ApiError::invalid("prompt", "`prompt` is empty"))
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            Ok(vec![token_ids(items, "prompt")?])
        }
        Some(Value::Array(items)) if items.len() > MAX_BATCH_PROMPTS => Err(ApiError::invalid(
            "prompt",
            format!(
                "`prompt` batches hold at most {MAX_BATCH_PROMPTS} prompts, got {}",
                items.len()
            ),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(text(s)),
                Value::Array(ids) => token_ids(ids, &format!("prompt[{i}]")),
                _ => Err(bad(format!("prompt[{i}]"))),
            })
            .collect(),
        Some(_) => Err(bad("prompt".into())),
    }
}

fn token_ids(items: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!("{param}[{i}]"),
                        format!("`{param}[{i}]` must be a token id, got {v}"),
                    )
                })
        })
        .collect()
}

/// `messages`: `[{"role": …, "content": string | null | [{"type": "text", "text": …}]}]`.
pub fn chat_messages(messages: Option<&[Value]>) -> Result<Vec<ChatMessage>, ApiError> {
    let messages = match messages {
        None => return Err(ApiError::invalid("messages", "`messages` is required")),
        Some([]) => return Err(ApiError::invalid("messages", "`messages` is empty")),
        Some(m) => m,
    };
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!("`messages[{i}].role` must be a string"),
                )
            })?;
            let content = message_content(message.get("content"), i)?;
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

fn message_content(content: Option<&Value>, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::invalid(
                            param.clone(),
                            format!("`{param}`: only text parts are supported"),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::invalid(
            param.clone(),
            format!("`{param}` must be a string or a list of text parts"),
        )),
    }
}

/// Everything but the prompt, with OpenAI's defaults.
fn sampling_params(
    request: &GenerateRequest,
    endpoint: Endpoint,
) -> Result<SamplingParams, ApiError> {
    let defaults = SamplingParams::default();
    let max_tokens = match endpoint {
        Endpoint::Completions => Some(
            request
                .max_tokens
                .map_or(DEFAULT_COMPLETION_MAX_TOKENS, saturating_usize),
        ),
        Endpoint::Chat => request
            .max_completion_tokens
            .or(request.max_tokens)
            .map(saturating_usize),
    };
    Ok(SamplingParams {
        n: request.n.map_or(1, saturating_usize),
        temperature: request.temperature.unwrap_or(defaults.temperature),
        top_k: request
            .top_k
            .filter(|&k| k > 0)
            .map(|k| saturating_usize(k.unsigned_abs())),
        top_p: request.top_p.unwrap_or(defaults.top_p),
        min_p: request.min_p.unwrap_or(defaults.min_p),
        presence_penalty: request
            .presence_penalty
            .unwrap_or(defaults.presence_penalty),
        frequency_penalty: request
            .frequency_penalty
            .unwrap_or(defaults.frequency_penalty),
        repetition_penalty: request
            .repetition_penalty
            .unwrap_or(defaults.repetition_penalty),
        seed: request.seed.map(seed).transpose()?,
        max_tokens,
        stop_token_ids: request.stop_token_ids.clone().unwrap_or_default(),
        stop: stop_strings(request.stop.as_ref())?,
        ignore_eos: request.ignore_eos.unwrap_or(false),
        logprobs: logprobs(request, endpoint)?,
    })
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Any 64-bit integer, signed or not (negative seeds wrap, as in NumPy).
fn seed(seed: i128) -> Result<u64, ApiError> {
    if let Ok(s) = u64::try_from(seed) {
        Ok(s)
    } else if let Ok(s) = i64::try_from(seed) {
        Ok(s as u64)
    } else {
        Err(ApiError::invalid(
            "seed",
            format!("`seed` must be a 64-bit integer, got {seed}"),
        ))
    }
}

fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid(
                        format!("stop[{i}]"),
                        format!("`stop[{i}]` must be a string"),
                    )
                })
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "stop",
            "`stop` must be a string or a list of strings",
        )),
    }
}

/// Completions: `logprobs` is the number of alternatives; chat: a boolean,
/// with the number in `top_logprobs`.
fn logprobs(request: &GenerateRequest, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
    let top = request.top_logprobs.map(saturating_usize);
    match (endpoint, request.logprobs.as_ref()) {
        (_, None | Some(Value::Null) | Some(Value::Bool(false))) => match (endpoint, top) {
            (Endpoint::Chat, Some(_)) => {
                Err(ApiError::invalid("top_logprobs", "`top_logprobs` requires `logprobs` to be true"))
            }
            _ => Ok(None),
        },
        (Endpoint::Completions, Some(v)) => match v.as_u64() {
            Some(n) => Ok(Some(saturating_usize(n))),
            None => Err(ApiError::invalid("logprobs", format!("`logprobs` must be an integer in [0, 20], got {v}"))),
        },
        (Endpoint::Chat, Some(Value::Bool(true))) => Ok(Some(top.unwrap_or(0))),
        (Endpoint::Chat, Some(v)) => Err(ApiError::invalid(
            "logprobs",
            format!("`logprobs` must be a boolean (the number of alternatives goes in `top_logprobs`), got {v}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: Value) -> GenerateRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_follow_openai() {
        let p = sampling_params(&request(json!({})), Endpoint::Completions).unwrap();
        assert_eq!(
            (p.max_tokens, p.n, p.temperature, p.top_p),
            (Some(16), 1, 1.0, 1.0)
        );
        let p = sampling_params(&request(json!({})), Endpoint::Chat).unwrap();
        assert_eq!(p.max_tokens, None);
        let p = sampling_params(
            &request(json!({"max_tokens": 5, "max_completion_tokens": 7})),
            Endpoint::Chat,
        )
        .unwrap();
        assert_eq!(p.max_tokens, Some(7));
    }

    #[test]
    fn shapes_of_stop_seed_top_k_and_logprobs() {
        let p = sampling_params(
            &request(json!({"stop": "\n", "seed": -1, "top_k": -1})),
            Endpoint::Completions,
        )
        .unwrap();
        assert_eq!(
            (p.stop, p.seed, p.top_k),
            (vec!["\n".to_string()], Some(u64::MAX), None)
        );
        let p = sampling_params(
            &request(json!({"stop": ["a", "b"], "top_k": 40, "logprobs": 3})),
            Endpoint::Completions,
        )
        .unwrap();
        assert_eq!((p.stop.len(), p.top_k, p.logprobs), (2, Some(40), Some(3)));
        let p = sampling_params(
            &request(json!({"logprobs": true, "top_logprobs": 2})),
            Endpoint::Chat,
        )
        .unwrap();
        assert_eq!(p.logprobs, Some(2));
        let e = sampling_params(&request(json!({"logprobs": true})), Endpoint::Completions)
            .unwrap_err();
        assert!(
            matches!(&e, ApiError::InvalidRequest { param: Some(p), .. } if p == "logprobs"),
            "{e:?}"
        );
        let e = sampling_params(&request(json!({"top_logprobs": 2})), Endpoint::Chat).unwrap_err();
        assert!(
            matches!(&e, ApiError::InvalidRequest { param: Some(p), .. } if p == "top_logprobs"),
            "{e:?}"
        );
        let e = sampling_params(&request(json!({"stop": [1]})), Endpoint::Chat).unwrap_err();
        assert!(
            matches!(&e, ApiError::InvalidRequest { param: Some(p), .. } if p == "stop[0]"),
            "{e:?}"
        );
        assert_eq!(seed(i128::from(u64::MAX)).unwrap(), u64::MAX);
        assert!(seed(1i128 << 70).is_err());
        assert!(serde_json::from_value::<GenerateRequest>(json!({"seed": 1.5})).is_err());
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        for (body, field) in [
            (json!({"echo": true}), "echo"),
            (json!({"suffix": "x"}), "suffix"),
            (json!({"best_of": 3}), "best_of"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
            (json!({"tools": [{"type": "function"}]}), "tools"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
        ] {
            let e = refuse_unsupported(&request(body)).unwrap_err();
            assert!(
                matches!(&e, ApiError::InvalidRequest { param: Some(p), .. } if p == field),
                "{e:?}"
            );
        }
        refuse_unsupported(&request(
            json!({"echo": false, "best_of": 1, "logit_bias": {}, "response_format": {"type": "text"}}),
        ))
        .unwrap();
    }

    #[test]
    fn messages_accept_strings_null_and_text_parts() {
        let messages = [
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}),
            json!({"role": "assistant", "content": null}),
        ];
        let parsed = chat_messages(Some(&messages)).unwrap();
        assert_eq!(parsed[1], ChatMessage::new("user", "Hi there"));
        assert_eq!(parsed[2].content, "");
        let e = chat_messages(Some(&[
            json!({"role": "user", "content": [{"type": "image_url"}]}),
        ]))
        .unwrap_err();
        assert!(
            matches!(&e, ApiError::InvalidRequest { param: Some(p), .. } if p == "messages[0].content"),
            "{e:?}"
        );
        assert!(chat_messages(Some(&[json!({"content": "x"})])).is_err());
        assert!(chat_messages(Some(&[])).is_err());
    }

    #[test]
    fn token_ids_must_be_u32() {
        assert_eq!(
            token_ids(&[json!(1), json!(2)], "prompt").unwrap(),
            vec![1, 2]
        );
        for bad in [
            json!(-1),
            json!(1.5),
            json!(u64::from(u32::MAX) + 1),
            json!("x"),
        ] {
            let e = token_ids(&[json!(0), bad], "prompt").unwrap_err();
            assert!(
                matches!(&e, ApiError::InvalidRequest { param: Some(p), .. } if p == "prompt[1]"),
                "{e:?}"
            );
        }
    }
}
