//! End-to-end tests of the built `fulcrum` binary on the real SmolLM2:
//! `generate` (text, `--json`, offline `--prompts`), `tokenize`, `chat`
//! through a pipe, and bad input, which must give a clear error and a
//! non-zero exit, never a panic.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use fulcrum_engine::{Engine, EngineConfig, EngineOptions, Prompt, RequestInput, SamplingParams};
use fulcrum_model::Model;
use serde_json::Value;

const PROMPT: &str = "The capital of France is";

fn model_path() -> String {
    fulcrum_model::registry::test_model_path("smollm2-135m")
        .display()
        .to_string()
}

/// Runs `fulcrum ARGS` with `stdin`, on the test model, 2 threads.
fn fulcrum(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(args)
        .env("FULCRUM_THREADS", "2")
        .env("FULCRUM_MODEL", model_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Fails cleanly: non-zero exit, an `error:` line containing `expected`.
fn assert_clean_error(out: &Output, expected: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(
        err.contains("error") && err.contains(expected),
        "{err:?} should mention {expected:?}"
    );
}

fn engine_greedy_ids(prompt: &str, max_tokens: usize) -> Vec<u32> {
    let model = Arc::new(Model::load(model_path()).unwrap());
    let options = EngineOptions {
        max_num_seqs: 1,
        threads: Some(2),
        ..EngineOptions::default()
    };
    let engine = Engine::start(
        model.clone(),
        EngineConfig::resolve(&options, &model.config).unwrap(),
    )
    .unwrap();
    let params = SamplingParams {
        max_tokens: Some(max_tokens),
        ..SamplingParams::greedy()
    };
    let handle = engine
        .add_request(RequestInput::new(Prompt::Text(prompt.into()), params))
        .unwrap();
    handle.blocking_collect().unwrap().choices[0]
        .token_ids
        .clone()
}

#[test]
fn generate_json_carries_the_engines_greedy_ids_and_the_stats() {
    let out = fulcrum(
        &[
            "generate",
            "--prompt",
            PROMPT,
            "--max-tokens",
            "8",
            "--json",
            "--top-logprobs",
            "3",
        ],
        "",
    );
    assert_ok(&out);
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let ids: Vec<u32> = serde_json::from_value(v["output_ids"].clone()).unwrap();
    assert_eq!(ids, engine_greedy_ids(PROMPT, 8));
    assert_eq!(
        v["prompt_ids"],
        serde_json::json!([504, 3575, 282, 4649, 314])
    );
    assert_eq!(
        (v["prompt_tokens"].as_u64(), v["output_tokens"].as_u64()),
        (Some(5), Some(8))
    );
    assert_eq!(v["finish_reason"], "length");
    assert!(v["text"].as_str().unwrap().starts_with(" Paris"));
    for field in ["prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms"] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {v}");
    }
    let top = v["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), 8);
    for (position, alternatives) in top.iter().enumerate() {
        let alternatives = alternatives.as_array().unwrap();
        assert_eq!(alternatives.len(), 3);
        assert_eq!(
            alternatives[0]["id"].as_u64(),
            Some(u64::from(ids[position])),
            "greedy picks the top"
        );
        let logprobs: Vec<f64> = alternatives
            .iter()
            .map(|a| a["logprob"].as_f64().unwrap())
            .collect();
        assert!(logprobs.windows(2).all(|w| w[0] >= w[1]) && logprobs[0] <= 0.0);
    }
}

#[test]
fn generate_streams_text_from_stdin_and_prints_stats() {
    let out = fulcrum(&["generate", "-n", "6", "--stats"], &format!("{PROMPT}\n"));
    assert_ok(&out);
    assert!(stdout(&out).starts_with(" Paris"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("prompt tokens 5") && err.contains("decode") && err.contains("TTFT"),
        "{err}"
    );
}

#[test]
fn generate_offline_runs_a_file_of_prompts() {
    let dir = std::env::temp_dir().join(format!("fulcrum-cli-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompts = dir.join("prompts.jsonl");
    let results = dir.join("results.jsonl");
    std::fs::write(
        &prompts,
        format!(
            "{{\"prompt\": \"{PROMPT}\", \"id\": 7}}\n\n{{\"prompt_ids\": [504, 3575, 282, 4649, 314], \"max_tokens\": 3}}\n\
             {{\"prompt\": \"Once upon a time\", \"temperature\": 0.9, \"seed\": 5}}\n"
        ),
    )
    .unwrap();
    let args = [
        "generate",
        "--prompts",
        prompts.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
    ];
    let out = fulcrum(
        &[
            &args[..],
            &[
                "-n",
                "8",
                "--json",
                "--max-num-seqs",
                "2",
                "--policy",
                "decode-first",
            ],
        ]
        .concat(),
        "",
    );
    assert_ok(&out);
    let summary: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (
            summary["requests"].as_u64(),
            summary["output_tokens"].as_u64()
        ),
        (Some(3), Some(8 + 3 + 8))
    );
    for field in ["elapsed_s", "output_tokens_per_s"] {
        assert!(
            summary[field].as_f64().is_some_and(|x| x > 0.0),
            "{summary}"
        );
    }
    assert!(summary["ttft_ms"]["p50"].is_number() && summary["tpot_ms"]["p99"].is_number());
    assert!(summary["preemptions"].is_u64() && summary["prefix_cache_hit_tokens"].is_u64());
    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (
            lines[0]["id"].as_u64(),
            lines[0]["line"].as_u64(),
            lines[2]["line"].as_u64()
        ),
        (Some(7), Some(1), Some(4))
    );
    let ids: Vec<u32> = serde_json::from_value(lines[0]["output_ids"].clone()).unwrap();
    assert_eq!(ids, engine_greedy_ids(PROMPT, 8));
    assert_eq!(lines[1]["output_ids"].as_array().unwrap().len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["ttft_ms"].is_number() && l["finish_reason"] == "length"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tokenize_prints_the_ids() {
    let out = fulcrum(&["tokenize", "--model", &model_path(), PROMPT], "");
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "[504,3575,282,4649,314]");
    let out = fulcrum(
        &[
            "tokenize",
            "--model",
            &model_path(),
            "--detokenize",
            "[504,3575,282,4649,314]",
        ],
        "",
    );
    assert_ok(&out);
    assert_eq!(stdout(&out).trim_end_matches('\n'), PROMPT);
}

#[test]
fn chat_works_through_a_pipe() {
    let input = "Say hello.\n/reset\n\nWhat is 2+2?\n/exit\nnever read\n";
    let out = fulcrum(&["chat", "--temperature", "0", "--max-tokens", "24"], input);
    assert_ok(&out);
    let text = stdout(&out);
    let replies: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(replies.len(), 2, "two replies expected: {text:?}");
    // After /reset the question starts a fresh conversation: llama.cpp's
    // greedy answer (../shared/reference/generations.jsonl) to exactly it.
    assert_eq!(replies[1], "The answer to this classic math problem is 4.");
    assert!(stderr(&out).contains("(conversation reset)"));
}

#[test]
fn models_path_takes_an_alias_or_a_file() {
    // Scripts pass either (`scripts/offline-throughput.sh MODEL`).
    let path = model_path();
    let out = fulcrum(&["models", "path", &path], "");
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), path);
    assert_clean_error(
        &fulcrum(&["models", "path", "/no/such/model.gguf"], ""),
        "unknown model alias `/no/such/model.gguf` and no such file",
    );
}

#[test]
fn bad_input_is_a_clean_error() {
    let long_prompt = "word ".repeat(200);
    let cases: [(&[&str], &str, &str); 7] = [
        (
            &["generate", "--model", "no-such-model", "-p", "hi"],
            "",
            "no-such-model",
        ),
        (
            &["generate", "-p", "hi", "--temperature", "-1"],
            "",
            "`--temperature` must be a finite number >= 0",
        ),
        (
            &["generate", "-p", "hi", "--top-p", "1.5"],
            "",
            "`--top-p` must be in (0, 1]",
        ),
        (&["generate", "-p", ""], "", "the prompt is empty"),
        (&["generate"], "", "the prompt is empty"),
        (
            &["generate", "-p", &long_prompt, "--max-model-len", "64"],
            "",
            "maximum context length is 64 tokens",
        ),
        (
            &["generate", "-p", "hi", "--json", "--top-logprobs", "50"],
            "",
            "`--top-logprobs` must be in [0, 20]",
        ),
    ];
    for (args, stdin, expected) in cases {
        assert_clean_error(&fulcrum(args, stdin), expected);
    }
    assert_clean_error(
        &fulcrum(&["generate", "-p", "hi", "--kv-cache-memory", "lots"], ""),
        "`kv_cache_memory`",
    );
    assert_clean_error(
        &fulcrum(&["generate", "-p", "hi", "--policy", "fifo"], ""),
        "unknown policy `fifo`",
    );
    let bad_file =
        std::env::temp_dir().join(format!("fulcrum-cli-bad-{}.jsonl", std::process::id()));
    std::fs::write(
        &bad_file,
        "{\"prompt\": \"ok\"}\n{\"prompt\": \"x\", \"max_token\": 3}\n",
    )
    .unwrap();
    assert_clean_error(
        &fulcrum(&["generate", "--prompts", bad_file.to_str().unwrap()], ""),
        "line 2",
    );
    std::fs::remove_file(&bad_file).ok();
}
