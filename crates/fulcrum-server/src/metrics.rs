//! Prometheus `/metrics`: latency histograms from each finished choice's
//! timings, and the engine's gauges and counters from its snapshot.
//!
//! Why two sources: the engine only counts (it has one writer and keeps no
//! exposition format, see `fulcrum_engine::engine::metrics`), and the
//! per-request timings reach the server with each `ChoiceFinished`, so the
//! histograms are observed here as choices finish. Counters mirror the
//! engine's monotonic totals: at each scrape they advance by the difference
//! to the snapshot, under a lock so two concurrent scrapes cannot both add
//! it.
//!
//! Names follow Prometheus conventions (`_seconds`, `_total`, `_ratio`,
//! base units). With [`MetricsCompat::Vllm`] the same observations are also
//! exported under vLLM's names, so its dashboards and KV-aware routers work
//! unchanged. Every series carries a constant `model_name` label, as vLLM's do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use fulcrum_engine::{EngineMetrics, SequenceTimings};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::config::MetricsCompat;

/// TTFT and queue time: from a millisecond (a prefix hit on a short prompt)
/// to minutes (a long queue on a CPU).
const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// Per-token times.
const TOKEN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];
/// Whole requests.
const REQUEST_BUCKETS: &[f64] = &[
    0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
];

/// The finish reasons `requests_finished_total` is labelled with.
const FINISH_REASONS: [&str; 4] = ["stop", "length", "abort", "error"];

/// The registry and every series.
pub struct Metrics {
    registry: Registry,
    families: Vec<Family>,
    /// Serializes counter catch-up at scrape time.
    sync: Mutex<()>,
}

/// One naming of the series (fulcrum's, or vLLM's).
struct Family {
    latency: LatencyHistograms,
    engine: EngineSeries,
}

struct LatencyHistograms {
    ttft: Histogram,
    tpot: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
}

struct EngineSeries {
    running: IntGauge,
    waiting: IntGauge,
    kv_usage: Gauge,
    /// Only fulcrum's naming has these two (vLLM has no block gauges).
    kv_blocks_used: Option<IntGauge>,
    kv_blocks: Option<IntGauge>,
    batch_size: Option<IntGauge>,
    prompt_tokens: IntCounter,
    generation_tokens: IntCounter,
    preemptions: IntCounter,
    prefix_cache_queries: IntCounter,
    prefix_cache_hits: IntCounter,
    finished: IntCounterVec,
}

/// Metric names of one family.
struct Names {
    ttft: &'static str,
    tpot: &'static str,
    itl: &'static str,
    e2e: &'static str,
    queue: &'static str,
    running: &'static str,
    waiting: &'static str,
    kv_usage: &'static str,
    prompt_tokens: &'static str,
    generation_tokens: &'static str,
    preemptions: &'static str,
    prefix_cache_queries: &'static str,
    prefix_cache_hits: &'static str,
    finished: &'static str,
    /// fulcrum's own extra gauges.
    has_block_gauges: bool,
}

const FULCRUM: Names = Names {
    ttft: "fulcrum_time_to_first_token_seconds",
    tpot: "fulcrum_time_per_output_token_seconds",
    itl: "fulcrum_inter_token_latency_seconds",
    e2e: "fulcrum_e2e_request_latency_seconds",
    queue: "fulcrum_request_queue_time_seconds",
    running: "fulcrum_requests_running",
    waiting: "fulcrum_requests_waiting",
    kv_usage: "fulcrum_kv_cache_usage_ratio",
    prompt_tokens: "fulcrum_prompt_tokens_total",
    generation_tokens: "fulcrum_generation_tokens_total",
    preemptions: "fulcrum_preemptions_total",
    prefix_cache_queries: "fulcrum_prefix_cache_queries_total",
    prefix_cache_hits: "fulcrum_prefix_cache_hits_total",
    finished: "fulcrum_requests_finished_total",
    has_block_gauges: true,
};

/// vLLM's spellings (prometheus_client appends `_total` to its counters).
const VLLM: Names = Names {
    ttft: "vllm:time_to_first_token_seconds",
    tpot: "vllm:time_per_output_token_seconds",
    itl: "vllm:inter_token_latency_seconds",
    e2e: "vllm:e2e_request_latency_seconds",
    queue: "vllm:request_queue_time_seconds",
    running: "vllm:num_requests_running",
    waiting: "vllm:num_requests_waiting",
    kv_usage: "vllm:kv_cache_usage_perc",
    prompt_tokens: "vllm:prompt_tokens_total",
    generation_tokens: "vllm:generation_tokens_total",
    preemptions: "vllm:num_preemptions_total",
    prefix_cache_queries: "vllm:prefix_cache_queries_total",
    prefix_cache_hits: "vllm:prefix_cache_hits_total",
    finished: "vllm:request_success_total",
    has_block_gauges: false,
};

