//! Unit tests of template rendering (no model files needed).

use super::*;

fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs.iter().map(|&(r, c)| ChatMessage::new(r, c)).collect()
}

#[test]
fn builtins_compile_and_are_send_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<ChatTemplate>();
    for b in [BuiltinTemplate::ChatMl, BuiltinTemplate::Gemma] {
        assert!(
            ChatTemplate::new(b.source(), "<bos>", "<eos>").is_ok(),
            "{b:?}"
        );
    }
}

#[test]
fn chatml_renders_turns() {
    let t = ChatTemplate::builtin(BuiltinTemplate::ChatMl, "", "").unwrap();
    let out = t
        .render(&msgs(&[("system", "S"), ("user", "hi")]), true)
        .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let out = t.render(&msgs(&[("user", "hi")]), false).unwrap();
    assert_eq!(out, "<|im_start|>user\nhi<|im_end|>\n");
}

#[test]
fn python_string_methods_work() {
    let t = ChatTemplate::new(
        "{{ messages[0].content.strip().split(',')[1] }}{% if messages[0].role.startswith('us') %}!{% endif %}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&msgs(&[("user", "  a,b  ")]), false).unwrap(),
        "b!"
    );
}

#[test]
fn strftime_now_is_available() {
    let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
    let year: i32 = t.render(&[], false).unwrap().parse().unwrap();
    assert!(year >= 2024);
}
