//! Next-token distributions against llama.cpp's on the same files
//! (`tests/data/logits.jsonl`, copied from `shared/reference/`): same top-1
//! token, top-10 log-probabilities within 0.15 (the spread between
//! llama.cpp's own two attention paths).

mod common;

use common::{load, next_logprobs};
use serde_json::Value;

#[test]
fn logits_match_llama_cpp() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/logits.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let model = load(v["model"].as_str().unwrap());
        let ids: Vec<u32> = v["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let lp = next_logprobs(&model, &ids);
        let top10 = v["top10"].as_array().unwrap();
        let best = lp.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(best as u64, top10[0]["id"].as_u64().unwrap(), "top-1 for {:?}", v["prompt"]);
        for e in top10 {
            let id = e["id"].as_u64().unwrap() as usize;
            let want = e["logprob"].as_f64().unwrap() as f32;
            let got = lp[id];
            assert!((got - want).abs() < 0.15, "{} {:?}: token {id} logprob {got} vs llama.cpp {want}", v["model"], v["prompt"]);
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}
