//! Chat templates: a conversation → the prompt text the model was trained on.
//!
//! - [`ChatTemplate`]: a Jinja template (the file's `tokenizer.chat_template`,
//!   or a built-in one chosen by architecture), rendered with minijinja in
//!   the same environment Hugging Face uses: `trim_blocks`, `lstrip_blocks`,
//!   Python string/dict methods (`.strip()`, `.startswith()`, `.items()`),
//!   `raise_exception`, `strftime_now`, and `bos_token`/`eos_token` variables.
//! - [`ChatMessage`]: one turn, `{role, content}`.
//! - [`BuiltinTemplate`]: fulcrum's own templates for files without one.
//!
//! Templates are compiled once, at construction, so a syntax error surfaces
//! when the model loads rather than on the first request.

mod strftime;

use fulcrum_gguf::{GgufError, GgufFile, Metadata};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::tokenizer::Tokenizer;

const TEMPLATE_NAME: &str = "chat_template";

/// One conversation turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, … (passed to the template as is).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a template could not be built or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)`; usually the request
    /// is at fault (e.g. roles that do not alternate).
    #[error("chat template rejected the conversation: {0}")]
    Raised(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
}

/// Templates fulcrum ships for model files that carry none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinTemplate {
    /// `<|im_start|>role\n…<|im_end|>\n`.
    ChatMl,
    /// Gemma's turns: `<start_of_turn>user\n…<end_of_turn>\n`, the assistant
    /// called `model`, a system message folded into the first user turn.
    Gemma,
}

impl BuiltinTemplate {
    /// The built-in template for a `general.architecture`.
    pub fn for_architecture(arch: &str) -> BuiltinTemplate {
        match arch {
            "gemma" | "gemma2" | "gemma3" => BuiltinTemplate::Gemma,
            _ => BuiltinTemplate::ChatMl,
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            BuiltinTemplate::ChatMl => CHATML,
            BuiltinTemplate::Gemma => GEMMA,
        }
    }
}

const CHATML: &str = r#"{%- for message in messages -%}
    {{- '<|im_start|>' ~ message.role ~ '\n' ~ message.content ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}"#;

const GEMMA: &str = r#"{{- bos_token -}}
{%- if messages and messages[0].role == 'system' -%}
    {%- set system_prefix = (messages[0].content | trim) ~ '\n\n' -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set system_prefix = '' -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
    {%- if (message.role == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('conversation roles must alternate user/assistant/user/assistant/... after an optional system message') -}}
    {%- endif -%}
    {%- set role = 'model' if message.role == 'assistant' else message.role -%}
    {{- '<start_of_turn>' ~ role ~ '\n' ~ (system_prefix if loop.first else '') ~ (message.content | trim) ~ '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}"#;

/// The error `raise_exception` attaches, so rendering can tell a template's
/// deliberate rejection from a template bug.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// A compiled chat template and the special-token texts it may use.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// The file's `tokenizer.chat_template`, or the built-in template for its
    /// `general.architecture` when it has none.
    pub fn from_gguf(file: &GgufFile, tokenizer: &Tokenizer) -> Result<ChatTemplate, ChatError> {
        let md = &file.metadata;
        let source = match opt_str(md, "tokenizer.chat_template")? {
            Some(source) => source.to_string(),
            None => {
                let arch = opt_str(md, "general.architecture")?.unwrap_or("");
                BuiltinTemplate::for_architecture(arch).source().to_string()
            }
        };
        let text_of = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or("")
                .to_string()
        };
        ChatTemplate::new(
            source,
            text_of(tokenizer.bos_id()),
            text_of(tokenizer.eos_id()),
        )
    }

    /// A built-in template (they are tested to compile, so this does not
    /// fail in practice; it stays a `Result` rather than a hidden panic).
    pub fn builtin(
        which: BuiltinTemplate,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<ChatTemplate, ChatError> {
        ChatTemplate::new(which.source(), bos_token, eos_token)
    }

    /// Compiles `source`; a syntax error is reported here.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<ChatTemplate, ChatError> {
        let source = source.into();
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatError::Syntax(e.to_string()))?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, minijinja::Error> {
                Err(
                    minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
                        .with_source(RaisedByTemplate(message)),
                )
            },
        );
        env.add_function("strftime_now", |format: String| {
            strftime::format_now_utc(&format)
        });
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            source,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The conversation as prompt text. With `add_generation_prompt`, the
    /// text ends with the opening of an assistant turn.
    ///
    /// Special tokens come out as text (Gemma's template starts with
    /// `<bos>`), so tokenize the result with `parse_special = true` and
    /// `add_special = false`, or BOS appears twice.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::Render(describe(&e)))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())])
            })
            .collect();
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        template.render(ctx).map_err(|e| match raised_message(&e) {
            Some(message) => ChatError::Raised(message),
            None => ChatError::Render(describe(&e)),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A string key that may be absent (an error if present with another type).
fn opt_str<'a>(md: &'a Metadata, key: &str) -> Result<Option<&'a str>, GgufError> {
    if md.contains(key) {
        md.get_str(key).map(Some)
    } else {
        Ok(None)
    }
}

/// The message of a `raise_exception` call anywhere in the error's chain.
fn raised_message(err: &minijinja::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(raised) = e.downcast_ref::<RaisedByTemplate>() {
            return Some(raised.0.clone());
        }
        cur = e.source();
    }
    None
}

/// The error with its template line, when minijinja knows it.
fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!("{err} (template line {line})"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests;
