//! [`SamplingParams`]: what a request asks of the sampler and of stopping,
//! checked once at the edge by [`SamplingParams::validate`] (the error names
//! the field and the limit), so `sample` never meets a nonsensical value.

/// Temperatures below this sample greedily (dividing by them overflows).
pub const GREEDY_TEMPERATURE: f32 = 1e-5;
pub const MAX_N: usize = 128;
/// Top alternatives per token (OpenAI's limit for `top_logprobs`).
pub const MAX_LOGPROBS: usize = 20;
pub const MAX_STOP_STRINGS: usize = 16;
pub const MAX_STOP_STRING_BYTES: usize = 256;
pub const MAX_STOP_TOKEN_IDS: usize = 1024;

/// Per-request sampling and stopping. `Default` is OpenAI's: temperature 1,
/// no truncation, no penalties.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Completions per prompt.
    pub n: usize,
    /// 0 (anything below [`GREEDY_TEMPERATURE`]) = greedy argmax.
    pub temperature: f32,
    /// Keep the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens with mass ≥ `top_p`.
    pub top_p: f32,
    /// Keep tokens at least `min_p` times as likely as the most likely one.
    pub min_p: f32,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of generated tokens.
    pub frequency_penalty: f32,
    /// Divides positive (multiplies negative) logits of tokens in the prompt
    /// or the output; 1 = off.
    pub repetition_penalty: f32,
    /// Seeds this request's own RNG, so its samples do not depend on the
    /// batch it runs in.
    pub seed: Option<u64>,
    /// `None`: up to the model's context length.
    pub max_tokens: Option<usize>,
    pub stop_token_ids: Vec<u32>,
    /// Matched on the detokenized text; never part of the output.
    pub stop: Vec<String>,
    /// Keep generating past EOS (stop token ids still stop).
    pub ignore_eos: bool,
    /// Return the sampled token's logprob and this many top alternatives.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            n: 1,
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            max_tokens: None,
            stop_token_ids: Vec::new(),
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: None,
        }
    }
}

/// A sampling parameter out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {requirement}, got {value}")]
pub struct SamplingError {
    pub field: &'static str,
    pub requirement: &'static str,
    pub value: String,
}

fn check(
    is_ok: bool,
    field: &'static str,
    requirement: &'static str,
    value: impl ToString,
) -> Result<(), SamplingError> {
    if is_ok {
        Ok(())
    } else {
        Err(SamplingError {
            field,
            requirement,
            value: value.to_string(),
        })
    }
}

impl SamplingParams {
    /// Greedy parameters (temperature 0).
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Checks every field against its range; the first out of range is the
    /// error (in declaration order).
    pub fn validate(&self) -> Result<(), SamplingError> {
        self.check_distribution()?;
        self.check_penalties()?;
        self.check_stopping()?;
        if let Some(n) = self.logprobs {
            check(n <= MAX_LOGPROBS, "logprobs", "must be in [0, 20]", n)?;
        }
        Ok(())
    }

    /// `n`, temperature and truncation (`top_k`, `top_p`, `min_p`).
    fn check_distribution(&self) -> Result<(), SamplingError> {
        check(
            (1..=MAX_N).contains(&self.n),
            "n",
            "must be in [1, 128]",
            self.n,
        )?;
        let t = self.temperature;
        check(
            t.is_finite() && t >= 0.0,
            "temperature",
            "must be a finite number >= 0",
            t,
        )?;
        if let Some(k) = self.top_k {
            check(
                k >= 1,
                "top_k",
                "must be at least 1 (omit it to disable)",
                k,
            )?;
        }
        check(
            self.top_p > 0.0 && self.top_p <= 1.0,
            "top_p",
            "must be in (0, 1]",
            self.top_p,
        )?;
        check(
            (0.0..=1.0).contains(&self.min_p),
            "min_p",
            "must be in [0, 1]",
            self.min_p,
        )?;
        Ok(())
    }

    fn check_penalties(&self) -> Result<(), SamplingError> {
        let p = self.presence_penalty;
        check(
            (-2.0..=2.0).contains(&p),
            "presence_penalty",
            "must be in [-2, 2]",
            p,
        )?;
        let f = self.frequency_penalty;
        check(
            (-2.0..=2.0).contains(&f),
            "frequency_penalty",
            "must be in [-2, 2]",
            f,
        )?;
        let r = self.repetition_penalty;
        check(
            r.is_finite() && r > 0.0,
            "repetition_penalty",
            "must be a finite number > 0",
            r,
        )?;
        Ok(())
    }