impl Metrics {
    /// `model_name`: the constant label (omitted when empty).
    pub fn new(compat: MetricsCompat, model_name: &str) -> Metrics {
        let labels = (!model_name.is_empty())
            .then(|| HashMap::from([("model_name".to_string(), model_name.to_string())]));
        // Only fails on an invalid label name, and `model_name` is valid.
        let registry = Registry::new_custom(None, labels).unwrap_or_default();
        let mut families = vec![Family::register(&registry, &FULCRUM)];
        if compat == MetricsCompat::Vllm {
            families.push(Family::register(&registry, &VLLM));
        }
        Metrics {
            registry,
            families,
            sync: Mutex::new(()),
        }
    }

    /// Records one finished choice's latencies. Choices without a first
    /// token (aborted while queued) only count their queue time and E2E.
    pub fn observe_choice(&self, timings: &SequenceTimings) {
        for family in &self.families {
            family.latency.observe(timings);
        }
    }

    /// The text exposition, with the engine's series as of `engine`.
    pub fn render(&self, engine: Option<&EngineMetrics>) -> String {
        if let Some(m) = engine {
            let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
            for family in &self.families {
                family.engine.update(m);
            }
        }
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Family {
    fn register(registry: &Registry, names: &Names) -> Family {
        Family {
            latency: LatencyHistograms::register(registry, names),
            engine: EngineSeries::register(registry, names),
        }
    }
}

impl LatencyHistograms {
    fn register(registry: &Registry, names: &Names) -> LatencyHistograms {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .unwrap_or_else(|e| unreachable_metric(name, e));
            register(registry, h.clone(), name);
            h
        };
        LatencyHistograms {
            ttft: histogram(
                names.ttft,
                "Time to first token, from arrival.",
                FIRST_TOKEN_BUCKETS,
            ),
            tpot: histogram(
                names.tpot,
                "Mean time per output token after the first, per request.",
                TOKEN_BUCKETS,
            ),
            itl: histogram(
                names.itl,
                "Time between consecutive output tokens.",
                TOKEN_BUCKETS,
            ),
            e2e: histogram(names.e2e, "Arrival to the last token.", REQUEST_BUCKETS),
            queue: histogram(
                names.queue,
                "Arrival to first scheduled.",
                FIRST_TOKEN_BUCKETS,
            ),
        }
    }

    fn observe(&self, timings: &SequenceTimings) {
        let seconds = Duration::as_secs_f64;
        if let Some(d) = timings.ttft() {
            self.ttft.observe(seconds(&d));
        }
        if let Some(d) = timings.tpot() {
            self.tpot.observe(seconds(&d));
        }
        for d in timings.inter_token_latencies() {
            self.itl.observe(seconds(&d));
        }
        if let Some(d) = timings.e2e() {
            self.e2e.observe(seconds(&d));
        }
        if let Some(d) = timings.queue_time() {
            self.queue.observe(seconds(&d));
        }
    }
}

impl EngineSeries {
    fn register(registry: &Registry, names: &Names) -> EngineSeries {
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
            register(registry, g.clone(), name);
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
            register(registry, c.clone(), name);
            c
        };
        let kv_usage = Gauge::new(
            names.kv_usage,
            "Fraction of KV-cache blocks owned by sequences (0 to 1).",
        )
        .unwrap_or_else(|e| unreachable_metric(names.kv_usage, e));
        register(registry, kv_usage.clone(), names.kv_usage);
        let finished = IntCounterVec::new(
            Opts::new(names.finished, "Sequences finished, by reason."),
            &["finished_reason"],
        )
        .unwrap_or_else(|e| unreachable_metric(names.finished, e));
        register(registry, finished.clone(), names.finished);
        for reason in FINISH_REASONS {
            finished.with_label_values(&[reason]);
        }
        let block_gauges = names.has_block_gauges;
        EngineSeries {
            running: int_gauge(names.running, "Sequences in the running batch."),
            waiting: int_gauge(
                names.waiting,
                "Sequences waiting to be scheduled (preempted ones included).",
            ),
            kv_usage,
            kv_blocks_used: block_gauges.then(|| {
                int_gauge(
                    "fulcrum_kv_cache_blocks_used",
                    "KV-cache blocks owned by sequences.",
                )
            }),
            kv_blocks: block_gauges
                .then(|| int_gauge("fulcrum_kv_cache_blocks", "KV-cache blocks in the pool.")),
            batch_size: block_gauges.then(|| {
                int_gauge(
                    "fulcrum_batch_size",
                    "Sequences in the most recent engine step.",
                )
            }),
            prompt_tokens: counter(
                names.prompt_tokens,
                "Prompt tokens of requests that produced a first token.",
            ),
            generation_tokens: counter(names.generation_tokens, "Generated tokens."),
            preemptions: counter(
                names.preemptions,
                "Sequences preempted to free KV-cache blocks.",
            ),
            prefix_cache_queries: counter(
                names.prefix_cache_queries,
                "Prompt tokens looked up in the prefix cache.",
            ),
            prefix_cache_hits: counter(
                names.prefix_cache_hits,
                "Prompt tokens served from the prefix cache.",
            ),
            finished,
        }
    }

