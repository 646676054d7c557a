//! Unit tests on tiny synthetic vocabularies (no model files needed).

use fulcrum_gguf::{GgufFile, GgufWriter, MetadataValue};

use super::*;

const UNK: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;
const FIRST_BYTE: u32 = 3;

/// A SentencePiece vocabulary: `<unk> <s> </s>`, 256 byte tokens, a few
/// pieces that spell "hello", a user-defined `<b>` and a control `<ctl>`.
fn spm_writer() -> GgufWriter {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (piece, score, ty) in [
        ("▁", -1.0, 1),
        ("h", -2.0, 1),
        ("e", -2.0, 1),
        ("l", -2.0, 1),
        ("o", -2.0, 1),
        ("ll", -4.0, 1),
        ("he", -5.0, 1),
        ("hell", -6.0, 1),
        ("hello", -7.0, 1),
        ("▁hello", -8.0, 1),
        ("<b>", 0.0, 4),
        ("<ctl>", 0.0, 3),
    ] {
        tokens.push(piece.into());
        scores.push(score);
        types.push(ty);
    }
    let mut w = GgufWriter::new();
    w.add_metadata(
        "tokenizer.ggml.model",
        MetadataValue::String("llama".into()),
    )
    .add_metadata("tokenizer.ggml.tokens", MetadataValue::strings(&tokens))
    .add_metadata("tokenizer.ggml.scores", MetadataValue::f32s(scores))
    .add_metadata("tokenizer.ggml.token_type", MetadataValue::i32s(types))
    .add_metadata("tokenizer.ggml.bos_token_id", MetadataValue::U32(BOS))
    .add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(EOS))
    .add_metadata(
        "tokenizer.ggml.add_space_prefix",
        MetadataValue::Bool(false),
    );
    w
}

/// A byte-level vocabulary: three control tokens, the 256 byte stand-ins,
/// and merges that spell "hello".
fn bpe_writer() -> GgufWriter {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types = vec![3, 3, 3];
    for c in bpe::byte_to_char_table() {
        tokens.push(c.to_string());
        types.push(1);
    }
    for piece in ["he", "ll", "hell", "hello"] {
        tokens.push(piece.into());
        types.push(1);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetadataValue::String("gpt2".into()))
        .add_metadata("tokenizer.ggml.pre", MetadataValue::String("smollm".into()))
        .add_metadata("tokenizer.ggml.tokens", MetadataValue::strings(&tokens))
        .add_metadata("tokenizer.ggml.token_type", MetadataValue::i32s(types))
        .add_metadata(
            "tokenizer.ggml.merges",
            MetadataValue::strings(["l l", "h e", "he ll", "hell o"]),
        )
        .add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(2));
    w
}

fn build(w: &GgufWriter) -> Result<Tokenizer, TokenizerError> {
    let file = GgufFile::from_bytes(&w.to_bytes()).expect("writer output parses");
    Tokenizer::from_gguf(&file)
}

fn spm() -> Tokenizer {
    build(&spm_writer()).unwrap()
}

fn byte_id(b: u8) -> u32 {
    FIRST_BYTE + b as u32
}

#[test]
fn spm_merges_by_score_and_marks_spaces() {
    let t = spm();
    assert_eq!(
        (t.bos_id(), t.eos_id(), t.unk_id()),
        (Some(BOS), Some(EOS), Some(UNK))
    );
    assert!(t.add_bos_default());
    let hello = t.token_id("hello").unwrap();
    let space_hello = t.token_id("▁hello").unwrap();
    assert_eq!(t.encode("hello hello", false, false), [hello, space_hello]);
    assert_eq!(t.encode("hello", true, false), [BOS, hello]);
    assert_eq!(t.decode(&[BOS, hello, space_hello], true), "hello hello");
    assert_eq!(t.decode(&[BOS, hello], false), "<s>hello");
}

#[test]
fn spm_unknown_chars_fall_back_to_bytes() {
    let t = spm();
    let ids = t.encode("h€", false, false);
    assert_eq!(
        ids,
        [
            t.token_id("h").unwrap(),
            byte_id(0xE2),
            byte_id(0x82),
            byte_id(0xAC)
        ]
    );
    assert_eq!(t.decode(&ids, false), "h€");
}

#[test]
fn stream_holds_back_a_character_split_over_byte_tokens() {
    let t = spm();
    let mut stream = t.stream_decoder(true);
    assert_eq!(stream.push(byte_id(0xE2)), "");
    assert_eq!(stream.push(byte_id(0x82)), "");
    assert!(stream.has_pending());
    assert_eq!(stream.push(byte_id(0xAC)), "€");
    assert_eq!(stream.finish(), "");
}

#[test]
fn stream_decoder_can_own_a_shared_tokenizer() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Tokenizer>();
    let t = std::sync::Arc::new(spm());
    let hello = t.token_id("hello").unwrap();
    let mut stream = StreamDecoder::new(std::sync::Arc::clone(&t), false);
    assert_eq!(stream.push(hello), "hello");
}