    /// `max_tokens`, stop token ids and stop strings.
    fn check_stopping(&self) -> Result<(), SamplingError> {
        if let Some(m) = self.max_tokens {
            check(m >= 1, "max_tokens", "must be at least 1", m)?;
        }
        let n = self.stop_token_ids.len();
        check(
            n <= MAX_STOP_TOKEN_IDS,
            "stop_token_ids",
            "must have at most 1024 entries",
            n,
        )?;
        let n = self.stop.len();
        check(
            n <= MAX_STOP_STRINGS,
            "stop",
            "must have at most 16 strings",
            n,
        )?;
        for s in &self.stop {
            check(
                !s.is_empty(),
                "stop",
                "must not contain an empty string",
                "\"\"",
            )?;
            check(
                s.len() <= MAX_STOP_STRING_BYTES,
                "stop",
                "strings must be at most 256 bytes",
                s.len(),
            )?;
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_TEMPERATURE
    }

    /// Whether sampling `token` ends the sequence with `stop`: EOS unless
    /// `ignore_eos`, or any stop token id.
    pub fn is_stop_token(&self, token: u32, eos_token_id: Option<u32>) -> bool {
        (!self.ignore_eos && eos_token_id == Some(token)) || self.stop_token_ids.contains(&token)
    }

    pub(crate) fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_greedy_are_valid() {
        SamplingParams::default().validate().unwrap();
        SamplingParams::greedy().validate().unwrap();
        assert!(SamplingParams::greedy().is_greedy());
        assert!(!SamplingParams::default().is_greedy());
    }

    #[test]
    fn errors_name_the_field_and_the_limit() {
        let base = SamplingParams::default();
        let cases = [
            (
                SamplingParams {
                    top_p: 1.5,
                    ..base.clone()
                },
                "`top_p` must be in (0, 1], got 1.5",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..base.clone()
                },
                "`top_p` must be in (0, 1], got 0",
            ),
            (
                SamplingParams {
                    temperature: -1.0,
                    ..base.clone()
                },
                "`temperature` must be a finite number >= 0, got -1",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..base.clone()
                },
                "`temperature` must be a finite number >= 0, got NaN",
            ),
            (
                SamplingParams {
                    top_k: Some(0),
                    ..base.clone()
                },
                "`top_k` must be at least 1 (omit it to disable), got 0",
            ),
            (
                SamplingParams {
                    min_p: 2.0,
                    ..base.clone()
                },
                "`min_p` must be in [0, 1], got 2",
            ),
            (
                SamplingParams {
                    presence_penalty: 3.0,
                    ..base.clone()
                },
                "`presence_penalty` must be in [-2, 2], got 3",
            ),
            (
                SamplingParams {
                    frequency_penalty: -3.0,
                    ..base.clone()
                },
                "`frequency_penalty` must be in [-2, 2], got -3",
            ),
            (
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..base.clone()
                },
                "`repetition_penalty` must be a finite number > 0, got 0",
            ),
            (
                SamplingParams {
                    max_tokens: Some(0),
                    ..base.clone()
                },
                "`max_tokens` must be at least 1, got 0",
            ),
            (
                SamplingParams {
                    n: 0,
                    ..base.clone()
                },
                "`n` must be in [1, 128], got 0",
            ),
            (
                SamplingParams {
                    logprobs: Some(21),
                    ..base.clone()
                },
                "`logprobs` must be in [0, 20], got 21",
            ),
            (
                SamplingParams {
                    stop: vec![String::new()],
                    ..base.clone()
                },
                "`stop` must not contain an empty string, got \"\"",
            ),
        ];
        for (params, expected) in cases {
            assert_eq!(params.validate().unwrap_err().to_string(), expected);
        }
    }

    #[test]
    fn ignore_eos_ignores_only_eos() {
        let params = SamplingParams {
            ignore_eos: true,
            stop_token_ids: vec![7],
            ..SamplingParams::default()
        };
        assert!(!params.is_stop_token(2, Some(2)));
        assert!(params.is_stop_token(7, Some(2)));
        assert!(SamplingParams::default().is_stop_token(2, Some(2)));
    }
}
