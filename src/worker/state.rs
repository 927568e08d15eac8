//! State shared by the worker's request handlers and background tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::BackendClient;
use crate::github::GitHubClient;
use crate::metrics::WorkerMetrics;
use crate::webhook::WebhookVerifier;

/// Everything a handler needs; cloned per request (all fields are cheap handles).
#[derive(Clone)]
pub struct AppState {
    pub verifier: WebhookVerifier,
    pub backend: BackendClient,
    pub github: GitHubClient,
    pub metrics: WorkerMetrics,
    pub lifecycle: Arc<Lifecycle>,
}

/// Whether the worker should receive traffic.
#[derive(Debug, Default)]
pub struct Lifecycle {
    shutting_down: AtomicBool,
}

impl Lifecycle {
    /// Marks the worker as stopping: `/readyz` answers 503 from now on, so load
    /// balancers stop sending deliveries while in-flight ones finish.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// True once a shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
