mod common;
use common::{load, next_logprobs};
use serde_json::Value;
#[test]
fn debug() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/logits.jsonl")).unwrap();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let model = load(v["model"].as_str().unwrap());
        let ids: Vec<u32> = v["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let lp = next_logprobs(&model, &ids);
        let mut s = String::new();
        for e in v["top10"].as_array().unwrap() {
            let id = e["id"].as_u64().unwrap() as usize;
            s += &format!("{:+.3} ", lp[id] - e["logprob"].as_f64().unwrap() as f32);
        }
        eprintln!("{} {:?}: {}", v["model"], v["prompt"], s);
    }
}
