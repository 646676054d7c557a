//! Offline mode: `fulcrum generate --prompts FILE.jsonl [--out FILE.jsonl]`.
//!
//! Every prompt goes into the engine at once — throughput mode: the
//! scheduler batches as the knobs allow (`--max-num-seqs`, `--policy`, …).
//! The whole file is parsed and checked before anything runs, so a typo on
//! line 900 costs nothing. Result lines come out in input order; `--json`
//! prints a summary of the run (the issue's throughput and latency figures).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fulcrum_engine::{Prompt, RequestInput, RequestOutput, SamplingParams};
use fulcrum_model::chat::ChatMessage;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::json;

use super::{ms, start_engine, top_logprobs_json, GenerateArgs, Speed};

/// One input line. Sampling fields override the command-line flags.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptLine {
    /// Echoed into the result line (any JSON value).
    id: Option<serde_json::Value>,
    prompt: Option<String>,
    prompt_ids: Option<Vec<u32>>,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    seed: Option<u64>,
    stop: Option<StopField>,
    ignore_eos: Option<bool>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    repetition_penalty: Option<f32>,
    top_logprobs: Option<usize>,
    priority: Option<i32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

/// A parsed, checked line.
struct Job {
    line_no: usize,
    id: Option<serde_json::Value>,
    prompt: PromptSource,
    params: SamplingParams,
    priority: i32,
}

enum PromptSource {
    Text(String),
    Ids(Vec<u32>),
}

pub(super) fn run(args: &GenerateArgs, defaults: SamplingParams, path: &Path) -> Result<()> {
    if args.json && args.out.is_none() {
        bail!("`--json` with `--prompts` prints a summary on stdout: give `--out FILE.jsonl` for the results");
    }
    let jobs = read_jobs(path, &defaults)?;
    if jobs.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let engine = start_engine(&args.model, args.engine.numerics, &args.engine.to_options())?;
    let config_line = engine.config().to_string();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let prompt = match &job.prompt {
            PromptSource::Ids(ids) => Prompt::Tokens(ids.clone()),
            PromptSource::Text(text) if args.chat => {
                Prompt::Tokens(engine.chat_prompt(&[ChatMessage::new("user", text.as_str())])?)
            }
            PromptSource::Text(text) => Prompt::Text(text.clone()),
        };
        let input = RequestInput {
            prompt,
            params: job.params.clone(),
            priority: job.priority,
        };
        handles.push(
            engine
                .add_request(input)
                .with_context(|| format!("{} line {}", path.display(), job.line_no))?,
        );
    }
    let bar = progress_bar(jobs.len());
    let mut summary = Summary::default();
    for (index, (job, handle)) in jobs.iter().zip(handles).enumerate() {
        let output = handle
            .blocking_collect()
            .with_context(|| format!("line {}", job.line_no))?;
        let line = result_line(index, job, &output, &mut summary);
        writeln!(out, "{line}").context("writing results")?;
        bar.inc(1);
        bar.set_message(format!(
            "{:.0} output tok/s",
            summary.output_tokens as f64 / started.elapsed().as_secs_f64()
        ));
    }
    out.flush().context("writing results")?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let metrics = engine.shutdown(Duration::ZERO);
    let report = summary.to_json(
        elapsed,
        metrics.num_preemptions,
        metrics.prefix_cache_hits,
        &config_line,
    );
    if args.json {
        println!("{report}");
    } else {
        eprintln!(
            "{} requests, {} prompt + {} output tokens in {:.2} s: {:.1} output tok/s; TTFT p50 {:.1} ms; \
             {} preemptions; {}",
            report["requests"],
            report["prompt_tokens"],
            report["output_tokens"],
            elapsed.as_secs_f64(),
            report["output_tokens_per_s"].as_f64().unwrap_or(0.0),
            report["ttft_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
            report["preemptions"],
            config_line,
        );
    }
    Ok(())
}

fn read_jobs(path: &Path, defaults: &SamplingParams) -> Result<Vec<Job>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut jobs = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: PromptLine = serde_json::from_str(&line)
            .with_context(|| format!("{} line {line_no}", path.display()))?;
        let job = to_job(parsed, line_no, defaults)
            .with_context(|| format!("{} line {line_no}", path.display()))?;
        jobs.push(job);
    }
    Ok(jobs)
}

