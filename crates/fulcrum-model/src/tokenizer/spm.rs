//! SentencePiece BPE (`tokenizer.ggml.model = llama`).
//!
//! Spaces are written as `▁` (U+2581). The text starts as one symbol per
//! character; repeatedly, the adjacent pair whose concatenation is a
//! vocabulary token with the highest score is merged (leftmost among equal
//! scores). A final symbol that is not a token — only possible for a single
//! character outside the vocabulary — is spelled with `<0xXX>` byte tokens.
//! There is no pre-tokenizer: the whole fragment is one merge problem, so
//! the pair queue is a heap, O(n log n) in the fragment length.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// The character SentencePiece writes for a space.
pub(crate) const SPACE_MARK: char = '\u{2581}';

/// A candidate merge of the symbols at `left` and `right`.
#[derive(Debug)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text, to detect stale candidates.
    len: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// A span of the text; `len == 0` once merged into its left neighbour.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

/// Appends the tokens of `text` (spaces already written as `▁`).
/// `byte_tokens[b]` is the `<0xXX>` token of byte b; `unk` is used when a
/// byte has no token (a broken vocabulary), never a panic.
pub(crate) fn encode(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    unk: Option<u32>,
    text: &str,
    out: &mut Vec<u32>,
) {
    if text.is_empty() {
        return;
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.wrapping_sub(1),
            next: i + 1,
        });
    }
    let n = symbols.len();
    let mut heap = BinaryHeap::with_capacity(n);
    let try_push =
        |heap: &mut BinaryHeap<Candidate>, symbols: &[Symbol], left: usize, right: usize| {
            let (l, r) = (symbols[left], symbols[right]);
            let merged = &text[l.start..r.start + r.len];
            if let Some(id) = vocab.id_of(merged) {
                heap.push(Candidate {
                    score: vocab.score(id),
                    left,
                    right,
                    len: merged.len(),
                });
            }
        };
    for i in 1..n {
        try_push(&mut heap, &symbols, i - 1, i);
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        // Stale when either side was merged since the candidate was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != c.len || l.next != c.right {
            continue;
        }
        symbols[c.left].len += r.len;
        symbols[c.left].next = r.next;
        symbols[c.right].len = 0;
        if r.next < n {
            symbols[r.next].prev = c.left;
            try_push(&mut heap, &symbols, c.left, r.next);
        }
        if l.prev < n {
            try_push(&mut heap, &symbols, l.prev, c.left);
        }
    }
    let mut i = 0;
    while i < n {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match vocab.id_of(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    if let Some(id) = byte_tokens[b as usize].or(unk) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}

/// Appends the text of a normal SentencePiece token: `▁` reads as a space.
pub(crate) fn piece_bytes(piece: &str, out: &mut Vec<u8>) {
    let mut buf = [0u8; 4];
    for c in piece.chars() {
        let c = if c == SPACE_MARK { ' ' } else { c };
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}
