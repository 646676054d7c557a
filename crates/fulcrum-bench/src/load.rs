//! The offered load — when requests go out and how many — and the one
//! dispatcher that replays it against any target.
//!
//! `bench serve` (HTTP) and the in-process engine driver of `bench sweep`
//! share this code so that "the same load" means the same thing to both:
//! the same arrival schedule from the same seed, the same concurrency cap,
//! the same bounds and the same accounting of the run's duration.
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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::arrival::{ArrivalProcess, RequestRate};
use crate::error::BenchError;
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::slo::Slo;
use crate::workload::{RequestSpec, Workload};

/// Arrival gaps and prompts come from different streams of the one seed, so
/// changing the rate does not change the prompts.
const ARRIVAL_SEED_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// How requests are offered, whatever receives them.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
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
}

impl Default for LoadSpec {
    /// All at once, 100 requests, no cap, no SLO.
    fn default() -> LoadSpec {
        LoadSpec {
            request_rate: RequestRate::Infinite,
            burstiness: 1.0,
            max_concurrency: None,
            num_requests: Some(100),
            duration: None,
            seed: 0,
            slo: Slo::default(),
        }
    }
}

impl LoadSpec {
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
        if self.num_requests.is_none() && self.duration.is_none() {
            return Err(BenchError::config(
                "--num-requests",
                "give --num-requests and/or --duration to bound the run",
            ));
        }
        if self.request_rate == RequestRate::Infinite
            && self.max_concurrency.is_none()
            && self.num_requests.is_none()
        {
            return Err(BenchError::config(
                "--request-rate",
                "`inf` without --concurrency sends every request at once, so it needs --num-requests \
                 (or give a finite --request-rate, or --concurrency)",
            ));
        }
        // Checks the burstiness and the rate together, as the run will.
        ArrivalProcess::new(self.request_rate, self.burstiness, 0)?;
        Ok(())
    }

    /// The load as recorded in a report.
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "request_rate": self.request_rate,
            "burstiness": self.burstiness,
            "max_concurrency": self.max_concurrency,
            "num_requests": self.num_requests,
            "duration_s": self.duration.map(|d| d.as_secs_f64()),
            "seed": self.seed,
            "slo": (!self.slo.is_empty()).then(|| self.slo.to_string()),
        })
    }
}

/// What a dispatch produced: every request sent, in sending order, and the
/// run's duration as throughputs divide by it.
pub(crate) struct Dispatched {
    pub records: Vec<RequestRecord>,
    pub duration: Duration,
}

/// Replays `load` on the current tokio runtime: `send` turns a request into
/// a future that performs it and measures it (times relative to its own
/// send). The dispatcher stamps each record with its index, send time and
/// the request's sizes.
pub(crate) async fn dispatch<S, F>(
    load: &LoadSpec,
    workload: &mut Workload,
    progress: Arc<dyn Progress>,
    send: S,
) -> Result<Dispatched, BenchError>
where
    S: Fn(RequestSpec) -> F,
    F: Future<Output = RequestRecord> + Send + 'static,
{
    load.validate()?;
    let mut arrivals = ArrivalProcess::new(
        load.request_rate,
        load.burstiness,
        load.seed ^ ARRIVAL_SEED_SALT,
    )?;
    let pool = load.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let start = Instant::now();
    let deadline = load.duration.map(|d| start + d);
    let mut tasks = JoinSet::new();
    let mut send_at = start;
    let mut reached_deadline = false;
    for index in 0.. {
        if load.num_requests.is_some_and(|n| index >= n) {
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
        let (sent_prompt_len, max_tokens) = (spec.prompt_len, spec.max_tokens);
        let start_s = start.elapsed().as_secs_f64();
        let request = send(spec);
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut record = request.await;
            drop(permit);
            record.index = index;
            record.start_s = start_s;
            record.sent_prompt_len = sent_prompt_len;
            record.max_tokens = max_tokens;
            progress.on_request(&record);
            record
        });
    }
    let mut records = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        records.push(joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let window = load
        .duration
        .filter(|_| reached_deadline)
        .unwrap_or_default();
    let duration = start.elapsed().max(window);
    progress.on_finish();
    records.sort_by_key(|r| r.index);
    Ok(Dispatched { records, duration })
}

/// A free slot in the concurrency pool (`Some(None)` without a pool), or
/// `None` if the deadline came first.
async fn take_slot(
    pool: Option<&Arc<Semaphore>>,
    deadline: Option<Instant>,
) -> Option<Option<OwnedSemaphorePermit>> {
    let Some(pool) = pool else { return Some(None) };
    let acquire = pool.clone().acquire_owned();
    let acquired = match deadline {
        Some(d) => tokio::time::timeout_at(d, acquire).await.ok()?,
        None => acquire.await,
    };
    Some(Some(acquired.expect("the pool semaphore is never closed")))
}

/// A single-threaded runtime for a blocking caller: the load generator
/// shares the machine with what it measures, and dispatching a few thousand
/// events a second does not need more.
pub(crate) fn block_on<T>(
    future: impl Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    runtime.block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbounded_or_empty_loads_are_refused_with_the_flag_named() {
        let base = LoadSpec::default();
        assert!(base.validate().is_ok());
        let err = |l: LoadSpec| l.validate().unwrap_err().to_string();
        assert_eq!(
            err(LoadSpec { num_requests: None, duration: Some(Duration::from_secs(5)), ..base.clone() }),
            "invalid --request-rate: `inf` without --concurrency sends every request at once, so it needs \
             --num-requests (or give a finite --request-rate, or --concurrency)"
        );
        assert_eq!(
            err(LoadSpec {
                num_requests: None,
                ..base.clone()
            }),
            "invalid --num-requests: give --num-requests and/or --duration to bound the run"
        );
        assert_eq!(
            err(LoadSpec {
                max_concurrency: Some(0),
                ..base.clone()
            }),
            "invalid --concurrency: must be at least 1"
        );
        assert_eq!(
            err(LoadSpec {
                num_requests: Some(0),
                ..base.clone()
            }),
            "invalid --num-requests: must be at least 1"
        );
        assert_eq!(
            err(LoadSpec {
                burstiness: -1.0,
                ..base.clone()
            }),
            "invalid --burstiness: -1 must be a positive number (1 = Poisson)"
        );
        let closed_loop = LoadSpec {
            num_requests: None,
            duration: Some(Duration::from_secs(1)),
            max_concurrency: Some(4),
            ..base
        };
        assert!(closed_loop.validate().is_ok());
    }
}
