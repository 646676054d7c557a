//! Stop strings over the detokenized text stream.
//!
//! Principal type: [`StopMatcher`]. Text arrives in deltas (one per token),
//! and a stop string may span several of them, so the matcher holds back any
//! tail of the text that could still become the start of a stop string. When
//! a stop string completes, the output is cut right before it: the client
//! never sees any of it. When the sequence ends for another reason, `flush`
//! releases the held tail (it turned out not to be a stop).
//!
//! Cost per delta: O((held + delta) × stop strings); the held tail is shorter
//! than the longest stop string, so this is independent of the output length.

/// The outcome of feeding one delta.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopMatch {
    /// Text safe to emit now.
    pub text: String,
    /// Index (in the matcher's list) of the stop string that completed; the
    /// sequence finishes with `stop` and nothing further is emitted.
    pub stop_index: Option<usize>,
}

impl StopMatch {
    pub fn is_stopped(&self) -> bool {
        self.stop_index.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Emitted-later text: a suffix that is a proper prefix of some stop.
    held: String,
    is_stopped: bool,
}

impl StopMatcher {
    /// Empty strings are ignored (validation rejects them earlier).
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            is_stopped: false,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.is_stopped
    }

    /// Text held back, waiting to see whether it starts a stop string.
    pub fn held_text(&self) -> &str {
        &self.held
    }

    /// Feeds the next delta. After a stop, every call returns nothing.
    pub fn push(&mut self, delta: &str) -> StopMatch {
        if self.is_stopped {
            return StopMatch::default();
        }
        if self.stops.is_empty() {
            return StopMatch {
                text: delta.to_string(),
                stop_index: None,
            };
        }
        self.held.push_str(delta);
        // The earliest match wins; among matches at the same place, the first
        // listed.
        let earliest = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, stop)| self.held.find(stop.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, stop_index)) = earliest {
            self.held.truncate(at);
            self.is_stopped = true;
            return StopMatch {
                text: std::mem::take(&mut self.held),
                stop_index: Some(stop_index),
            };
        }
        let split = self.held.len() - self.longest_partial_stop();
        let rest = self.held.split_off(split);
        StopMatch {
            text: std::mem::replace(&mut self.held, rest),
            stop_index: None,
        }
    }

    /// Releases the held text at the end of a sequence that did not stop on a
    /// string.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of `held` that is a proper prefix
    /// of a stop string. Only suffixes starting on a char boundary count (a
    /// stop string starts with a whole char).
    fn longest_partial_stop(&self) -> usize {
        let max_len = self.stops.iter().map(String::len).max().unwrap_or(0);
        let first = self.held.len().saturating_sub(max_len.saturating_sub(1));
        (first..self.held.len())
            .filter(|&start| self.held.is_char_boundary(start))
            .map(|start| &self.held[start..])
            .find(|suffix| self.stops.iter().any(|stop| stop.starts_with(suffix)))
            .map_or(0, str::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// Feeds deltas; returns everything emitted and whether it stopped.
    fn run(m: &mut StopMatcher, deltas: &[&str]) -> (String, bool) {
        let mut out = String::new();
        for delta in deltas {
            let step = m.push(delta);
            out.push_str(&step.text);
            if step.is_stopped() {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn no_stop_strings_pass_everything_through() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("abc").text, "abc");
    }

    #[test]
    fn a_stop_string_split_across_tokens_is_not_leaked() {
        let mut m = matcher(&["</end>"]);
        assert_eq!(m.push("Hello </").text, "Hello ");
        assert_eq!(m.held_text(), "</");
        assert_eq!(m.push("en").text, "");
        let last = m.push("d> trailing");
        assert_eq!(
            last,
            StopMatch {
                text: String::new(),
                stop_index: Some(0)
            }
        );
        assert!(m.push("more").text.is_empty());
    }

    #[test]
    fn text_before_the_stop_in_the_same_delta_is_emitted() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(
            run(&mut m, &["one two STOP three"]),
            ("one two ".to_string(), true)
        );
    }

    #[test]
    fn a_partial_match_that_never_completes_is_released() {
        let mut m = matcher(&["###"]);
        assert_eq!(m.push("a #").text, "a ");
        assert_eq!(m.push("#").text, "");
        assert_eq!(m.push("b").text, "##b");
        assert_eq!(m.push(" ##").text, " ");
        assert_eq!(m.flush(), "##", "held text is released at the end");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut m = matcher(&["world", "lo w"]);
        let step = m.push("hello world");
        assert_eq!(
            step,
            StopMatch {
                text: "hel".into(),
                stop_index: Some(1)
            }
        );
    }

    #[test]
    fn a_false_start_does_not_hide_a_later_match() {
        let mut m = matcher(&["aab"]);
        assert_eq!(
            run(&mut m, &["a", "a", "a", "b", "c"]),
            ("a".to_string(), true)
        );
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        let mut m = matcher(&["日本語"]);
        assert_eq!(m.push("こんにちは日").text, "こんにちは");
        assert_eq!(m.push("本").text, "");
        assert_eq!(m.push("人").text, "日本人");
        assert_eq!(run(&mut m, &["日本", "語です"]), (String::new(), true));
    }

    #[test]
    fn an_emoji_stop_across_deltas() {
        let mut m = matcher(&["🛑"]);
        assert_eq!(
            run(&mut m, &["go ", "on 🛑 no"]),
            ("go on ".to_string(), true)
        );
    }
}