fn to_job(line: PromptLine, line_no: usize, defaults: &SamplingParams) -> Result<Job> {
    let prompt = match (line.prompt, line.prompt_ids) {
        (Some(text), None) => PromptSource::Text(text),
        (None, Some(ids)) => PromptSource::Ids(ids),
        _ => bail!("give exactly one of `prompt` and `prompt_ids`"),
    };
    let top_k = match line.top_k {
        None => defaults.top_k,
        Some(k) if k <= 0 => None,
        Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
    };
    let stop = match line.stop {
        None => defaults.stop.clone(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    let params = SamplingParams {
        max_tokens: line.max_tokens.or(defaults.max_tokens),
        temperature: line.temperature.unwrap_or(defaults.temperature),
        top_p: line.top_p.unwrap_or(defaults.top_p),
        top_k,
        min_p: line.min_p.unwrap_or(defaults.min_p),
        seed: line.seed.or(defaults.seed),
        stop,
        ignore_eos: line.ignore_eos.unwrap_or(defaults.ignore_eos),
        presence_penalty: line.presence_penalty.unwrap_or(defaults.presence_penalty),
        frequency_penalty: line.frequency_penalty.unwrap_or(defaults.frequency_penalty),
        repetition_penalty: line
            .repetition_penalty
            .unwrap_or(defaults.repetition_penalty),
        logprobs: line.top_logprobs.or(defaults.logprobs),
        ..defaults.clone()
    };
    params.validate().map_err(|e| {
        anyhow::anyhow!("{}", e.to_string().replace("`logprobs`", "`top_logprobs`"))
    })?;
    Ok(Job {
        line_no,
        id: line.id,
        prompt,
        params,
        priority: line.priority.unwrap_or(0),
    })
}

fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} requests, {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Latency samples and token totals of the run.
#[derive(Default)]
struct Summary {
    requests: usize,
    prompt_tokens: usize,
    output_tokens: usize,
    ttft_ms: Vec<f64>,
    tpot_ms: Vec<f64>,
    e2e_ms: Vec<f64>,
}

fn result_line(
    index: usize,
    job: &Job,
    output: &RequestOutput,
    summary: &mut Summary,
) -> serde_json::Value {
    let choice = &output.choices[0];
    let timings = &choice.timings;
    let speed = Speed::of(
        timings,
        output.prompt_token_ids.len() - choice.num_cached_tokens,
    );
    summary.requests += 1;
    summary.prompt_tokens += output.usage.prompt_tokens;
    summary.output_tokens += output.usage.completion_tokens;
    summary.ttft_ms.extend(speed.ttft_ms);
    summary.tpot_ms.extend(timings.tpot().map(ms));
    summary.e2e_ms.extend(timings.e2e().map(ms));
    let mut line = json!({
        "index": index,
        "line": job.line_no,
        "prompt_ids": output.prompt_token_ids,
        "output_ids": choice.token_ids,
        "text": choice.text,
        "finish_reason": choice.finish_reason.as_openai_str(),
        "prompt_tokens": output.usage.prompt_tokens,
        "output_tokens": output.usage.completion_tokens,
        "cached_tokens": choice.num_cached_tokens,
        "queue_ms": timings.queue_time().map(ms),
        "ttft_ms": speed.ttft_ms,
        "tpot_ms": timings.tpot().map(ms),
        "e2e_ms": timings.e2e().map(ms),
        "preemptions": choice.num_preemptions,
    });
    if let Some(id) = &job.id {
        line["id"] = id.clone();
    }
    if job.params.logprobs.is_some() {
        line["top_logprobs"] = top_logprobs_json(&choice.logprobs);
    }
    line
}

impl Summary {
    fn to_json(
        &self,
        elapsed: Duration,
        preemptions: u64,
        prefix_cache_hits: u64,
        engine: &str,
    ) -> serde_json::Value {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        json!({
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "elapsed_s": elapsed.as_secs_f64(),
            "output_tokens_per_s": self.output_tokens as f64 / secs,
            "total_tokens_per_s": (self.prompt_tokens + self.output_tokens) as f64 / secs,
            "ttft_ms": percentiles(&self.ttft_ms),
            "tpot_ms": percentiles(&self.tpot_ms),
            "e2e_ms": percentiles(&self.e2e_ms),
            "preemptions": preemptions,
            "prefix_cache_hit_tokens": prefix_cache_hits,
            "engine": engine,
        })
    }
}

/// Mean and nearest-rank percentiles; nulls for no samples.
fn percentiles(samples: &[f64]) -> serde_json::Value {
    if samples.is_empty() {
        return json!({ "mean": null, "p50": null, "p90": null, "p99": null, "max": null });
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
    };
    json!({
        "mean": sorted.iter().sum::<f64>() / sorted.len() as f64,
        "p50": rank(50.0),
        "p90": rank(90.0),
        "p99": rank(99.0),
        "max": sorted[sorted.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        let p = percentiles(&samples);
        assert_eq!(
            (p["p50"].as_f64(), p["p90"].as_f64(), p["p99"].as_f64()),
            (Some(5.0), Some(9.0), Some(10.0))
        );
        assert_eq!(p["mean"].as_f64(), Some(5.5));
        assert!(percentiles(&[])["p50"].is_null());
    }

    #[test]
    fn lines_need_exactly_one_prompt_and_valid_fields() {
        let defaults = SamplingParams::greedy();
        let parse =
            |s: &str| to_job(serde_json::from_str(s).unwrap(), 1, &defaults).map(|j| j.params);
        assert!(parse(r#"{"prompt": "a", "prompt_ids": [1]}"#)
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        assert!(parse(r#"{}"#).is_err());
        let err = parse(r#"{"prompt": "a", "temperature": -1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`temperature`"), "{err}");
        let params =
            parse(r#"{"prompt_ids": [1, 2], "stop": "x", "top_k": -1, "seed": 3}"#).unwrap();
        assert_eq!(
            (params.stop, params.top_k, params.seed),
            (vec!["x".to_string()], None, Some(3))
        );
        assert!(serde_json::from_str::<PromptLine>(r#"{"prompt": "a", "max_token": 3}"#).is_err());
    }
}
