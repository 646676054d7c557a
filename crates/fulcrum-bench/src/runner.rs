//! `bench serve`: send a workload to a server on an arrival schedule and
//! collect what every request saw.
//!
//! One dispatcher decides *when* each request goes out; every request then
//! runs as its own task, so a slow stream never delays the next arrival. The
//! arrival process, an optional concurrency cap and the bounds compose: an
//! infinite rate with a cap of N is a closed loop of N users; a finite rate
//! is an open loop (requests arrive whether or not the server keeps up),
//! and a cap on top of it models a client pool of that size — arrivals that
//! find the pool full wait for a free slot, then go. A run bounded by
//! `duration` stops sending at the deadline and lets the requests in flight
//! finish, so every request sent is accounted for; its measured duration is
//! never shorter than the window asked for, since the quiet time before the
//! deadline is part of the offered load.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::arrival::{ArrivalProcess, RequestRate};
use crate::client::CompletionsClient;
use crate::error::BenchError;
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::report::Report;
use crate::slo::Slo;
use crate::workload::{RequestSpec, Workload};

/// Arrival gaps and prompts come from different streams of the one seed, so
/// changing the rate does not change the prompts.
const ARRIVAL_SEED_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// How to drive the server. The workload (what to send) is separate.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Server root, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// The `model` field; `None` asks `GET /v1/models` for the first one.
    pub model: Option<String>,
    pub request_rate: RequestRate,
    /// Gamma shape of the inter-arrival gaps; 1 is Poisson.
    pub burstiness: f64,
    /// At most this many requests in flight.
    pub max_concurrency: Option<usize>,
    /// Stop after this many requests...
    pub num_requests: Option<usize>,
    /// ...or stop sending after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub seed: u64,
    pub slo: Slo,
    /// Bound on each whole request, stream included.
    pub request_timeout: Duration,
}

