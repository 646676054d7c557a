//! Byte-level BPE (`tokenizer.ggml.model = gpt2`).
//!
//! Text is pre-tokenized into words; each byte of a word becomes the token of
//! its GPT-2 "printable" stand-in character (so the vocabulary needs no
//! control or partial-UTF-8 characters); then adjacent symbols are merged,
//! lowest merge rank first, leftmost first among equal ranks, until no listed
//! merge applies.
//!
//! Merges are resolved to token ids at load time, so the merge loop works on
//! `u32`s and never builds strings. A merge whose halves or result are not in
//! the vocabulary can never produce a token and is dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fulcrum_gguf::Metadata;

use super::pretokenize::PreTokenizer;
use super::vocab::Vocab;
use super::TokenizerError;

const MERGES_KEY: &str = "tokenizer.ggml.merges";

/// Placeholder symbol for a byte the vocabulary cannot spell; no merge
/// involves it.
const NO_TOKEN: u32 = u32::MAX;

/// Number of characters in the GPT-2 byte alphabet's code point range
/// (`0..=323`): every byte maps to a char below this.
const BYTE_CHAR_LIMIT: usize = 324;

/// The GPT-2 byte ↔ character table: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes take the code points from U+0100 up, in
/// byte order.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            b as u32
        } else {
            next_extra += 1;
            255 + next_extra
        };
        table[b as usize] = char::from_u32(code).unwrap_or('\0');
    }
    table
}

#[derive(Debug)]
pub(crate) struct ByteLevelBpe {
    pre: PreTokenizer,
    /// Token of each byte's stand-in character.
    byte_token: [Option<u32>; 256],
    /// Stand-in character code → byte, for decoding.
    char_to_byte: [Option<u8>; BYTE_CHAR_LIMIT],
    /// (left, right) → (rank, merged token).
    merges: HashMap<(u32, u32), (u32, u32)>,
}

impl ByteLevelBpe {
    pub(crate) fn from_metadata(
        md: &Metadata,
        vocab: &Vocab,
        pre: PreTokenizer,
    ) -> Result<ByteLevelBpe, TokenizerError> {
        let table = byte_to_char_table();
        let mut byte_token = [None; 256];
        let mut char_to_byte = [None; BYTE_CHAR_LIMIT];
        let mut buf = [0u8; 4];
        for (b, &c) in table.iter().enumerate() {
            byte_token[b] = vocab.id_of(c.encode_utf8(&mut buf));
            char_to_byte[c as usize] = Some(b as u8);
        }
        let merge_list = md.get_str_array(MERGES_KEY)?;
        let mut merges = HashMap::with_capacity(merge_list.len());
        let mut merged = String::new();
        for (rank, line) in merge_list.iter().enumerate() {
            // Split at the first space after the first character, so a half
            // may itself start with a space character.
            let split = line
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i);
            let Some(split) = split else {
                return Err(TokenizerError::Malformed {
                    key: MERGES_KEY,
                    reason: format!("merge #{rank} `{line}` is not two space-separated tokens"),
                });
            };
            let (left, right) = (&line[..split], &line[split + 1..]);
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            if let (Some(l), Some(r), Some(m)) =
                (vocab.id_of(left), vocab.id_of(right), vocab.id_of(&merged))
            {
                // The first (lowest) rank of a duplicated merge wins.
                merges.entry((l, r)).or_insert((rank as u32, m));
            }
        }
        Ok(ByteLevelBpe {
            pre,
            byte_token,
            char_to_byte,
            merges,
        })
    }

    /// Appends the tokens of one text fragment (no special tokens inside).
    ///
    /// A byte whose stand-in character is not in the vocabulary (SmolLM2
    /// lacks 0x04, 0x06, 0xF1, …) cannot be represented: like llama.cpp, we
    /// keep it as a symbol that blocks merges across it, then drop it.
    /// Mapping it to the unknown token instead would inject `<|endoftext|>`
    /// into SmolLM2 prompts.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut word = Vec::new();
        for range in self.pre.split(text) {
            word.clear();
            word.extend(
                text[range]
                    .bytes()
                    .map(|b| self.byte_token[b as usize].unwrap_or(NO_TOKEN)),
            );
            self.merge_word(&mut word);
            out.extend(word.iter().copied().filter(|&id| id != NO_TOKEN));
        }
    }

    /// Applies merges to `symbols` in place. O(n log n) in the word length
    /// with a heap of candidate pairs; stale candidates are skipped on pop.
    fn merge_word(&self, symbols: &mut Vec<u32>) {
        let n = symbols.len();
        if n < 2 {
            return;
        }
        // Doubly linked list over positions; a merged-away symbol is dead.
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, syms: &[u32], l: usize, r: usize| {
            if let Some(&(rank, merged)) = self.merges.get(&(syms[l], syms[r])) {
                heap.push(Reverse((rank, l, r, syms[l], syms[r], merged)));
            }
        };
        for i in 0..n - 1 {
            push(&mut heap, symbols, i, i + 1);
        }
        while let Some(Reverse((_, l, r, left_id, right_id, merged))) = heap.pop() {
            // Stale if either side changed since the pair was queued.
            if !alive[l]
                || !alive[r]
                || next[l] != r
                || symbols[l] != left_id
                || symbols[r] != right_id
            {
                continue;
            }
            symbols[l] = merged;
            alive[r] = false;
            next[l] = next[r];
            if next[l] < n {
                prev[next[l]] = l;
                push(&mut heap, symbols, l, next[l]);
            }
            if prev[l] < n {
                push(&mut heap, symbols, prev[l], l);
            }
        }
        let mut write = 0;
        for read in 0..n {
            if alive[read] {
                symbols[write] = symbols[read];
                write += 1;
            }
        }
        symbols.truncate(write);
    }

    /// Appends the bytes a normal token's text stands for.
    pub(crate) fn piece_bytes(&self, piece: &str, out: &mut Vec<u8>) {
        for c in piece.chars() {
            match self.char_to_byte.get(c as usize).copied().flatten() {
                Some(b) => out.push(b),
                // Not a stand-in character: keep it as written.
                None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_onto_printable_chars() {
        let table = byte_to_char_table();
        let mut seen = std::collections::HashSet::new();
        for &c in &table {
            assert!((c as usize) < BYTE_CHAR_LIMIT);
            assert!(!c.is_control() && !c.is_whitespace(), "{c:?}");
            assert!(seen.insert(c));
        }
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'A' as usize], 'A');
    }
}
