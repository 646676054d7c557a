//! Pre-tokenizers for byte-level BPE: split text into words before merging.
//!
//! llama.cpp describes each pre-tokenizer as a list of regexes applied in
//! turn: every regex splits each piece left by the previous one into its
//! matches *and* the gaps between them (gaps are kept). We keep that model —
//! a pre-tokenizer is a list of [`Stage`]s — but write each stage by hand
//! instead of compiling regexes. Why: the GPT-2 pattern needs a lookahead
//! (`\s+(?!\S)`), which means `fancy-regex` and a backtracking engine; the
//! hand-written splitter is a single forward scan with one char of lookahead,
//! has no pathological inputs, allocates nothing per word, and makes the
//! piece boundaries (where a lookahead must stop) explicit. Adding a
//! pre-tokenizer whose stages already exist is one line in [`TABLE`].

use std::ops::Range;

use unicode_general_category::{get_general_category, GeneralCategory};

/// A set of characters, as used by the simple stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CharSet {
    /// `\p{N}`: any Unicode number (Nd, Nl, No).
    Number,
    /// `[0-9]`.
    AsciiDigit,
    /// `[\p{P}\$\+<=>\^~\|]`: punctuation plus the ASCII math symbols
    /// (llama.cpp's default BPE pre-tokenizer).
    PunctDefault,
    /// `[\p{P}\$\+<=>\^~\|`]`: as above plus the backtick (falcon).
    PunctFalcon,
}

impl CharSet {
    fn contains(self, c: char) -> bool {
        match self {
            CharSet::Number => class_of(c) == Class::Number,
            CharSet::AsciiDigit => c.is_ascii_digit(),
            CharSet::PunctDefault => {
                matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|') || is_punctuation(c)
            }
            CharSet::PunctFalcon => c == '`' || CharSet::PunctDefault.contains(c),
        }
    }
}

/// One split step over every piece left by the previous step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// `S`: each character of the set on its own (e.g. `\p{N}`: single digits).
    EachChar(CharSet),
    /// `S+`: maximal runs of the set.
    Run(CharSet),
    /// `S{k}`: non-overlapping runs of exactly k characters, leftmost first.
    Chunks(CharSet, usize),
}

/// `tokenizer.ggml.pre` names → stages, as llama.cpp defines them.
const TABLE: &[(&[&str], &[Stage])] = &[
    (&["gpt2", "gpt-2", "mpt", "olmo", "jais"], &[Stage::Gpt2]),
    (
        &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        &[Stage::EachChar(CharSet::Number), Stage::Gpt2],
    ),
    (
        &["default"],
        &[
            Stage::Run(CharSet::PunctDefault),
            Stage::Gpt2,
            Stage::Run(CharSet::Number),
            Stage::Chunks(CharSet::AsciiDigit, 3),
        ],
    ),
    (
        &["falcon"],
        &[
            Stage::Run(CharSet::PunctFalcon),
            Stage::Gpt2,
            Stage::Chunks(CharSet::AsciiDigit, 3),
        ],
    ),
];

/// The pre-tokenizer names this build knows, for error messages.
pub(crate) fn known_names() -> Vec<&'static str> {
    TABLE
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
        .collect()
}

