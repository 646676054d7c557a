//! The token table shared by both tokenizer models: pieces, types, scores
//! and the piece → id index, read and validated from GGUF metadata.

use std::collections::HashMap;

use fulcrum_gguf::Metadata;

use super::TokenizerError;

/// Token types as numbered in `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// Ordinary text (type 1; type 0, "undefined", is read as this too).
    Normal,
    /// The unknown-token placeholder (type 2).
    Unknown,
    /// Control tokens such as `<|im_start|>`, BOS, EOS (type 3): matched in
    /// input text only with `parse_special`, left out of decoded text when
    /// special tokens are skipped.
    Control,
    /// Tokens added by the model's authors (type 4), e.g. Gemma's `<h1>` or
    /// runs of spaces: always matched in input text, decoded as their text.
    UserDefined,
    /// Reserved, never produced (type 5).
    Unused,
    /// A raw byte `<0xXX>` (type 6), used by SentencePiece byte fallback.
    Byte,
}

impl TokenType {
    fn from_code(code: i64) -> Option<TokenType> {
        Some(match code {
            0 | 1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

const TOKENS_KEY: &str = "tokenizer.ggml.tokens";
const TYPES_KEY: &str = "tokenizer.ggml.token_type";
const SCORES_KEY: &str = "tokenizer.ggml.scores";

/// Every token's text, type and score, and the reverse index.
#[derive(Debug)]
pub(crate) struct Vocab {
    pieces: Vec<Box<str>>,
    types: Vec<TokenType>,
    /// One per token; zeros when the file has no scores.
    scores: Vec<f32>,
    by_piece: HashMap<Box<str>, u32>,
}

impl Vocab {
    pub(crate) fn from_metadata(md: &Metadata) -> Result<Vocab, TokenizerError> {
        let pieces: Vec<Box<str>> = md
            .get_str_array(TOKENS_KEY)?
            .into_iter()
            .map(Box::from)
            .collect();
        if pieces.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(pieces.len()).is_err() {
            return Err(TokenizerError::Malformed {
                key: TOKENS_KEY,
                reason: format!("{} tokens do not fit u32 ids", pieces.len()),
            });
        }
        let n = pieces.len();
        let types = match md.opt(TYPES_KEY, Metadata::get_i64_array)? {
            None => vec![TokenType::Normal; n],
            Some(codes) => {
                check_len(TYPES_KEY, codes.len(), n)?;
                codes
                    .iter()
                    .enumerate()
                    .map(|(id, &code)| {
                        TokenType::from_code(code).ok_or_else(|| TokenizerError::Malformed {
                            key: TYPES_KEY,
                            reason: format!("token {id} has unknown type {code}"),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let scores = match md.opt(SCORES_KEY, Metadata::get_f32_array)? {
            None => vec![0.0; n],
            Some(scores) => {
                check_len(SCORES_KEY, scores.len(), n)?;
                scores
            }
        };
        let mut by_piece = HashMap::with_capacity(n);
        for (id, piece) in pieces.iter().enumerate() {
            // Later duplicates win, as in llama.cpp's index.
            by_piece.insert(piece.clone(), id as u32);
        }
        Ok(Vocab {
            pieces,
            types,
            scores,
            by_piece,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }

    pub(crate) fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(|p| &**p)
    }

    pub(crate) fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    pub(crate) fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    pub(crate) fn id_of(&self, piece: &str) -> Option<u32> {
        self.by_piece.get(piece).copied()
    }

    /// `(id, piece, type)` for every token.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &str, TokenType)> {
        self.pieces
            .iter()
            .zip(&self.types)
            .enumerate()
            .map(|(id, (p, &t))| (id as u32, &**p, t))
    }
}

fn check_len(key: &'static str, found: usize, expected: usize) -> Result<(), TokenizerError> {
    if found == expected {
        Ok(())
    } else {
        Err(TokenizerError::Malformed {
            key,
            reason: format!("{found} entries, expected {expected} (one per token)"),
        })
    }
}

/// The value of a `<0xXX>` byte token's text.
pub(crate) fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// For each byte, the id of its `<0xXX>` token, if the vocabulary has one.
pub(crate) fn byte_tokens(vocab: &Vocab) -> [Option<u32>; 256] {
    let mut table = [None; 256];
    for (b, slot) in table.iter_mut().enumerate() {
        *slot = vocab.id_of(&format!("<0x{b:02X}>"));
    }
    table
}