impl ServeConfig {
    /// All-at-once, 100 requests, no cap, no SLO.
    pub fn new(base_url: impl Into<String>) -> ServeConfig {
        ServeConfig {
            base_url: base_url.into(),
            api_key: None,
            model: None,
            request_rate: RequestRate::Infinite,
            burstiness: 1.0,
            max_concurrency: None,
            num_requests: Some(100),
            duration: None,
            seed: 0,
            slo: Slo::default(),
            request_timeout: Duration::from_secs(600),
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        if self.num_requests == Some(0) {
            return Err(BenchError::config("--num-requests", "must be at least 1"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(BenchError::config("--duration", "must be longer than zero"));
        }
        if self.max_concurrency == Some(0) {
            return Err(BenchError::config("--concurrency", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(BenchError::config("--timeout", "must be longer than zero"));
        }
        if self.num_requests.is_none() && self.duration.is_none() {
            return Err(BenchError::config("--num-requests", "give --num-requests and/or --duration to bound the run"));
        }
        if self.request_rate == RequestRate::Infinite && self.max_concurrency.is_none() && self.num_requests.is_none() {
            return Err(BenchError::config(
                "--request-rate",
                "`inf` without --concurrency sends every request at once, so it needs --num-requests \
                 (or give a finite --request-rate, or --concurrency)",
            ));
        }
        Ok(())
    }

    /// The configuration as recorded in a report (never the API key).
    fn describe(&self, model: &str, workload: &Workload) -> serde_json::Value {
        json!({
            "base_url": self.base_url,
            "model": model,
            "request_rate": self.request_rate,
            "burstiness": self.burstiness,
            "max_concurrency": self.max_concurrency,
            "num_requests": self.num_requests,
            "duration_s": self.duration.map(|d| d.as_secs_f64()),
            "seed": self.seed,
            "slo": (!self.slo.is_empty()).then(|| self.slo.to_string()),
            "request_timeout_s": self.request_timeout.as_secs_f64(),
            "workload": workload.spec(),
            "prompts": workload.vocabulary().describe(),
            "prompt_lengths_approximate": workload.is_approximate(),
        })
    }
}

/// Runs the benchmark on the current tokio runtime.
pub async fn run_serve(
    config: &ServeConfig,
    mut workload: Workload,
    progress: Arc<dyn Progress>,
) -> Result<Report, BenchError> {
    config.validate()?;
    let client = Arc::new(CompletionsClient::new(&config.base_url, config.api_key.clone(), config.request_timeout)?);
    let model: Arc<str> = match &config.model {
        Some(m) => m.as_str().into(),
        None => client.first_model().await?.into(),
    };
    let mut arrivals = ArrivalProcess::new(config.request_rate, config.burstiness, config.seed ^ ARRIVAL_SEED_SALT)?;
    let pool = config.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let mut tasks = JoinSet::new();
    let mut send_at = start;
    let mut reached_deadline = false;
    for index in 0.. {
        if config.num_requests.is_some_and(|n| index >= n) {
            break;
        }
        if index > 0 {
            send_at += arrivals.next_gap();
        }
        if deadline.is_some_and(|d| send_at >= d) {
            reached_deadline = true;
            break;
        }
        tokio::time::sleep_until(send_at).await;
        let Some(permit) = take_slot(pool.as_ref(), deadline).await else {
            reached_deadline = true; // the pool stayed full until the deadline
            break;
        };
        let spec = workload.next_request();
        let (client, model, progress) = (client.clone(), model.clone(), progress.clone());
        let start_s = start.elapsed().as_secs_f64();
        tasks.spawn(async move {
            let record = send_one(&client, &model, &spec, index, start_s).await;
            drop(permit);
            progress.on_request(&record);
            record
        });
    }
    let mut records = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        records.push(joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let window = config.duration.filter(|_| reached_deadline).unwrap_or_default();
    let duration = start.elapsed().max(window);
    progress.on_finish();
    records.sort_by_key(|r| r.index);
    Ok(Report::new(config.describe(&model, &workload), records, duration, &config.slo))
}

/// A free slot in the concurrency pool (`Some(None)` without a pool), or
/// `None` if the deadline came first.
async fn take_slot(pool: Option<&Arc<Semaphore>>, deadline: Option<Instant>) -> Option<Option<OwnedSemaphorePermit>> {
    let Some(pool) = pool else { return Some(None) };
    let acquire = pool.clone().acquire_owned();
    let acquired = match deadline {
        Some(d) => tokio::time::timeout_at(d, acquire).await.ok()?,
        None => acquire.await,
    };
    Some(Some(acquired.expect("the pool semaphore is never closed")))
}

async fn send_one(
    client: &CompletionsClient,
    model: &str,
    spec: &RequestSpec,
    index: usize,
    start_s: f64,
) -> RequestRecord {
    let mut record = match client.stream_completion(model, spec).await {
        Ok(c) => RequestRecord::success(&c.chunk_offsets, c.e2e, c.prompt_tokens, c.output_tokens),
        Err((message, elapsed)) => RequestRecord::failure(message, elapsed),
    };
    record.index = index;
    record.start_s = start_s;
    record.sent_prompt_len = spec.prompt_len;
    record.max_tokens = spec.max_tokens;
    record
}

/// [`run_serve`] on a runtime of its own. One thread: the load generator
/// shares the machine with the server it measures, and parsing a few
/// thousand chunks a second does not need more.
pub fn run_serve_blocking(
    config: &ServeConfig,
    workload: Workload,
    progress: Arc<dyn Progress>,
) -> Result<Report, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    runtime.block_on(run_serve(config, workload, progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbounded_or_empty_runs_are_refused_with_the_flag_named() {
        let base = ServeConfig::new("http://127.0.0.1:1");
        assert!(base.validate().is_ok());
        let err = |c: ServeConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            err(ServeConfig { num_requests: None, duration: Some(Duration::from_secs(5)), ..base.clone() }),
            "invalid --request-rate: `inf` without --concurrency sends every request at once, so it needs \
             --num-requests (or give a finite --request-rate, or --concurrency)"
        );
        assert_eq!(
            err(ServeConfig { num_requests: None, ..base.clone() }),
            "invalid --num-requests: give --num-requests and/or --duration to bound the run"
        );
        assert_eq!(
            err(ServeConfig { max_concurrency: Some(0), ..base.clone() }),
            "invalid --concurrency: must be at least 1"
        );
        assert_eq!(
            err(ServeConfig { num_requests: Some(0), ..base.clone() }),
            "invalid --num-requests: must be at least 1"
        );
        let closed_loop = ServeConfig {
            num_requests: None,
            duration: Some(Duration::from_secs(1)),
            max_concurrency: Some(4),
            ..base
        };
        assert!(closed_loop.validate().is_ok());
    }
}
