//! What clients send: [`GenerateRequest`] (both `/v1/completions` and
//! `/v1/chat/completions`), [`TokenizeRequest`], [`DetokenizeRequest`].
//!
//! Why one struct for both generation endpoints: they share every sampling
//! field, and serde's `flatten` (the usual way to share) loses the path of
//! a wrong-typed field, which the 400 must name. The fields whose shape
//! varies (`prompt`: string or ids or a batch; `stop`: string or list;
//! `logprobs`: an integer for completions, a boolean for chat; message
//! `content`: string or parts) are kept as JSON values and checked by hand
//! in `params`, so each gets an error message that says what was expected.
//!
//! Unknown fields are ignored, as OpenAI's and vLLM's servers do; the few
//! known ones that would change the result and are not implemented
//! (`echo`, `suffix`, `best_of`, `logit_bias`, `tools`, `response_format`)
//! are refused with a 400 rather than silently ignored.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
pub struct GenerateRequest {
    pub model: Option<String>,
    /// Completions: a string, token ids, or a list of either (a batch).
    pub prompt: Option<Value>,
    /// Chat: `[{"role", "content"}]`.
    pub messages: Option<Vec<Value>>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// vLLM's extension; 0 or -1 disable it.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    /// Any integer OpenAI or vLLM accepts (negative ones included).
    pub seed: Option<i128>,
    /// A string or a list of strings.
    pub stop: Option<Value>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub n: Option<u64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Completions: how many alternatives per token; chat: a boolean.
    pub logprobs: Option<Value>,
    /// Chat: alternatives per token (with `logprobs: true`).
    pub top_logprobs: Option<u64>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub ignore_eos: Option<bool>,
    /// Lower is served first.
    pub priority: Option<i32>,
    /// Logged with the request.
    pub user: Option<String>,
    // Refused when they ask for something not implemented:
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub best_of: Option<u64>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    pub tools: Option<Vec<Value>>,
    pub response_format: Option<Value>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// vLLM's `/tokenize`: a `prompt`, or `messages` rendered with the chat
/// template.
#[derive(Debug, Default, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<Value>>,
    /// Default: true for a prompt, false for messages (the template holds them).
    pub add_special_tokens: Option<bool>,
    /// Messages: end with the opening of an assistant turn (default true).
    pub add_generation_prompt: Option<bool>,
    /// Also return each token's text.
    pub return_token_strs: Option<bool>,
}

/// vLLM's `/detokenize`.
#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}
