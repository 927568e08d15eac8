//! One worker replica: the HTTP server (webhook ingress, health, metrics) and the outbox
//! loop, sharing one backend client, one GitHub client and one metrics registry.
//!
//! [`run`] takes its listeners and its shutdown signal as arguments, so the binary and
//! the tests start workers the same way.

pub mod config;
pub mod health;
pub mod ingress;
mod ingress_error;
pub mod serve;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::backend::{BackendClient, BackendConfig};
use crate::github::{GitHubClient, GitHubConfig, parse_app_private_key};
use crate::metrics::WorkerMetrics;
use crate::outbox::{self, ClaimJournal, ClaimWake, Executor, OutboxSettings, RetryPolicy};
use crate::shutdown::{Phase, Shutdown};
use crate::webhook::WebhookVerifier;
pub use config::{ConfigError, ConfigErrors, WorkerConfig};
pub use ingress_error::IngressError;
pub use state::{AppState, Lifecycle};

/// `user-agent` of the worker's requests to GitHub and the backend.
pub const USER_AGENT: &str = concat!("sitg-bot/", env!("CARGO_PKG_VERSION"));

/// A worker that could not start. Each message names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The App private key does not parse.
    #[error("GITHUB_APP_PRIVATE_KEY is not a usable RSA private key: {0}")]
    PrivateKey(crate::github::KeyError),
    #[error("could not set up the GitHub client: {0}")]
    GitHub(#[from] crate::github::GitHubError),
    #[error("could not set up the backend client: {0}")]
    Backend(#[from] crate::backend::BackendSetupError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// The listeners a worker serves on.
pub struct Listeners {
    /// `PORT`: webhooks, health, metrics.
    pub main: TcpListener,
    /// `METRICS_PORT`: health and metrics only, where the kubelet's probes go, so that
    /// no client of the public webhook port can make them fail.
    pub metrics: Option<TcpListener>,
}

/// Builds the shared state from `config`: parses the App key once, creates the clients
/// and registers every metric.
pub fn build_state(config: &WorkerConfig) -> Result<AppState, WorkerError> {
    crate::redact::remember("GITHUB_WEBHOOK_SECRET", config.webhook_secret.expose());
    if let Some(previous) = &config.webhook_secret_previous {
        crate::redact::remember("GITHUB_WEBHOOK_SECRET_PREVIOUS", previous.expose());
    }
    parse_app_private_key(&config.github_app_private_key).map_err(WorkerError::PrivateKey)?;
    let metrics = WorkerMetrics::new()?;
    crate::telemetry::register_metrics(&metrics.registry)
        .map_err(crate::metrics::MetricsError::from)?;
    let github = GitHubClient::new(
        GitHubConfig {
            api_base_url: config.github_api_base_url.clone(),
            app_id: config.github_app_id,
            private_key_pem: config.github_app_private_key.clone(),
            user_agent: USER_AGENT.to_owned(),
            request_timeout: Duration::from_secs(10),
        },
        &metrics.registry,
    )?;
    let backend = BackendClient::new(
        BackendConfig {
            base_url: config.backend_base_url.clone(),
            key_id: config.backend_bot_key_id.clone(),
            hmac_secret: config.backend_internal_hmac_secret.clone(),
            service_token: config.backend_service_token.clone(),
            user_agent: USER_AGENT.to_owned(),
        },
        &metrics.registry,
    )?;
    let body_budget = state::BodyBudget::new(
        config.webhook_buffer_limit_bytes,
        metrics.webhook_body_bytes_reserved.clone(),
    );
    let journal = config
        .state_dir
        .as_deref()
        .map(|dir| ClaimJournal::open(dir, &config.worker_id, &metrics.registry).map(Arc::new))
        .transpose()
        .map_err(crate::metrics::MetricsError::from)?;
    let claim_wake = Arc::new(
        ClaimWake::register(&metrics.registry).map_err(crate::metrics::MetricsError::from)?,
    );
    Ok(AppState {
        claim_wake,
        journal,
        body_budget,
        verifier: WebhookVerifier::new(
            &config.webhook_secret,
            config.webhook_secret_previous.as_ref(),
        ),
        backend,
        github,
        metrics,
        lifecycle: Arc::new(Lifecycle::default()),
    })
}

/// The full router: `POST /webhooks/github`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(ingress::receive))
        .merge(ops_routes())
        // The handler reads the body itself with a 25 MB cap and answers 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Health and metrics only, for `METRICS_PORT`.
pub fn ops_app(state: AppState) -> Router {
    ops_routes().with_state(state)
}

fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}

/// Keeps readiness current: probes the backend every 5 s, and every second after a
/// failed probe (three failures in a row make the worker unready). Ends at
/// [`Phase::StopAccepting`].
async fn watch_backend(state: AppState, shutdown: Shutdown) {
    loop {
        let reachable = state.backend.probe().await;
        let every = if reachable {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.entered(Phase::StopAccepting) => return,
        }
    }
}

/// Runs one worker until `shutdown` enters [`Phase::Requested`], then: readiness goes
/// 503, and at [`Phase::StopAccepting`] the outbox stops claiming and reports every
/// claimed action, while both listeners keep serving for `config.shutdown_drain` (load
/// balancers still route here until they see the endpoint removed); then at
/// [`Phase::Drain`] the listeners close, in-flight requests are answered (within
/// `config.shutdown_timeout`), and the function returns. The worker enters the phases
/// after `Requested` itself.
pub async fn run(
    config: WorkerConfig,
    state: AppState,
    listeners: Listeners,
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    tracing::info!(
        event = "worker_starting",
        worker_id = %config.worker_id,
        addr = %listeners.main.local_addr()?,
        metrics_addr = listeners
            .metrics
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(tracing::field::display),
        outbox_polling_enabled = config.outbox_polling_enabled,
        backend = %config.backend_base_url,
        github_api = %config.github_api_base_url,
        "worker starting"
    );
    for var in &config.trimmed_secrets {
        tracing::warn!(
            event = "config_secret_trimmed",
            variable = var,
            "white space around the value was removed; the secret in use is the trimmed one"
        );
    }
    // Readiness turns 503 first; `StopAccepting` then ends the outbox's claims and the
    // backend watcher; `Drain` closes the listeners once the load balancers' drain is
    // over.
    let lifecycle = Arc::clone(&state.lifecycle);
    let drain = config.shutdown_drain;
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.entered(Phase::Requested).await;
            lifecycle.begin_shutdown();
            tracing::info!(event = "worker_stopping", "worker stopping");
            shutdown.enter(Phase::StopAccepting);
            if !drain.is_zero() {
                tracing::info!(
                    event = "worker_draining",
                    seconds = drain.as_secs(),
                    "readiness is 503; still serving until load balancers stop routing here"
                );
                tokio::time::sleep(drain).await;
            }
            shutdown.enter(Phase::Drain);
        }
    };
    let limits = serve::ServeLimits {
        header_read_timeout: config.http_header_read_timeout,
        request_head_timeout: config.http_request_head_timeout,
        max_connections: config.http_max_connections,
        in_flight_budget: config.shutdown_timeout,
    };
    let listener_names: &[&str] = if listeners.metrics.is_some() {
        &["main", "metrics"]
    } else {
        &["main"]
    };
    let connection_metrics =
        serve::ConnectionMetrics::register(&state.metrics.registry, listener_names)
            .map_err(crate::metrics::MetricsError::from)?;

    let watcher = tokio::spawn(watch_backend(state.clone(), shutdown.clone()));
    let outbox = config.outbox_polling_enabled.then(|| {
        tokio::spawn(outbox::run(
            state.backend.clone(),
            Executor::new(state.github.clone(), RetryPolicy::default()),
            state.metrics.outbox.clone(),
            OutboxSettings {
                worker_id: config.worker_id.clone(),
                poll_interval: config.outbox_poll_interval,
                claim_limit: config.outbox_claim_limit,
                concurrency: config.outbox_concurrency,
                shutdown_timeout: config.shutdown_timeout,
                journal: state.journal.clone(),
                wake: config
                    .outbox_claim_on_event
                    .then(|| Arc::clone(&state.claim_wake)),
            },
            shutdown.clone(),
        ))
    });
    let metrics_server = listeners.metrics.map(|listener| {
        tokio::spawn(serve::serve(
            listener,
            ops_app(state.clone()),
            limits,
            ("metrics", connection_metrics.clone()),
            shutdown.clone(),
        ))
    });
    // On a runtime thread of its own (not the caller's), so that each accepted
    // connection's task runs right after its accept (see `serve::serve`).
    let main = tokio::spawn(serve::serve(
        listeners.main,
        app(state),
        limits,
        ("main", connection_metrics),
        shutdown,
    ));
    let (main, ()) = tokio::join!(main, signal);
    if let Err(err) = main {
        tracing::error!(event = "server_failed", error = %err, "webhook server failed");
    }

    if let Some(outbox) = outbox {
        if let Err(err) = outbox.await {
            tracing::error!(event = "outbox_task_failed", error = %err, "outbox task failed");
        }
    }
    if let Some(server) = metrics_server {
        if let Err(err) = server.await {
            tracing::error!(event = "metrics_server_failed", error = %err, "metrics server failed");
        }
    }
    watcher.abort();
    tracing::info!(event = "worker_stopped", worker_id = %config.worker_id, "worker stopped");
    Ok(())
}
