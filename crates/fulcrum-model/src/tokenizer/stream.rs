//! Incremental detokenization for streaming responses.
//!
//! A token can end in the middle of a UTF-8 character (byte-level BPE splits
//! characters freely; SentencePiece falls back to `<0xXX>` bytes), so text is
//! released only up to the last complete character. Invalid sequences become
//! U+FFFD exactly where `String::from_utf8_lossy` would put them, so the
//! concatenated stream equals the one-shot [`Tokenizer::decode`].

use std::ops::Deref;

use super::Tokenizer;

/// Turns generated token ids into text as they arrive.
///
/// `T` is how the decoder holds the tokenizer: `&Tokenizer` (from
/// [`Tokenizer::stream_decoder`]) or an `Arc<Tokenizer>`, for a decoder that
/// lives inside a long-running sequence.
#[derive(Debug)]
pub struct StreamDecoder<T: Deref<Target = Tokenizer>> {
    tokenizer: T,
    skip_special: bool,
    /// Bytes of an incomplete character at the end of the stream.
    pending: Vec<u8>,
}

impl<T: Deref<Target = Tokenizer>> StreamDecoder<T> {
    /// With `skip_special`, control tokens add no text (as in `decode`).
    pub fn new(tokenizer: T, skip_special: bool) -> StreamDecoder<T> {
        StreamDecoder {
            tokenizer,
            skip_special,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.tokenizer
            .append_token_bytes(id, self.skip_special, &mut self.pending);
        take_complete_utf8(&mut self.pending)
    }

    /// Ends the stream: an incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    /// Whether bytes of an incomplete character are being held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Removes and returns the longest prefix of `bytes` that is decided: valid
/// characters, and invalid sequences (as U+FFFD). An incomplete character at
/// the end stays in `bytes`.
fn take_complete_utf8(bytes: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut consumed = 0;
    loop {
        match std::str::from_utf8(&bytes[consumed..]) {
            Ok(s) => {
                out.push_str(s);
                consumed = bytes.len();
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // valid_up_to vouches for these bytes; the default is never taken.
                out.push_str(
                    std::str::from_utf8(&bytes[consumed..consumed + valid]).unwrap_or_default(),
                );
                consumed += valid;
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        consumed += bad;
                    }
                    None => break,
                }
            }
        }
    }
    bytes.drain(..consumed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_character_is_held_back() {
        let euro = "€".as_bytes();
        let mut buf = euro[..2].to_vec();
        assert_eq!(take_complete_utf8(&mut buf), "");
        assert_eq!(buf, &euro[..2]);
        buf.push(euro[2]);
        assert_eq!(take_complete_utf8(&mut buf), "€");
        assert!(buf.is_empty());
    }

    #[test]
    fn invalid_bytes_match_lossy_decoding() {
        for bytes in [&b"a\xffb"[..], b"\xe2\x82A", b"\xc0\x80x", b"ok\xf0\x9f"] {
            let mut buf = Vec::new();
            let mut streamed = String::new();
            for &b in bytes {
                buf.push(b);
                streamed += &take_complete_utf8(&mut buf);
            }
            streamed += &String::from_utf8_lossy(&buf);
            assert_eq!(streamed, String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }
}
