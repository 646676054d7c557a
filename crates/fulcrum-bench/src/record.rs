//! One request's measurements, in the form every report and SLO check reads.
//!
//! Times are milliseconds as `f64`: readable in JSON, exact enough (µs) for
//! every statistic, and the unit people quote latencies in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in the workload's request sequence.
    pub index: usize,
    /// When the request was sent, in seconds from the start of the run.
    pub start_s: f64,
    /// Prompt length as generated: tokens, or words for approximate prompts.
    pub sent_prompt_len: usize,
    /// The `max_tokens` sent.
    pub max_tokens: usize,
    /// Why the request failed; `None` for a success.
    pub error: Option<String>,
    /// Time to the first chunk carrying non-empty text.
    pub ttft_ms: Option<f64>,
    /// (E2E − TTFT) / (output tokens − 1): the decode pace a user sees.
    /// `None` with fewer than two output tokens.
    pub tpot_ms: Option<f64>,
    /// Send to end of stream (to the failure, for a failed request).
    pub e2e_ms: f64,
    /// Gaps between consecutive text-carrying chunks. A chunk that carries
    /// several tokens contributes one gap, not one per token: the ITL is what
    /// the client observed; TPOT is the per-token figure.
    pub itl_ms: Vec<f64>,
    /// From the server's `usage`, never by counting chunks.
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

impl RequestRecord {
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The record of a successful request from the arrival offsets of its
    /// text-carrying chunks (relative to the send), the end-to-end time and
    /// the server's usage counts. An engine driven in-process builds its
    /// records here too, with per-token times as chunk times.
    pub fn success(
        chunk_offsets: &[Duration],
        e2e: Duration,
        prompt_tokens: u64,
        output_tokens: u64,
    ) -> RequestRecord {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let e2e_ms = ms(e2e);
        let ttft_ms = chunk_offsets.first().map(|&d| ms(d));
        let tpot_ms = match ttft_ms {
            Some(ttft) if output_tokens > 1 => Some((e2e_ms - ttft) / (output_tokens - 1) as f64),
            _ => None,
        };
        let itl_ms = chunk_offsets
            .windows(2)
            .map(|w| ms(w[1].saturating_sub(w[0])))
            .collect();
        RequestRecord {
            ttft_ms,
            tpot_ms,
            e2e_ms,
            itl_ms,
            prompt_tokens,
            output_tokens,
            ..RequestRecord::default()
        }
    }

    pub fn failure(error: impl Into<String>, elapsed: Duration) -> RequestRecord {
        RequestRecord {
            error: Some(error.into()),
            e2e_ms: elapsed.as_secs_f64() * 1e3,
            ..RequestRecord::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpot_excludes_the_first_token_and_itl_counts_chunk_gaps() {
        let ms = Duration::from_millis;
        // Four chunks for six tokens: two chunks carried two tokens each.
        let r = RequestRecord::success(&[ms(100), ms(120), ms(150), ms(200)], ms(210), 7, 6);
        assert_eq!(r.ttft_ms, Some(100.0));
        assert_eq!(r.tpot_ms, Some((210.0 - 100.0) / 5.0));
        assert_eq!(r.itl_ms, [20.0, 30.0, 50.0]);
        assert_eq!((r.prompt_tokens, r.output_tokens), (7, 6));
        assert!(r.is_ok());
    }

    #[test]
    fn single_token_and_empty_streams_have_no_tpot() {
        let ms = Duration::from_millis;
        let one = RequestRecord::success(&[ms(40)], ms(41), 3, 1);
        assert_eq!(
            (one.ttft_ms, one.tpot_ms, one.itl_ms.len()),
            (Some(40.0), None, 0)
        );
        let none = RequestRecord::success(&[], ms(41), 3, 5);
        assert_eq!((none.ttft_ms, none.tpot_ms), (None, None));
        let failed = RequestRecord::failure("HTTP 503", ms(7));
        assert!(!failed.is_ok());
        assert_eq!(failed.e2e_ms, 7.0);
    }
}
