//! `bench serve`: send a workload to an OpenAI-compatible server on an
//! arrival schedule and collect what every request saw. The schedule and
//! its accounting live in [`crate::load`], shared with the in-process
//! engine driver; this file adds the HTTP side: the endpoint, the key, the
//! model name and a timeout per request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::client::CompletionsClient;
use crate::error::BenchError;
use crate::load::{block_on, dispatch, LoadSpec};
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::report::Report;
use crate::workload::{RequestSpec, Workload};

/// How to reach the server, and the load to offer it. The workload (what to
/// send) is separate.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Server root, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    pub api_key: Option<String>,
    /// The `model` field; `None` asks `GET /v1/models` for the first one.
    pub model: Option<String>,
    /// Bound on each whole request, stream included.
    pub request_timeout: Duration,
    pub load: LoadSpec,
}

impl ServeConfig {
    /// All-at-once, 100 requests, no cap, no SLO.
    pub fn new(base_url: impl Into<String>) -> ServeConfig {
        ServeConfig {
            base_url: base_url.into(),
            api_key: None,
            model: None,
            request_timeout: Duration::from_secs(600),
            load: LoadSpec::default(),
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        if self.request_timeout.is_zero() {
            return Err(BenchError::config("--timeout", "must be longer than zero"));
        }
        self.load.validate()
    }

    /// The configuration as recorded in a report (never the API key).
    fn describe(&self, model: &str, workload: &Workload) -> serde_json::Value {
        let mut config = json!({
            "base_url": self.base_url,
            "model": model,
            "request_timeout_s": self.request_timeout.as_secs_f64(),
            "workload": workload.spec(),
            "prompts": workload.vocabulary().describe(),
            "prompt_lengths_approximate": workload.is_approximate(),
        });
        merge(&mut config, self.load.describe());
        config
    }
}

/// Adds `extra`'s keys to the object `into`.
pub(crate) fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

/// Runs the benchmark on the current tokio runtime.
pub async fn run_serve(
    config: &ServeConfig,
    mut workload: Workload,
    progress: Arc<dyn Progress>,
) -> Result<Report, BenchError> {
    config.validate()?;
    let client = Arc::new(CompletionsClient::new(
        &config.base_url,
        config.api_key.clone(),
        config.request_timeout,
    )?);
    let model: Arc<str> = match &config.model {
        Some(m) => m.as_str().into(),
        None => client.first_model().await?.into(),
    };
    let send = |spec: RequestSpec| {
        let (client, model) = (client.clone(), model.clone());
        async move { send_one(&client, &model, &spec).await }
    };
    let run = dispatch(&config.load, &mut workload, progress, send).await?;
    Ok(Report::new(
        config.describe(&model, &workload),
        run.records,
        run.duration,
        &config.load.slo,
    ))
}

async fn send_one(client: &CompletionsClient, model: &str, spec: &RequestSpec) -> RequestRecord {
    match client.stream_completion(model, spec).await {
        Ok(c) => RequestRecord::success(&c.chunk_offsets, c.e2e, c.prompt_tokens, c.output_tokens),
        Err((message, elapsed)) => RequestRecord::failure(message, elapsed),
    }
}

/// [`run_serve`] on a single-threaded runtime of its own.
pub fn run_serve_blocking(
    config: &ServeConfig,
    workload: Workload,
    progress: Arc<dyn Progress>,
) -> Result<Report, BenchError> {
    block_on(run_serve(config, workload, progress))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_timeout_is_refused_and_the_load_is_checked() {
        let base = ServeConfig::new("http://127.0.0.1:1");
        assert!(base.validate().is_ok());
        let err = |c: ServeConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            err(ServeConfig {
                request_timeout: Duration::ZERO,
                ..base.clone()
            }),
            "invalid --timeout: must be longer than zero"
        );
        let load = LoadSpec {
            num_requests: Some(0),
            ..LoadSpec::default()
        };
        assert_eq!(
            err(ServeConfig { load, ..base }),
            "invalid --num-requests: must be at least 1"
        );
    }
}
