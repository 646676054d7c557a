//! Tokenizers built from the real model files against llama.cpp's token ids.
//!
//! `tests/data/tokenizer-*.jsonl` are copies of `../shared/reference/`
//! (llama.cpp's `llama_tokenize` output, one case per line); a test checks
//! the copies still equal the originals wherever those are present.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fulcrum_gguf::GgufFile;
use fulcrum_model::registry::test_model_path;
use fulcrum_model::tokenizer::{Tokenizer, TokenizerKind};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    text: String,
    /// Whether llama.cpp prepended BOS.
    add_bos: bool,
    parse_special: bool,
    ids: Vec<u32>,
}

const SMOLLM_CASES: &str = "tokenizer-smollm2.jsonl";
const GEMMA_CASES: &str = "tokenizer-gemma3.jsonl";

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn shared_reference_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference"
    ))
    .join(name)
}

fn cases(name: &str) -> Vec<Case> {
    let path = data_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1))
        })
        .collect();
    assert!(!cases.is_empty(), "{name} has no cases");
    cases
}

fn load(alias: &str) -> Tokenizer {
    let file = GgufFile::open(test_model_path(alias)).expect("model file opens");
    Tokenizer::from_gguf(&file).expect("tokenizer builds")
}

fn smollm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("smollm2-135m"))
}

fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("gemma3-270m"))
}

