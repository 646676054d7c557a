//! Greedy continuations against llama.cpp's (`tests/data/generations.jsonl`):
//! the first 8 tokens agree on every prompt, and the whole continuation (48
//! tokens or until EOS) on at least half of them. Past the first near-tie,
//! two correct implementations may part ways (shared/reference/README.md).

mod common;

use common::{greedy, load};
use serde_json::Value;

#[test]
fn greedy_generations_match_llama_cpp() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/generations.jsonl")).unwrap();
    let (mut total, mut full) = (0, 0);
    let mut report = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let model = load(v["model"].as_str().unwrap());
        let ids = |k: &str| -> Vec<u32> { v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
        let (prompt, want) = (ids("prompt_ids"), ids("greedy_ids"));
        let got = greedy(&model, &prompt, want.len(), 512);
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        report += &format!("{} {:?}: {agree}/{} agree\n", v["model"], v["prompt"].as_str().unwrap_or("chat"), want.len());
        assert!(agree >= 8.min(want.len()), "{report}first 8 tokens differ: got {:?}", &got[..8.min(got.len())]);
        total += 1;
        if agree == want.len() {
            full += 1;
        }
    }
    eprintln!("{report}");
    assert!(2 * full >= total, "only {full} of {total} continuations agree fully:\n{report}");
}
