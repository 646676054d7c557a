//! What the benchmark asks for: prompts and output lengths.
//!
//! Serving cost is driven by token counts, not by meaning, so the synthetic
//! workloads draw prompts of random token ids from the server's own
//! vocabulary (exact prompt lengths, and `ignore_eos` makes output lengths
//! exact too). `prefix` shares one long random prefix between all requests,
//! so a server with prefix caching skips most of every prefill. `file`
//! replays prompts a user brings, for realistic length distributions.
//!
//! Everything is drawn from one seeded RNG, so the same seed sends the same
//! requests to every server being compared.

mod dataset;
mod vocabulary;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Serialize, Serializer};

pub use dataset::{load_dataset, DatasetEntry};
pub use vocabulary::PromptVocabulary;

use crate::error::BenchError;

/// A length drawn uniformly from `min..=max`; `"128"` is a fixed length,
/// `"100:1500"` a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LenRange {
    pub min: usize,
    pub max: usize,
}

impl LenRange {
    pub fn fixed(n: usize) -> LenRange {
        LenRange { min: n, max: n }
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        rng.gen_range(self.min..=self.max)
    }
}

impl FromStr for LenRange {
    type Err = String;

    fn from_str(s: &str) -> Result<LenRange, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: `{}` is not a whole number of tokens", part.trim()))
        };
        let range = match s.split_once(':') {
            Some((lo, hi)) => LenRange {
                min: number(lo)?,
                max: number(hi)?,
            },
            None => LenRange::fixed(number(s)?),
        };
        if range.min == 0 || range.min > range.max {
            return Err(format!("`{s}` must be N or MIN:MAX with 1 <= MIN <= MAX"));
        }
        Ok(range)
    }
}

impl fmt::Display for LenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}:{}", self.min, self.max)
        }
    }
}

impl Serialize for LenRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which requests to send.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadSpec {
    /// Random prompts and output lengths, each uniform in its range.
    Random {
        input_len: LenRange,
        output_len: LenRange,
    },
    /// One shared random prefix of `prefix_len` tokens, then a unique random
    /// suffix with a length from `input_len`.
    Prefix {
        prefix_len: usize,
        input_len: LenRange,
        output_len: LenRange,
    },
    /// Prompts from a JSONL (or JSON array) file, shuffled by the seed and
    /// cycled; `output_len` applies to lines without `max_tokens`.
    File { path: PathBuf, output_len: LenRange },
}

/// A prompt as sent in the `prompt` field: token ids where the vocabulary is
/// known (exact lengths), text otherwise.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// One request to send.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSpec {
    pub prompt: Prompt,
    /// Prompt length as generated: exact for token prompts, a word count
    /// (roughly tokens) for text.
    pub prompt_len: usize,
    pub max_tokens: usize,
    /// Ask the server to keep going past end-of-sequence, so output lengths
    /// are what the workload says (synthetic workloads only).
    pub ignore_eos: bool,
}

/// A seeded, endless sequence of requests. A clone replays the same
/// sequence from where the original stood.
#[derive(Clone)]
pub struct Workload {
    spec: WorkloadSpec,
    vocabulary: PromptVocabulary,
    rng: ChaCha8Rng,
    /// The `prefix` workload's shared prefix, drawn once.
    shared_prefix: Prompt,
    /// The `file` workload's entries, in (shuffled) sending order.
    entries: Vec<DatasetEntry>,
    num_sent: usize,
}

impl Workload {
    pub fn new(
        spec: WorkloadSpec,
        vocabulary: PromptVocabulary,
        seed: u64,
    ) -> Result<Workload, BenchError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut entries = Vec::new();
        let mut shared_prefix = vocabulary.random_prompt(0, &mut rng);
        match &spec {
            WorkloadSpec::Random { .. } => {}
            WorkloadSpec::Prefix { prefix_len, .. } => {
                if *prefix_len == 0 {
                    return Err(BenchError::config(
                        "--prefix-len",
                        "must be at least 1 token",
                    ));
                }
                shared_prefix = vocabulary.random_prompt(*prefix_len, &mut rng);
            }
            WorkloadSpec::File { path, .. } => {
                entries = load_dataset(path)?;
                entries.shuffle(&mut rng);
            }
        }
        Ok(Workload {
            spec,
            vocabulary,
            rng,
            shared_prefix,
            entries,
            num_sent: 0,
        })
    }

    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    pub fn vocabulary(&self) -> &PromptVocabulary {
        &self.vocabulary
    }

    /// Whether prompt lengths are only approximate (text prompts).
    pub fn is_approximate(&self) -> bool {
        match self.spec {
            WorkloadSpec::File { .. } => true,
            _ => !self.vocabulary.is_exact(),
        }
    }

    pub fn next_request(&mut self) -> RequestSpec {
        let rng = &mut self.rng;
        let request = match &self.spec {
            WorkloadSpec::Random {
                input_len,
                output_len,
            } => {
                let prompt_len = input_len.sample(rng);
                RequestSpec {
                    prompt: self.vocabulary.random_prompt(prompt_len, rng),
                    prompt_len,
                    max_tokens: output_len.sample(rng),
                    ignore_eos: true,
                }
            }
            WorkloadSpec::Prefix {
                prefix_len,
                input_len,
                output_len,
            } => {
                let suffix_len = input_len.sample(rng);
                let suffix = self.vocabulary.random_prompt(suffix_len, rng);
                RequestSpec {
                    prompt: concat(&self.shared_prefix, suffix),
                    prompt_len: prefix_len + suffix_len,
                    max_tokens: output_len.sample(rng),
                    ignore_eos: true,
                }
            }
            WorkloadSpec::File { output_len, .. } => {
                let entry = &self.entries[self.num_sent % self.entries.len()];
                RequestSpec {
                    prompt: Prompt::Text(entry.prompt.clone()),
                    prompt_len: entry.prompt.split_whitespace().count(),
                    max_tokens: entry.max_tokens.unwrap_or_else(|| output_len.sample(rng)),
                    ignore_eos: false,
                }
            }
        };
        self.num_sent += 1;
        request
    }
}

fn concat(prefix: &Prompt, suffix: Prompt) -> Prompt {
    match (prefix, suffix) {
        (Prompt::Tokens(p), Prompt::Tokens(s)) => Prompt::Tokens([p.as_slice(), &s].concat()),
        (Prompt::Text(p), Prompt::Text(s)) => Prompt::Text(format!("{p} {s}")),
        _ => unreachable!("one vocabulary makes both halves"),
    }
}