/// Encodes every case and reports all mismatches at once.
fn assert_matches_reference(tok: &Tokenizer, name: &str) {
    let cases = cases(name);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // `add_bos` in the file records whether BOS was added; our flag asks
        // for it where the model wants it, so the two must agree.
        if case.add_bos {
            assert!(
                tok.add_bos_default(),
                "{name} line {}: reference added BOS but the model does not ask for it",
                i + 1
            );
        }
        let got = tok.encode(&case.text, case.add_bos, case.parse_special);
        if got != case.ids {
            failures.push(format!(
                "line {} text={:?} add_bos={} parse_special={}\n  want {:?}\n  got  {:?}",
                i + 1,
                case.text,
                case.add_bos,
                case.parse_special,
                case.ids,
                got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp_on_every_line() {
    assert_matches_reference(smollm(), SMOLLM_CASES);
}

#[test]
fn gemma3_matches_llama_cpp_on_every_line() {
    assert_matches_reference(gemma(), GEMMA_CASES);
}

#[test]
fn reference_copies_equal_the_shared_originals() {
    for name in [SMOLLM_CASES, GEMMA_CASES] {
        let shared = shared_reference_path(name);
        if let Ok(original) = std::fs::read(&shared) {
            assert_eq!(
                std::fs::read(data_path(name)).unwrap(),
                original,
                "tests/data/{name} is stale; copy it from {}",
                shared.display()
            );
        }
    }
}

fn assert_round_trips(tok: &Tokenizer, name: &str) {
    for case in cases(name) {
        let ids = tok.encode(&case.text, false, case.parse_special);
        assert_eq!(
            tok.decode(&ids, false),
            case.text,
            "{name}: {:?}",
            case.text
        );
    }
}

#[test]
fn smollm2_decode_inverts_encode() {
    assert_round_trips(smollm(), SMOLLM_CASES);
}

#[test]
fn gemma3_decode_inverts_encode() {
    assert_round_trips(gemma(), GEMMA_CASES);
}

fn assert_stream_equals_one_shot(tok: &Tokenizer, name: &str) {
    for case in cases(name) {
        for skip_special in [false, true] {
            let mut stream = tok.stream_decoder(skip_special);
            let mut streamed: String = case.ids.iter().map(|&id| stream.push(id)).collect();
            streamed += &stream.finish();
            assert_eq!(
                streamed,
                tok.decode(&case.ids, skip_special),
                "{name}: {:?} skip_special={skip_special}",
                case.text
            );
        }
    }
}

#[test]
fn smollm2_stream_decoder_equals_one_shot_decode() {
    assert_stream_equals_one_shot(smollm(), SMOLLM_CASES);
}

#[test]
fn gemma3_stream_decoder_equals_one_shot_decode() {
    assert_stream_equals_one_shot(gemma(), GEMMA_CASES);
}

#[test]
fn smollm2_stream_holds_back_split_characters() {
    // Byte-level BPE splits "日" (3 bytes) into tokens that end mid-character.
    let tok = smollm();
    let ids = tok.encode("日本語", false, false);
    let mut stream = tok.stream_decoder(true);
    let pieces: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat() + &stream.finish(), "日本語");
}

#[test]
fn smollm2_special_tokens_and_ids() {
    let tok = smollm();
    assert_eq!(tok.kind(), TokenizerKind::ByteLevelBpe);
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert!(!tok.add_bos_default());
    assert_eq!(tok.token_text(2), Some("<|im_end|>"));
    assert!(tok.is_special(1) && !tok.is_special(19556));
    // <|endoftext|> and <|im_end|> (= EOS) both end a generation.
    assert_eq!(tok.stop_token_ids(), [0, 2]);
    assert_eq!(tok.decode(&[1, 4093, 198, 19556, 2], true), "user\nHello");
}

#[test]
fn gemma3_special_tokens_and_ids() {
    let tok = gemma();
    assert_eq!(tok.kind(), TokenizerKind::SentencePieceBpe);
    assert_eq!(tok.vocab_size(), 262144);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(2), Some(1)));
    assert!(tok.add_bos_default());
    assert_eq!(tok.token_text(106), Some("<end_of_turn>"));
    assert!(tok.is_stop_token(1) && tok.is_stop_token(106));
    assert_eq!(tok.stop_token_ids(), [1, 106]);
    assert!(tok.is_special(105) && !tok.is_special(107));
}

/// About 2,000 tokens of mixed prose, code and numbers.
fn long_prompt() -> String {
    let paragraph = "The quick brown fox jumps over the lazy dog, 1,234 times; fn main() { println!(\"{}\", 42); }\n\
                     Ünïcödé text, 日本語のテキスト and emoji 😀 appear too.  Whitespace\truns   matter.\n";
    paragraph.repeat(40)
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn encoding_a_2000_token_prompt_is_fast() {
    let text = long_prompt();
    for (name, tok) in [("smollm2", smollm()), ("gemma3", gemma())] {
        let num_tokens = tok.encode(&text, true, true).len();
        assert!(num_tokens > 1500, "{name}: only {num_tokens} tokens");
        let best = best_of(5, || {
            std::hint::black_box(tok.encode(&text, true, true));
        });
        eprintln!("{name}: {num_tokens} tokens in {best:?}");
        assert!(
            best < Duration::from_millis(50),
            "{name}: {num_tokens} tokens took {best:?}"
        );
    }
}

/// Strings that exercise the tokenizers' edges: special-token text, runs of
/// whitespace, digits, multi-byte characters, unassigned code points.
fn tricky_text() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        any::<char>().prop_map(String::from),
        Just(" ".to_string()),
        Just("  ".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("'s".to_string()),
        Just("<|im_start|>".to_string()),
        Just("<|im_end|>".to_string()),
        Just("<start_of_turn>".to_string()),
        Just("<h1>".to_string()),
        Just("<0x41>".to_string()),
        Just("123".to_string()),
        Just("€".to_string()),
        Just("👨\u{200d}👩".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
}

/// The GPT-2 byte alphabet, written out independently of the library: the
/// character that stands for each byte in byte-level BPE vocabularies.
fn gpt2_byte_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap()
}

/// Whether every byte of `text` has a token in the vocabulary. SmolLM2 has
/// none for 0x04 0x06 0x13 0x14 0x16 0x1D 0xF1 0xF2 (and the never-valid
/// C0 C1 F5–FF); llama.cpp drops such bytes, and so do we.
fn spellable(tok: &Tokenizer, text: &str) -> bool {
    text.bytes()
        .all(|b| tok.token_id(&gpt2_byte_char(b).to_string()).is_some())
}

#[test]
fn smollm2_drops_unspellable_bytes_like_llama_cpp() {
    let tok = smollm();
    assert!(!spellable(tok, "\u{4}"));
    assert_eq!(tok.encode("a\u{4}b", false, false), [81, 82]);
    assert!(
        !tok.encode("\u{40000}", false, false).contains(&0),
        "must not turn into <|endoftext|>"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn byte_level_never_panics_and_round_trips(text in tricky_text(), parse_special: bool) {
        let tok = smollm();
        let ids = tok.encode(&text, true, parse_special);
        prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        if spellable(tok, &text) {
            prop_assert_eq!(tok.decode(&ids, false), text);
        }
    }

    #[test]
    fn byte_level_round_trips_any_spellable_string(text in any::<String>()) {
        let tok = smollm();
        let ids = tok.encode(&text, false, false);
        if spellable(tok, &text) {
            prop_assert_eq!(tok.decode(&ids, false), text);
        }
    }

    #[test]
    fn sentencepiece_never_panics(text in tricky_text(), parse_special: bool) {
        let tok = gemma();
        let ids = tok.encode(&text, false, parse_special);
        prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        // "▁" in the input reads back as a space: SentencePiece cannot tell them apart.
        if !text.contains('\u{2581}') {
            prop_assert_eq!(tok.decode(&ids, false), text);
        }
    }
}
