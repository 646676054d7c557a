//! Chat templates from the real model files: SmolLM2's own template must
//! render exactly what llama.cpp rendered for the reference generations;
//! Gemma 3 (no template in its file) gets fulcrum's built-in Gemma format.

use std::path::PathBuf;

use fulcrum_gguf::{GgufFile, GgufWriter, MetadataValue};
use fulcrum_model::chat::{BuiltinTemplate, ChatError, ChatMessage, ChatTemplate};
use fulcrum_model::registry::test_model_path;
use fulcrum_model::tokenizer::Tokenizer;

/// The last line of `../shared/reference/generations.jsonl`: SmolLM2, one
/// user message, rendered with `add_generation_prompt` and tokenized by
/// llama.cpp. Kept here so a clean checkout needs no shared/ folder; the
/// test below checks it against the original wherever that is present.
const SMOLLM_MESSAGES_JSON: &str = r#"[{"role": "user", "content": "What is 2+2?"}]"#;
const SMOLLM_PROMPT: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
const SMOLLM_PROMPT_IDS: &[u32] = &[
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
    19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198,
];

fn load(alias: &str) -> (GgufFile, Tokenizer) {
    let file = GgufFile::open(test_model_path(alias)).expect("model file opens");
    let tokenizer = Tokenizer::from_gguf(&file).expect("tokenizer builds");
    (file, tokenizer)
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs
        .iter()
        .map(|&(role, content)| ChatMessage::new(role, content))
        .collect()
}

#[test]
fn reference_constants_equal_the_shared_generations_file() {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/generations.jsonl"
    ));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return; // a clean checkout without shared/: the constants stand alone
    };
    let last: serde_json::Value =
        serde_json::from_str(text.lines().rev().find(|l| !l.trim().is_empty()).unwrap()).unwrap();
    assert_eq!(last["templated_prompt"], SMOLLM_PROMPT);
    let ids: Vec<u32> = serde_json::from_value(last["prompt_ids"].clone()).unwrap();
    assert_eq!(ids, SMOLLM_PROMPT_IDS);
    let messages: Vec<ChatMessage> = serde_json::from_value(last["chat_messages"].clone()).unwrap();
    assert_eq!(
        messages,
        serde_json::from_str::<Vec<ChatMessage>>(SMOLLM_MESSAGES_JSON).unwrap()
    );
}

#[test]
fn smollm2_template_renders_the_reference_prompt_and_tokens() {
    let (file, tokenizer) = load("smollm2-135m");
    let template = ChatTemplate::from_gguf(&file, &tokenizer).unwrap();
    assert!(
        template.source().contains("SmolLM"),
        "uses the file's own template"
    );
    let messages: Vec<ChatMessage> = serde_json::from_str(SMOLLM_MESSAGES_JSON).unwrap();
    let prompt = template.render(&messages, true).unwrap();
    assert_eq!(prompt, SMOLLM_PROMPT);
    assert_eq!(tokenizer.encode(&prompt, true, true), SMOLLM_PROMPT_IDS);
}

#[test]
fn smollm2_system_message_replaces_the_default_one() {
    let (file, tokenizer) = load("smollm2-135m");
    let template = ChatTemplate::from_gguf(&file, &tokenizer).unwrap();
    let prompt = template
        .render(
            &msgs(&[
                ("system", "You are a pirate."),
                ("user", "Hi"),
                ("assistant", "Arr!"),
                ("user", "Bye"),
            ]),
            true,
        )
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nArr!<|im_end|>\n\
         <|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    );
    let without_prompt = template.render(&msgs(&[("user", "Hi")]), false).unwrap();
    assert!(
        without_prompt.ends_with("<|im_start|>user\nHi<|im_end|>\n"),
        "{without_prompt:?}"
    );
}

