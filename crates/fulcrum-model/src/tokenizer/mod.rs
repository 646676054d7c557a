//! Tokenizers built from GGUF metadata, matching llama.cpp token for token.
//!
//! - [`Tokenizer`]: one type for both models a GGUF file can name —
//!   byte-level BPE (`gpt2`, e.g. SmolLM2) and SentencePiece BPE (`llama`,
//!   e.g. Gemma 3). `encode` has llama.cpp's `llama_tokenize` semantics.
//! - [`StreamDecoder`]: incremental decoding that never splits a character.
//! - [`TokenType`]: the per-token type from `tokenizer.ggml.token_type`.
//!
//! Encoding runs in two steps, as in llama.cpp: special-token text is cut out
//! of the input first ([`special`]), then each remaining text fragment goes
//! through the model's algorithm ([`bpe`] or [`spm`]). Nothing is cached
//! globally; a `Tokenizer` is immutable and `Sync`.

mod bpe;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod vocab;

use fulcrum_gguf::{GgufError, GgufFile, Metadata};

use self::bpe::ByteLevelBpe;
use self::pretokenize::PreTokenizer;
use self::special::{Fragment, SpecialMatcher};
use self::vocab::{byte_tokens, parse_byte_piece, Vocab};

pub use self::stream::StreamDecoder;
pub use self::vocab::TokenType;

/// Why a tokenizer could not be built from a file's metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required key is missing or has the wrong type (the error names it).
    #[error(transparent)]
    Metadata(#[from] GgufError),
    #[error("unsupported tokenizer model `{0}` in `tokenizer.ggml.model` (fulcrum supports `gpt2` and `llama`)")]
    UnsupportedModel(String),
    #[error(
        "unsupported pre-tokenizer `{name}` in `tokenizer.ggml.pre` (fulcrum supports {known})"
    )]
    UnsupportedPreTokenizer { name: String, known: String },
    #[error("`tokenizer.ggml.tokens` is empty")]
    EmptyVocab,
    #[error("`{key}`: {reason}")]
    Malformed { key: &'static str, reason: String },
    #[error("`{key}` = {id} is not a token id (the vocabulary has {vocab_size} tokens)")]
    IdOutOfRange {
        key: &'static str,
        id: i128,
        vocab_size: usize,
    },
}

/// Which algorithm turns text fragments into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `tokenizer.ggml.model = gpt2`.
    ByteLevelBpe,
    /// `tokenizer.ggml.model = llama`.
    SentencePieceBpe,
}

impl TokenizerKind {
    fn from_metadata(md: &Metadata) -> Result<TokenizerKind, TokenizerError> {
        match md.get_str("tokenizer.ggml.model")? {
            "gpt2" => Ok(TokenizerKind::ByteLevelBpe),
            "llama" => Ok(TokenizerKind::SentencePieceBpe),
            other => Err(TokenizerError::UnsupportedModel(other.to_string())),
        }
    }
}

#[derive(Debug)]
enum Model {
    ByteLevel(Box<ByteLevelBpe>),
    SentencePiece {
        byte_tokens: Box<[Option<u32>; 256]>,
    },
}