    fn update(&self, m: &EngineMetrics) {
        self.running.set(as_i64(m.num_running));
        self.waiting.set(as_i64(m.num_waiting));
        self.kv_usage.set(m.kv_cache_usage());
        if let Some(g) = &self.kv_blocks_used {
            g.set(as_i64(m.num_kv_blocks_used));
        }
        if let Some(g) = &self.kv_blocks {
            g.set(as_i64(m.num_kv_blocks));
        }
        if let Some(g) = &self.batch_size {
            g.set(as_i64(m.last_step.num_seqs));
        }
        catch_up(&self.prompt_tokens, m.num_prompt_tokens);
        catch_up(&self.generation_tokens, m.num_generation_tokens);
        catch_up(&self.preemptions, m.num_preemptions);
        catch_up(&self.prefix_cache_queries, m.prefix_cache_queries);
        catch_up(&self.prefix_cache_hits, m.prefix_cache_hits);
        let f = &m.num_finished;
        for (reason, total) in FINISH_REASONS
            .into_iter()
            .zip([f.stop, f.length, f.abort, f.error])
        {
            catch_up(&self.finished.with_label_values(&[reason]), total);
        }
    }
}

/// Advances a counter to the engine's total (never backwards).
fn catch_up(counter: &IntCounter, total: u64) {
    let delta = total.saturating_sub(counter.get());
    if delta > 0 {
        counter.inc_by(delta);
    }
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn register<M: prometheus::core::Collector + 'static>(registry: &Registry, metric: M, name: &str) {
    if let Err(e) = registry.register(Box::new(metric)) {
        unreachable_metric(name, e);
    }
}

/// The names and buckets above are constants that the tests below build;
/// a failure here is a programming error, caught by those tests.
fn unreachable_metric(name: &str, error: prometheus::Error) -> ! {
    panic!("metric `{name}` is invalid: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sample_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn both_families_render_with_conventional_names() {
        let metrics = Metrics::new(MetricsCompat::Vllm, "smollm2-135m");
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let timings = SequenceTimings {
            arrival: t0,
            first_scheduled: Some(ms(5)),
            token_times: vec![ms(50), ms(60), ms(80)],
            finished: Some(ms(80)),
        };
        metrics.observe_choice(&timings);
        let engine = EngineMetrics {
            num_running: 3,
            num_kv_blocks: 100,
            num_kv_blocks_used: 25,
            num_prompt_tokens: 40,
            num_generation_tokens: 7,
            ..EngineMetrics::default()
        };
        let text = metrics.render(Some(&engine));
        for name in [
            "fulcrum_time_to_first_token_seconds_count{model_name=\"smollm2-135m\"} 1",
            "fulcrum_inter_token_latency_seconds_count{model_name=\"smollm2-135m\"} 2",
            "fulcrum_kv_cache_usage_ratio{model_name=\"smollm2-135m\"} 0.25",
            "fulcrum_kv_cache_blocks_used{model_name=\"smollm2-135m\"} 25",
            "fulcrum_prompt_tokens_total{model_name=\"smollm2-135m\"} 40",
            "vllm:time_to_first_token_seconds_sum{model_name=\"smollm2-135m\"} 0.05",
            "vllm:num_requests_running{model_name=\"smollm2-135m\"} 3",
            "vllm:generation_tokens_total{model_name=\"smollm2-135m\"} 7",
        ] {
            assert!(
                text.lines().any(|l| l == name),
                "missing `{name}` in\n{text}"
            );
        }
        // Counters advance by the difference, and a second scrape of the
        // same snapshot adds nothing.
        metrics.render(Some(&EngineMetrics {
            num_prompt_tokens: 50,
            ..engine.clone()
        }));
        let text = metrics.render(Some(&EngineMetrics {
            num_prompt_tokens: 50,
            ..engine
        }));
        assert_eq!(
            sample_line(&text, "fulcrum_prompt_tokens_total"),
            Some("fulcrum_prompt_tokens_total{model_name=\"smollm2-135m\"} 50")
        );
    }

    #[test]
    fn vllm_names_only_on_request() {
        let text = Metrics::new(MetricsCompat::None, "").render(Some(&EngineMetrics::default()));
        assert!(
            text.contains("fulcrum_requests_finished_total{finished_reason=\"abort\"} 0"),
            "{text}"
        );
        assert!(!text.contains("vllm:"), "{text}");
    }
}
