//! A server-sent-events parser that takes bytes as they come off the socket.
//!
//! TCP delivers a stream, not messages: a read may end in the middle of a
//! `data:` line, of a multi-byte UTF-8 character, or between the `\r` and
//! `\n` of a line ending. So the parser keeps the unfinished line as bytes
//! and only decodes complete lines. It follows the WHATWG rules a streaming
//! client needs: lines end in `\n`, `\r\n` or `\r`; a blank line dispatches
//! the event; `data:` lines of one event are joined with `\n`; one space after
//! the colon is dropped; `:` lines are comments (keep-alives); a leading BOM
//! is ignored; an event cut off by the end of the stream is not dispatched.
//! What `data` means (`[DONE]`, JSON chunks) is the caller's business.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being read, not yet terminated.
    line: Vec<u8>,
    /// `data` lines of the event being read, each followed by `\n`.
    data: String,
    has_data: bool,
    event: Option<String>,
    /// The last byte seen was `\r`: a `\n` right after it ends no new line.
    after_cr: bool,
    /// At least one line has been completed (a BOM can only precede the first).
    seen_line: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds the next bytes of the stream; appends the events they complete.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.end_line(out);
                    self.after_cr = true;
                }
                _ => self.line.push(b),
            }
        }
    }

    /// Convenience for whole buffers: the events `bytes` completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        self.push(bytes, &mut out);
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut line = std::mem::take(&mut self.line);
        if !std::mem::replace(&mut self.seen_line, true) && line.starts_with(b"\xEF\xBB\xBF") {
            line.drain(..3);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {} // `id`, `retry` and unknown fields mean nothing to a benchmark
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        out.push(SseEvent { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: s.to_string(),
        }
    }

    /// A stream recorded from an OpenAI-style `/v1/completions` server, with
    /// a keep-alive comment and a multi-byte character in the text.
    const RECORDED: &str = concat!(
        ": ping\n\n",
        "data: {\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\" Hello\"}]}\n\n",
        "data: {\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\" wörld\"}]}\n\n",
        "data: {\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    );

    fn expected() -> Vec<SseEvent> {
        vec![
            data("{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\" Hello\"}]}"),
            data("{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\" wörld\"}]}"),
            data("{\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}"),
            data("[DONE]"),
        ]
    }

    fn parse_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            parser.push(&bytes[start..cut], &mut out);
            start = cut;
        }
        out
    }

    #[test]
    fn recorded_stream_in_one_read() {
        assert_eq!(SseParser::new().feed(RECORDED.as_bytes()), expected());
    }

    #[test]
    fn recorded_stream_split_at_every_byte_pair() {
        let bytes = RECORDED.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                assert_eq!(
                    parse_in_pieces(bytes, &[i, j]),
                    expected(),
                    "cut at {i} and {j}"
                );
            }
        }
    }

    #[test]
    fn crlf_and_cr_line_endings_split_between_cr_and_lf() {
        let crlf = RECORDED.replace('\n', "\r\n");
        let bytes = crlf.as_bytes();
        for i in 0..=bytes.len() {
            assert_eq!(parse_in_pieces(bytes, &[i]), expected(), "CRLF cut at {i}");
        }
        let one_byte_reads: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(parse_in_pieces(bytes, &one_byte_reads), expected());
        let cr = RECORDED.replace('\n', "\r");
        assert_eq!(SseParser::new().feed(cr.as_bytes()), expected());
    }

    #[test]
    fn multi_line_data_event_names_and_field_rules() {
        let stream = "event: error\ndata: line one\ndata:line two\nid: 7\nretry: 10\n\ndata\n\ndata:  two spaces\n\n";
        assert_eq!(
            SseParser::new().feed(stream.as_bytes()),
            vec![
                SseEvent {
                    event: Some("error".into()),
                    data: "line one\nline two".into()
                },
                data(""),
                data(" two spaces"),
            ]
        );
    }

    #[test]
    fn blank_lines_without_data_and_trailing_partial_events_dispatch_nothing() {
        let mut p = SseParser::new();
        assert_eq!(p.feed(b"\n\n: keep-alive\n\nevent: ping\n\n"), vec![]);
        // The event type of an empty event does not leak into the next one.
        assert_eq!(p.feed(b"data: x\n\n"), vec![data("x")]);
        assert_eq!(p.feed(b"data: cut off by the end of the stream\n"), vec![]);
    }

    #[test]
    fn leading_bom_is_ignored_even_when_split() {
        let stream = b"\xEF\xBB\xBFdata: a\n\n";
        for i in 0..=stream.len() {
            assert_eq!(parse_in_pieces(stream, &[i]), vec![data("a")], "cut at {i}");
        }
    }
}