#[test]
fn gemma3_gets_the_builtin_turn_format() {
    let (file, tokenizer) = load("gemma3-270m");
    let template = ChatTemplate::from_gguf(&file, &tokenizer).unwrap();
    assert_eq!(template.source(), BuiltinTemplate::Gemma.source());

    let prompt = template.render(&msgs(&[("user", "hi")]), true).unwrap();
    assert_eq!(
        prompt,
        "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    );
    // The rendered BOS is text; tokenizing with parse_special (and without
    // adding another BOS) gives llama.cpp's ids for the same turn string.
    let mut want = vec![2];
    want.extend([105, 2364, 107, 2202, 106, 107, 105, 4368, 107]);
    assert_eq!(tokenizer.encode(&prompt, false, true), want);

    let prompt = template
        .render(
            &msgs(&[
                ("system", "Be brief. "),
                ("user", "hi"),
                ("assistant", " Hello! "),
                ("user", "bye"),
            ]),
            true,
        )
        .unwrap();
    assert_eq!(
        prompt,
        "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nbye<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn gemma_template_rejects_roles_that_do_not_alternate() {
    let template = ChatTemplate::builtin(BuiltinTemplate::Gemma, "<bos>", "<eos>").unwrap();
    let err = template
        .render(&msgs(&[("user", "a"), ("user", "b")]), true)
        .unwrap_err();
    assert!(
        matches!(&err, ChatError::Raised(m) if m.contains("alternate")),
        "{err}"
    );
}

#[test]
fn architecture_without_template_falls_back_to_chatml() {
    let (_, tokenizer) = load("smollm2-135m");
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        MetadataValue::String("llama".into()),
    );
    let file = GgufFile::from_bytes(&w.to_bytes()).unwrap();
    let template = ChatTemplate::from_gguf(&file, &tokenizer).unwrap();
    assert_eq!(template.source(), BuiltinTemplate::ChatMl.source());
    assert_eq!(
        template.render(&msgs(&[("user", "hi")]), true).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn raise_exception_becomes_a_typed_error_with_the_message() {
    let template = ChatTemplate::new(
        "{% if messages | length == 0 %}{{ raise_exception('no messages given') }}{% endif %}ok",
        "",
        "",
    )
    .unwrap();
    match template.render(&[], true) {
        Err(ChatError::Raised(message)) => assert_eq!(message, "no messages given"),
        other => panic!("expected ChatError::Raised, got {other:?}"),
    }
    assert_eq!(
        template.render(&msgs(&[("user", "x")]), true).unwrap(),
        "ok"
    );
}

#[test]
fn syntax_errors_surface_at_construction() {
    let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}", "", "").unwrap_err();
    assert!(matches!(err, ChatError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
    let err = ChatTemplate::new("{{ messages[0].content ", "", "").unwrap_err();
    assert!(matches!(err, ChatError::Syntax(_)), "{err}");
}

#[test]
fn runtime_errors_are_typed_too() {
    let template = ChatTemplate::new("{{ no_such_function() }}", "", "").unwrap();
    assert!(matches!(
        template.render(&[], false),
        Err(ChatError::Render(_))
    ));
    let template = ChatTemplate::new("{{ messages[0].content + 1 }}", "", "").unwrap();
    assert!(matches!(
        template.render(&msgs(&[("user", "x")]), false),
        Err(ChatError::Render(_))
    ));
}

#[test]
fn hugging_face_conventions_work() {
    // trim_blocks/lstrip_blocks, loop helpers, bos/eos variables, tojson, namespace.
    let source = "{{ bos_token }}\n{% set ns = namespace(n=0) %}\n{% for m in messages %}\n    {% set ns.n = ns.n + 1 %}\n    {{ loop.index }}:{{ m.role | upper }}={{ m.content | trim | tojson }}{% if not loop.last %},{% endif %}\n{% endfor %}\n{{ ns.n }}{{ eos_token }}";
    let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
    let out = template
        .render(&msgs(&[("user", " a "), ("assistant", "b")]), false)
        .unwrap();
    // Block tags eat their own line's indentation and newline; variable tags do not.
    assert_eq!(out, "<s>\n    1:USER=\"a\",    2:ASSISTANT=\"b\"2</s>");
}