impl Model {
    fn from_metadata(
        md: &Metadata,
        kind: TokenizerKind,
        vocab: &Vocab,
    ) -> Result<Model, TokenizerError> {
        if kind == TokenizerKind::SentencePieceBpe {
            // The pre-tokenizer name does not apply to SentencePiece.
            return Ok(Model::SentencePiece {
                byte_tokens: Box::new(byte_tokens(vocab)),
            });
        }
        // llama.cpp falls back to its default pre-tokenizer when the key is absent.
        let name = if md.contains("tokenizer.ggml.pre") {
            md.get_str("tokenizer.ggml.pre")?
        } else {
            "default"
        };
        let pre =
            PreTokenizer::by_name(name).ok_or_else(|| TokenizerError::UnsupportedPreTokenizer {
                name: name.to_string(),
                known: pretokenize::known_names()
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok(Model::ByteLevel(Box::new(ByteLevelBpe::from_metadata(
            md, vocab, pre,
        )?)))
    }
}

/// Texts of tokens that end a turn in common chat formats; a control token
/// with one of these texts stops generation like EOS does.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<|return|>",
    "<｜end▁of▁sentence｜>",
];

/// A vocabulary and the algorithm that uses it.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    specials: SpecialMatcher,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// Sorted, no duplicates.
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Reads `tokenizer.ggml.*` from a model file.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Self::from_metadata(&file.metadata)
    }

    /// As [`Tokenizer::from_gguf`], from the metadata alone.
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let kind = TokenizerKind::from_metadata(md)?;
        let vocab = Vocab::from_metadata(md)?;
        let n = vocab.len();
        let spm = kind == TokenizerKind::SentencePieceBpe;
        let model = Model::from_metadata(md, kind, &vocab)?;
        // Defaults where the key is absent are llama.cpp's, per model kind.
        let default_id = |spm_default: u32| if spm { Some(spm_default) } else { None };
        let bos = token_id_key(md, "tokenizer.ggml.bos_token_id", n)?
            .or(default_id(1))
            .filter(|&id| (id as usize) < n);
        let eos = token_id_key(md, "tokenizer.ggml.eos_token_id", n)?
            .or(default_id(2))
            .filter(|&id| (id as usize) < n);
        let unk = token_id_key(md, "tokenizer.ggml.unknown_token_id", n)?
            .or(default_id(0))
            .filter(|&id| (id as usize) < n);
        let add_bos = md
            .opt("tokenizer.ggml.add_bos_token", Metadata::get_bool)?
            .unwrap_or(spm);
        let add_eos = md
            .opt("tokenizer.ggml.add_eos_token", Metadata::get_bool)?
            .unwrap_or(false);
        let add_space_prefix = md
            .opt("tokenizer.ggml.add_space_prefix", Metadata::get_bool)?
            .unwrap_or(spm);

        let stop_ids = stop_ids(md, &vocab, eos)?;
        let specials = SpecialMatcher::new(&vocab);
        Ok(Tokenizer {
            vocab,
            model,
            specials,
            bos,
            eos,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
            stop_ids,
        })
    }

    /// Text → token ids, as llama.cpp's `llama_tokenize(text, add_special,
    /// parse_special)`:
    /// - `add_special`: add BOS in front (and EOS at the end) where the model
    ///   asks for them (`tokenizer.ggml.add_bos_token` / `add_eos_token`);
    ///   SmolLM2 asks for neither, Gemma 3 for BOS.
    /// - `parse_special`: control-token text in the input (`<|im_start|>`)
    ///   becomes that token; otherwise it is tokenized as plain text.
    ///   User-defined tokens are matched either way.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let fragments = self.specials.partition(text, parse_special);
        match &self.model {
            Model::ByteLevel(bpe) => {
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(s) => bpe.encode(s, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::SentencePiece { byte_tokens } => {
                // A space is prefixed to text at the start and after each
                // special token, when the model asks for it.
                let mut after_special = true;
                let mut escaped = String::new();
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(s) => {
                            escaped.clear();
                            if self.add_space_prefix && after_special {
                                escaped.push(spm::SPACE_MARK);
                            }
                            escaped.extend(s.chars().map(|c| {
                                if c == ' ' {
                                    spm::SPACE_MARK
                                } else {
                                    c
                                }
                            }));
                            spm::encode(&self.vocab, byte_tokens, self.unk, &escaped, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Token ids → text. With `skip_special`, control tokens (BOS, EOS,
    /// `<|im_end|>`…) contribute nothing; otherwise their text. Ids outside
    /// the vocabulary are ignored; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.append_token_bytes(id, skip_special, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A decoder for a stream of generated tokens.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<&Tokenizer> {
        StreamDecoder::new(self, skip_special)
    }

    /// Appends the bytes token `id` stands for.
    fn append_token_bytes(&self, id: u32, skip_special: bool, out: &mut Vec<u8>) {
        let (Some(piece), Some(ty)) = (self.vocab.piece(id), self.vocab.token_type(id)) else {
            return;
        };
        match ty {
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                if !skip_special {
                    out.extend_from_slice(piece.as_bytes());
                }
            }
            TokenType::UserDefined => out.extend_from_slice(piece.as_bytes()),
            TokenType::Byte => match parse_byte_piece(piece) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(piece.as_bytes()),
            },
            TokenType::Normal => match &self.model {
                Model::ByteLevel(bpe) => bpe.piece_bytes(piece, out),
                Model::SentencePiece { .. } => spm::piece_bytes(piece, out),
            },
        }
    }

    pub fn kind(&self) -> TokenizerKind {
        match self.model {
            Model::ByteLevel(_) => TokenizerKind::ByteLevelBpe,
            Model::SentencePiece { .. } => TokenizerKind::SentencePieceBpe,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    /// Tokens that end a generation: EOS and the model's end-of-turn tokens
    /// (`<|im_end|>`, `<end_of_turn>`, …). Sorted.
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    pub fn is_stop_token(&self, id: u32) -> bool {
        self.stop_ids.binary_search(&id).is_ok()
    }

    /// Whether `encode(text, true, _)` prepends BOS for this model.
    pub fn add_bos_default(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// The token's text as stored in the vocabulary (byte-level BPE pieces
    /// are in the GPT-2 byte alphabet, SentencePiece ones use `▁`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.piece(id)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.token_type(id)
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id_of(text)
    }

    /// Control, unknown and unused tokens: the ones `skip_special` drops.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.vocab.token_type(id),
            Some(TokenType::Control | TokenType::Unknown | TokenType::Unused)
        )
    }
}

/// Tokens that end generation, sorted, no duplicates: EOS, the file's
/// end-of-turn and end-of-message tokens, and the control tokens spelled as
/// common chat formats end a turn.
fn stop_ids(md: &Metadata, vocab: &Vocab, eos: Option<u32>) -> Result<Vec<u32>, TokenizerError> {
    let mut stop_ids: Vec<u32> = eos.into_iter().collect();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        stop_ids.extend(token_id_key(md, key, vocab.len())?);
    }
    for &text in END_OF_TURN_TEXTS {
        if let Some(id) = vocab.id_of(text) {
            if vocab.token_type(id) == Some(TokenType::Control) {
                stop_ids.push(id);
            }
        }
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();
    Ok(stop_ids)
}

/// An optional token id key. Negative values mean "none" (some converters
/// write -1); values past the vocabulary are an error.
fn token_id_key(
    md: &Metadata,
    key: &'static str,
    vocab_size: usize,
) -> Result<Option<u32>, TokenizerError> {
    let Some(value) = md.get(key) else {
        return Ok(None);
    };
    let Some(id) = value.as_i128() else {
        return Err(GgufError::WrongType {
            key: key.to_string(),
            expected: "integer",
            found: value.type_name(),
        }
        .into());
    };
    if id < 0 {
        return Ok(None);
    }
    match u32::try_from(id) {
        Ok(id) if (id as usize) < vocab_size => Ok(Some(id)),
        _ => Err(TokenizerError::IdOutOfRange {
            key,
            id,
            vocab_size,
        }),
    }
}

#[cfg(test)]
mod tests;
