//! Prompts a user brings: one JSON object per line (JSONL), or one JSON
//! array of such objects (how ShareGPT dumps are usually shipped).
//!
//! Two shapes are understood: `{"prompt": "...", "max_tokens"?: n}`, and
//! ShareGPT-style `{"conversations": [{"from": "human", "value": "..."}, ...]}`
//! whose first human turn becomes the prompt. Conversations without a human
//! turn are skipped (real dumps have some); anything else is an error that
//! names the line, because a silently half-read dataset measures the wrong
//! thing.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::BenchError;

#[derive(Clone, Debug, PartialEq)]
pub struct DatasetEntry {
    pub prompt: String,
    pub max_tokens: Option<usize>,
}

#[derive(Deserialize)]
struct Turn {
    from: String,
    value: String,
}

/// Reads a dataset file; errors name the file and line.
pub fn load_dataset(path: &Path) -> Result<Vec<DatasetEntry>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, reason: String| BenchError::Dataset {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut entries = Vec::new();
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| bad(e.line(), e.to_string()))?;
        for (i, item) in items.iter().enumerate() {
            // Line numbers mean little inside one array: report the item.
            let entry =
                parse_item(item).map_err(|reason| bad(1, format!("array item {i}: {reason}")))?;
            entries.extend(entry);
        }
    } else {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let item: Value =
                serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not JSON ({e})")))?;
            entries.extend(parse_item(&item).map_err(|reason| bad(i + 1, reason))?);
        }
    }
    if entries.is_empty() {
        return Err(bad(0, "no prompts in the dataset".into()));
    }
    Ok(entries)
}

/// One entry, `None` for a conversation with no human turn.
fn parse_item(item: &Value) -> Result<Option<DatasetEntry>, String> {
    let Some(object) = item.as_object() else {
        return Err("expected a JSON object with `prompt` or `conversations`".into());
    };
    if let Some(prompt) = object.get("prompt") {
        let prompt = prompt.as_str().ok_or("`prompt` must be a string")?;
        let max_tokens = match object.get("max_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Some(n as usize),
                _ => return Err(format!("`max_tokens` must be a positive integer, not {v}")),
            },
        };
        return Ok(Some(DatasetEntry {
            prompt: prompt.to_string(),
            max_tokens,
        }));
    }
    if let Some(turns) = object.get("conversations") {
        let turns: Vec<Turn> = serde_json::from_value(turns.clone()).map_err(|e| {
            format!("`conversations` must be a list of {{from, value}} turns ({e})")
        })?;
        let first_human = turns
            .into_iter()
            .find(|t| t.from == "human" || t.from == "user");
        return Ok(first_human.map(|t| DatasetEntry {
            prompt: t.value,
            max_tokens: None,
        }));
    }
    Err("expected a JSON object with `prompt` or `conversations`".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, contents: &str) -> Result<Vec<DatasetEntry>, BenchError> {
        let path =
            std::env::temp_dir().join(format!("fulcrum-bench-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        let result = load_dataset(&path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    fn entry(prompt: &str, max_tokens: Option<usize>) -> DatasetEntry {
        DatasetEntry {
            prompt: prompt.into(),
            max_tokens,
        }
    }

    #[test]
    fn jsonl_prompts_and_sharegpt_conversations() {
        let jsonl = concat!(
            "{\"prompt\": \"Say hi\", \"max_tokens\": 16}\n",
            "\n",
            r#"{"conversations": [{"from": "system", "value": "be brief"}, "#,
            r#"{"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Because."}]}"#,
            "\n",
            "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"no human turn\"}]}\n",
            "{\"prompt\": \"Plain\"}\n",
        );
        assert_eq!(
            load("a.jsonl", jsonl).unwrap(),
            [
                entry("Say hi", Some(16)),
                entry("Why?", None),
                entry("Plain", None)
            ]
        );
    }

    #[test]
    fn json_array_files_are_read_too() {
        let json = r#"[{"conversations": [{"from": "human", "value": "Q1"}]}, {"prompt": "Q2"}]"#;
        assert_eq!(
            load("b.json", json).unwrap(),
            [entry("Q1", None), entry("Q2", None)]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let err = |contents: &str| load("c.jsonl", contents).unwrap_err().to_string();
        assert!(err("{\"prompt\": \"ok\"}\n{\"text\": \"x\"}\n")
            .ends_with(":2: expected a JSON object with `prompt` or `conversations`"));
        assert!(err("{\"prompt\": \"ok\"}\n\n{oops\n").contains(":3: not JSON"));
        assert!(err("{\"prompt\": 5}").ends_with(":1: `prompt` must be a string"));
        assert!(err("{\"prompt\": \"x\", \"max_tokens\": -1}")
            .ends_with(":1: `max_tokens` must be a positive integer, not -1"));
        assert!(err("\n\n").ends_with(":0: no prompts in the dataset"));
        let missing = load_dataset(Path::new("/no/such.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("/no/such.jsonl: "), "{missing}");
    }
}
