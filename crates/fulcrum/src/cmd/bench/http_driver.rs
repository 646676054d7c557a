//! `bench sweep --server`: each configuration's engine behind the real
//! OpenAI server (`fulcrum-server`, in this process, on an ephemeral
//! loopback port), driven by `bench serve`'s HTTP client.
//!
//! Why in-process rather than spawning `fulcrum serve`: the model is loaded
//! once for the whole sweep, the port is picked by the kernel (no races),
//! and the server is exactly the one `fulcrum serve` runs — the same router,
//! SSE path and shutdown. What it adds over the in-process driver is what a
//! deployment adds: HTTP, JSON, SSE framing and a second runtime.

use std::sync::Arc;
use std::time::Duration;

use fulcrum_bench::{
    run_serve, BenchError, LoadDriver, LoadSpec, Progress, Report, ServeConfig, Workload,
};
use fulcrum_engine::EngineHandle;
use fulcrum_server::{Server, ServerConfig};

pub struct HttpDriver {
    pub request_timeout: Duration,
    /// The name the server lists and the client sends as `model`.
    pub served_model_name: String,
}

impl LoadDriver for HttpDriver {
    fn drive(
        &mut self,
        engine: &EngineHandle,
        load: &LoadSpec,
        workload: Workload,
        progress: Arc<dyn Progress>,
    ) -> Result<Report, BenchError> {
        // Two workers: the server's handlers and the load generator's client.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(BenchError::Runtime)?;
        runtime.block_on(self.serve_and_drive(engine, load, workload, progress))
    }
}

impl HttpDriver {
    async fn serve_and_drive(
        &self,
        engine: &EngineHandle,
        load: &LoadSpec,
        workload: Workload,
        progress: Arc<dyn Progress>,
    ) -> Result<Report, BenchError> {
        let config = ServerConfig {
            addr: ([127, 0, 0, 1], 0).into(),
            served_model_names: vec![self.served_model_name.clone()],
            ..ServerConfig::default()
        };
        let server_error = |message: String| BenchError::Server {
            url: "127.0.0.1:0".into(),
            message,
        };
        let server = Server::bind(config)
            .await
            .map_err(|e| server_error(format!("binding: {e}")))?;
        let base_url = format!(
            "http://{}",
            server
                .local_addr()
                .map_err(|e| server_error(e.to_string()))?
        );
        if server.state().set_engine(engine.clone()).is_err() {
            return Err(server_error("the server already had an engine".into()));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let client = ServeConfig {
            base_url,
            api_key: None,
            model: Some(self.served_model_name.clone()),
            request_timeout: self.request_timeout,
            load: load.clone(),
        };
        let report = run_serve(&client, workload, progress).await;
        // Draining also shuts the engine down; the sweep's own shutdown
        // afterwards returns at once.
        let _ = stop.send(());
        let _ = serving.await;
        report
    }
}
