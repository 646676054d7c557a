//! Generated token ids → the text a client may see, per sequence.
//!
//! Two stages, both holding text back: the tokenizer's [`StreamDecoder`]
//! waits for complete UTF-8 characters, then the [`StopMatcher`] waits while
//! the tail could still become a stop string. Stop tokens add no text (as
//! vLLM's default `skip_special_tokens`), nor do other control tokens.

use std::sync::Arc;

use fulcrum_model::tokenizer::{StreamDecoder, Tokenizer};

use crate::stop::StopMatcher;

pub(crate) struct TextStream {
    decoder: StreamDecoder<Arc<Tokenizer>>,
    stops: StopMatcher,
    /// The index of the stop string that ended the text.
    stopped_by: Option<usize>,
}

/// What one token released.
pub(crate) struct TextDelta {
    pub text: String,
    /// A stop string completed with this token (its index in `stop`).
    pub stop_string: Option<usize>,
}

impl TextStream {
    pub(crate) fn new(tokenizer: Arc<Tokenizer>, stop: &[String]) -> Self {
        TextStream {
            decoder: StreamDecoder::new(tokenizer, true),
            stops: StopMatcher::new(stop),
            stopped_by: None,
        }
    }

    /// Feeds one generated token. `is_stop_token`: it ends the sequence and
    /// contributes no text.
    pub(crate) fn push(&mut self, token: u32, is_stop_token: bool) -> TextDelta {
        if self.stopped_by.is_some() || is_stop_token {
            return TextDelta {
                text: String::new(),
                stop_string: None,
            };
        }
        let piece = self.decoder.push(token);
        self.feed(&piece)
    }

    /// Ends the stream: releases held text (an incomplete character becomes
    /// U+FFFD), which can itself complete a stop string.
    pub(crate) fn finish(&mut self) -> TextDelta {
        if self.stopped_by.is_some() {
            return TextDelta {
                text: String::new(),
                stop_string: None,
            };
        }
        let tail = self.decoder.finish();
        let mut delta = self.feed(&tail);
        if delta.stop_string.is_none() {
            delta.text.push_str(&self.stops.flush());
        }
        delta
    }

    pub(crate) fn stopped_by(&self) -> Option<usize> {
        self.stopped_by
    }

    fn feed(&mut self, piece: &str) -> TextDelta {
        let m = self.stops.push(piece);
        if m.stop_index.is_some() {
            self.stopped_by = m.stop_index;
        }
        TextDelta {
            text: m.text,
            stop_string: m.stop_index,
        }
    }
}
