//! Finding special-token text (`<|im_start|>`, Gemma's `<h1>`, runs of
//! spaces…) in input before the model's own tokenizer sees it.
//!
//! llama.cpp takes the special tokens longest first and, for each, splits
//! every remaining text fragment at all of its non-overlapping occurrences.
//! Doing that token by token costs one substring search per special token
//! (Gemma has ~6,400), so we group tokens by byte length instead: one scan
//! per distinct length (~30), longest first, leftmost match first, with a
//! first/last-byte filter before the hash lookup. The result is the same
//! except when two *different tokens of equal length* overlap in the text,
//! where llama.cpp's order is itself unspecified.

use std::collections::HashMap;

use super::vocab::{TokenType, Vocab};

/// A piece of input after special tokens have been cut out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

#[derive(Debug)]
struct LengthGroup {
    len: usize,
    first_bytes: [bool; 256],
    last_bytes: [bool; 256],
    /// text → (id, matched even without `parse_special`)
    tokens: HashMap<Box<str>, (u32, bool)>,
    has_always: bool,
}

/// The special tokens of a vocabulary, grouped for matching.
#[derive(Debug)]
pub(crate) struct SpecialMatcher {
    /// Longest first.
    groups: Vec<LengthGroup>,
}

impl SpecialMatcher {
    /// Control, unknown and user-defined tokens with non-empty text.
    pub(crate) fn new(vocab: &Vocab) -> SpecialMatcher {
        let mut by_len: HashMap<usize, LengthGroup> = HashMap::new();
        for (id, piece, ty) in vocab.iter() {
            let always = match ty {
                TokenType::UserDefined => true,
                TokenType::Control | TokenType::Unknown => false,
                _ => continue,
            };
            if piece.is_empty() {
                continue;
            }
            let bytes = piece.as_bytes();
            let group = by_len.entry(bytes.len()).or_insert_with(|| LengthGroup {
                len: bytes.len(),
                first_bytes: [false; 256],
                last_bytes: [false; 256],
                tokens: HashMap::new(),
                has_always: false,
            });
            group.first_bytes[bytes[0] as usize] = true;
            group.last_bytes[bytes[bytes.len() - 1] as usize] = true;
            group.has_always |= always;
            group.tokens.entry(Box::from(piece)).or_insert((id, always));
        }
        let mut groups: Vec<LengthGroup> = by_len.into_values().collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.len));
        SpecialMatcher { groups }
    }

    /// Cuts `text` at special-token occurrences. Control and unknown tokens
    /// are matched only when `parse_special`; user-defined ones always.
    pub(crate) fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text(text));
        let mut next = Vec::new();
        for group in &self.groups {
            if !parse_special && !group.has_always {
                continue;
            }
            next.clear();
            for &fragment in &fragments {
                match fragment {
                    Fragment::Token(_) => next.push(fragment),
                    Fragment::Text(s) => group.split(s, parse_special, &mut next),
                }
            }
            std::mem::swap(&mut fragments, &mut next);
        }
        fragments
    }
}

impl LengthGroup {
    fn split<'a>(&self, s: &'a str, parse_special: bool, out: &mut Vec<Fragment<'a>>) {
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i + self.len <= bytes.len() {
            let end = i + self.len;
            if self.first_bytes[bytes[i] as usize] && self.last_bytes[bytes[end - 1] as usize] {
                if let Some(&(id, always)) = s
                    .get(i..end)
                    .and_then(|candidate| self.tokens.get(candidate))
                {
                    if always || parse_special {
                        if start < i {
                            out.push(Fragment::Text(&s[start..i]));
                        }
                        out.push(Fragment::Token(id));
                        i = end;
                        start = end;
                        continue;
                    }
                }
            }
            i += 1;
        }
        if start < bytes.len() {
            out.push(Fragment::Text(&s[start..]));
        }
    }
}