#[test]
fn stream_finish_replaces_an_incomplete_tail() {
    let t = spm();
    let mut stream = t.stream_decoder(true);
    assert_eq!(stream.push(t.token_id("h").unwrap()), "h");
    assert_eq!(stream.push(byte_id(0xE2)), "");
    assert_eq!(stream.finish(), "\u{FFFD}");
    assert_eq!(
        t.decode(&[t.token_id("h").unwrap(), byte_id(0xE2)], true),
        "h\u{FFFD}"
    );
}

#[test]
fn user_defined_tokens_always_match_control_only_with_parse_special() {
    let t = spm();
    let b = t.token_id("<b>").unwrap();
    let ctl = t.token_id("<ctl>").unwrap();
    assert_eq!(t.encode("<b>", false, false), [b]);
    assert_eq!(t.encode("<ctl>", false, true), [ctl]);
    let plain = t.encode("<ctl>", false, false);
    assert!(!plain.contains(&ctl));
    assert_eq!(t.decode(&plain, true), "<ctl>");
    assert!(t.is_special(ctl) && !t.is_special(b));
    assert_eq!(t.decode(&[ctl, b], true), "<b>");
}

#[test]
fn spm_space_prefix_after_special_tokens() {
    let mut w = spm_writer();
    w.add_metadata("tokenizer.ggml.add_space_prefix", MetadataValue::Bool(true));
    let t = build(&w).unwrap();
    let ctl = t.token_id("<ctl>").unwrap();
    let space_hello = t.token_id("▁hello").unwrap();
    assert_eq!(
        t.encode("hello<ctl>hello", false, true),
        [space_hello, ctl, space_hello]
    );
}

#[test]
fn byte_level_bpe_merges_by_rank() {
    let t = build(&bpe_writer()).unwrap();
    assert_eq!(t.kind(), TokenizerKind::ByteLevelBpe);
    let hello = t.token_id("hello").unwrap();
    let space = t.token_id("Ġ").unwrap();
    assert_eq!(t.encode("hello hello", true, false), [hello, space, hello]);
    assert_eq!(t.encode("<|im_start|>hello", false, true), [1, hello]);
    assert_eq!(t.decode(&[1, hello, space, hello, 2], true), "hello hello");
    assert!(!t.add_bos_default());
    assert_eq!(t.stop_token_ids(), [0, 2]);
}

#[test]
fn byte_level_round_trips_arbitrary_text() {
    let t = build(&bpe_writer()).unwrap();
    for text in ["", " ", "héllo\n\t wörld 😀 ½ 12", "\u{0}\u{7f}\r\n"] {
        assert_eq!(t.decode(&t.encode(text, false, false), false), text);
    }
}

#[test]
fn unknown_model_is_named() {
    let mut w = spm_writer();
    w.add_metadata("tokenizer.ggml.model", MetadataValue::String("bert".into()));
    let err = build(&w).unwrap_err();
    assert!(matches!(&err, TokenizerError::UnsupportedModel(m) if m == "bert"));
    assert!(err.to_string().contains("`bert`"));
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    let mut w = bpe_writer();
    w.add_metadata(
        "tokenizer.ggml.pre",
        MetadataValue::String("klingon".into()),
    );
    let err = build(&w).unwrap_err();
    assert!(err.to_string().contains("`klingon`"), "{err}");
    assert!(err.to_string().contains("`smollm`"), "{err}");
}

#[test]
fn malformed_metadata_is_an_error_not_a_panic() {
    let mut w = spm_writer();
    w.add_metadata("tokenizer.ggml.token_type", MetadataValue::i32s([1, 1]));
    assert!(matches!(
        build(&w),
        Err(TokenizerError::Malformed {
            key: "tokenizer.ggml.token_type",
            ..
        })
    ));

    let mut w = spm_writer();
    w.add_metadata("tokenizer.ggml.token_type", MetadataValue::strings(["x"]));
    assert!(matches!(build(&w), Err(TokenizerError::Metadata(_))));

    let mut w = spm_writer();
    w.add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(1 << 20));
    assert!(matches!(
        build(&w),
        Err(TokenizerError::IdOutOfRange {
            key: "tokenizer.ggml.eos_token_id",
            ..
        })
    ));

    let mut w = spm_writer();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetadataValue::strings(Vec::<String>::new()),
    );
    assert!(matches!(build(&w), Err(TokenizerError::EmptyVocab)));

    let mut w = bpe_writer();
    w.add_metadata("tokenizer.ggml.merges", MetadataValue::strings(["nospace"]));
    assert!(matches!(
        build(&w),
        Err(TokenizerError::Malformed {
            key: "tokenizer.ggml.merges",
            ..
        })
    ));

    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetadataValue::String("gpt2".into()));
    let err = build(&w).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
}

#[test]
fn out_of_range_ids_decode_to_nothing() {
    let t = spm();
    assert_eq!(t.decode(&[u32::MAX, 1 << 30], false), "");
    assert_eq!(t.token_text(u32::MAX), None);
}