/// A chosen pre-tokenizer: the stages to run, in order.
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizer {
    stages: &'static [Stage],
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre = name`.
    pub(crate) fn by_name(name: &str) -> Option<PreTokenizer> {
        TABLE
            .iter()
            .find(|(names, _)| names.contains(&name))
            .map(|(_, stages)| PreTokenizer { stages })
    }

    /// Splits `text` into words (byte ranges into `text`, in order, covering it).
    pub(crate) fn split(&self, text: &str) -> Vec<Range<usize>> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut pieces = Vec::with_capacity(text.len() / 4 + 1);
        pieces.push(0..text.len());
        let mut next = Vec::new();
        for &stage in self.stages {
            next.clear();
            for piece in &pieces {
                split_piece(stage, text, piece.clone(), &mut next);
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        pieces
    }
}

/// Appends the matches of `stage` in `text[piece]` and the gaps between them.
fn split_piece(stage: Stage, text: &str, piece: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[piece.clone()];
    let base = piece.start;
    let mut matches = Vec::new();
    match stage {
        Stage::Gpt2 => gpt2_matches(s, &mut matches),
        Stage::EachChar(set) => {
            for (i, c) in s.char_indices() {
                if set.contains(c) {
                    matches.push(i..i + c.len_utf8());
                }
            }
        }
        Stage::Run(set) => {
            let mut run: Option<usize> = None;
            for (i, c) in s.char_indices() {
                match (set.contains(c), run) {
                    (true, None) => run = Some(i),
                    (false, Some(start)) => {
                        matches.push(start..i);
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(start) = run {
                matches.push(start..s.len());
            }
        }
        Stage::Chunks(set, k) => chunk_matches(s, set, k, &mut matches),
    }
    // Matches and gaps both become pieces, as llama.cpp's splitter keeps them.
    let mut pos = 0;
    for m in matches {
        if m.start > pos {
            out.push(base + pos..base + m.start);
        }
        if m.end > m.start {
            out.push(base + m.start..base + m.end);
        }
        pos = m.end;
    }
    if pos < s.len() {
        out.push(base + pos..base + s.len());
    }
}

/// `S{k}` without overlap: leftmost runs of exactly k set characters.
fn chunk_matches(s: &str, set: CharSet, k: usize, out: &mut Vec<Range<usize>>) {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while k > 0 && i + k <= chars.len() {
        if chars[i..i + k].iter().all(|&(_, c)| set.contains(c)) {
            let end = chars.get(i + k).map_or(s.len(), |&(o, _)| o);
            out.push(chars[i].0..end);
            i += k;
        } else {
            i += 1;
        }
    }
}

/// The character classes the GPT-2 pattern distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Letter,
    Number,
    Space,
    /// Everything else, unassigned code points included (as in llama.cpp).
    Other,
}

/// `\p{L}` / `\p{N}` / `\s` / other. `\s` is the Unicode White_Space property,
/// which never overlaps letters or numbers.
pub(crate) fn class_of(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    use GeneralCategory::*;
    match get_general_category(c) {
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter => {
            Class::Letter
        }
        DecimalNumber | LetterNumber | OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

fn is_punctuation(c: char) -> bool {
    use GeneralCategory::*;
    matches!(
        get_general_category(c),
        ConnectorPunctuation
            | DashPunctuation
            | OpenPunctuation
            | ClosePunctuation
            | InitialPunctuation
            | FinalPunctuation
            | OtherPunctuation
    )
}

/// The GPT-2 pattern over one piece. The lookahead of `\s+(?!\S)` sees only
/// this piece: a whitespace run at the end of a piece is taken whole.
fn gpt2_matches(s: &str, out: &mut Vec<Range<usize>>) {
    let chars: Vec<(usize, char, Class)> =
        s.char_indices().map(|(i, c)| (i, c, class_of(c))).collect();
    let n = chars.len();
    let offset = |i: usize| if i < n { chars[i].0 } else { s.len() };
    let class_at = |i: usize| chars.get(i).map(|&(_, _, k)| k);
    let char_at = |i: usize| chars.get(i).map(|&(_, c, _)| c);
    let mut i = 0;
    while i < n {
        let (_, c, class) = chars[i];
        let start = i;
        // 's 't 're 've 'm 'll 'd (case-sensitive, like the original pattern)
        if c == '\'' {
            let len = match (char_at(i + 1), char_at(i + 2)) {
                (Some('s' | 't' | 'm' | 'd'), _) => 2,
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
                _ => 0,
            };
            if len > 0 {
                i += len;
                out.push(offset(start)..offset(i));
                continue;
            }
        }
        // ` ?X+` for X in letters, numbers, other: an optional ASCII space
        // glued to the run that follows it.
        let (run_start, run_class) = if c == ' ' {
            (i + 1, class_at(i + 1))
        } else {
            (i, Some(class))
        };
        if let Some(k @ (Class::Letter | Class::Number | Class::Other)) = run_class {
            i = run_start;
            while class_at(i) == Some(k) {
                i += 1;
            }
            out.push(offset(start)..offset(i));
            continue;
        }
        // `\s+(?!\S)|\s+`: a whitespace run, leaving its last char to the
        // next word when one follows inside this piece.
        let mut end = i;
        while class_at(end) == Some(Class::Space) {
            end += 1;
        }
        if end == i {
            // Unreachable (every class is handled above); advance regardless.
            end = i + 1;
        } else if end < n && end - i > 1 {
            end -= 1;
        }
        i = end;
        out.push(offset(start)..offset(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words<'a>(pre: &str, text: &'a str) -> Vec<&'a str> {
        PreTokenizer::by_name(pre)
            .unwrap()
            .split(text)
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    #[test]
    fn gpt2_basic_words_keep_leading_space() {
        assert_eq!(
            words("gpt2", "Hello, world!"),
            ["Hello", ",", " world", "!"]
        );
        assert_eq!(words("gpt2", " Hello world"), [" Hello", " world"]);
    }

    #[test]
    fn gpt2_contractions_are_case_sensitive() {
        assert_eq!(
            words("gpt2", "I'm we've they'll it's"),
            ["I", "'m", " we", "'ve", " they", "'ll", " it", "'s"]
        );
        assert_eq!(words("gpt2", "I'M"), ["I", "'", "M"]);
        assert_eq!(words("gpt2", "'%x"), ["'%", "x"]);
    }

    #[test]
    fn gpt2_whitespace_run_leaves_last_space_to_next_word() {
        assert_eq!(
            words("gpt2", "  Hello  world  "),
            [" ", " Hello", " ", " world", "  "]
        );
        // Only an ASCII space glues to the next word; other whitespace stands alone.
        assert_eq!(words("gpt2", "a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(words("gpt2", "x \t y"), ["x", " \t", " y"]);
        assert_eq!(words("gpt2", "\ttab"), ["\t", "tab"]);
    }

    #[test]
    fn gpt2_numbers_and_symbols() {
        assert_eq!(words("gpt2", "abc 12345 +-*"), ["abc", " 12345", " +-*"]);
        assert_eq!(words("gpt2", "x=1"), ["x", "=", "1"]);
    }

    #[test]
    fn smollm_splits_every_digit_and_bounds_the_lookahead() {
        assert_eq!(words("smollm", "12345"), ["1", "2", "3", "4", "5"]);
        // The space before a digit is its own piece, so it stays a lone " ".
        assert_eq!(
            words("smollm", "and 2024"),
            ["and", " ", "2", "0", "2", "4"]
        );
        assert_eq!(words("smollm", "3.14"), ["3", ".", "1", "4"]);
    }

    #[test]
    fn non_ascii_letters_and_numbers() {
        assert_eq!(words("gpt2", "naïve café"), ["naïve", " café"]);
        assert_eq!(
            words("gpt2", "日本語のテキスト。"),
            ["日本語のテキスト", "。"]
        );
        assert_eq!(words("smollm", "x²"), ["x", "²"]);
        // Emoji joined by ZWJ are one run of "other" characters.
        assert_eq!(words("gpt2", " 👨\u{200d}👩"), [" 👨\u{200d}👩"]);
    }

    #[test]
    fn default_groups_punctuation_and_digit_triples() {
        assert_eq!(words("default", "a+=b"), ["a", "+=", "b"]);
        assert_eq!(words("default", "1234567"), ["123", "456", "7"]);
    }

    #[test]
    fn splits_cover_the_text_exactly() {
        for pre in known_names() {
            let text = " a  1'x\t\n€ 😀 ..  ";
            assert_eq!(words(pre, text).concat(), text, "{pre}");
        }
        assert!(words("gpt2", "").is_empty());
    }

    #[test]
    fn unknown_name_is_none() {
        assert!(PreTokenizer::by_name("no-such-pre").is_none());
    }
}
