//! The worker's Prometheus metrics.
//!
//! The counter names of contract §4 are the ones operators already watch; they keep
//! their exact names and carry no labels. Everything else is added around them.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from 1 ms to GitHub's 10 s delivery budget and beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric of one worker, registered in its own [`Registry`].
#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    /// `sitg_bot_webhook_events_total`: deliveries whose signature verified.
    pub webhook_events: IntCounter,
    /// `sitg_bot_webhook_ignored_total`: verified deliveries of events/actions not forwarded.
    pub webhook_ignored: IntCounter,
    /// `sitg_bot_webhook_pull_request_forwarded_total`
    pub pull_request_forwarded: IntCounter,
    /// `sitg_bot_webhook_installation_sync_forwarded_total`
    pub installation_sync_forwarded: IntCounter,
    /// `sitg_bot_webhook_ingest_accepted_total`
    pub ingest_accepted: IntCounter,
    /// `sitg_bot_webhook_ingest_duplicate_total`
    pub ingest_duplicate: IntCounter,
    /// `sitg_bot_webhook_ingest_ignored_total`
    pub ingest_ignored: IntCounter,
    /// `sitg_bot_webhook_signature_failures_total{reason}`: deliveries answered 401.
    pub signature_failures: IntCounterVec,
    /// `sitg_bot_webhook_previous_secret_total`: deliveries verified by the previous
    /// secret; when it stays flat, a rotation can be finished.
    pub previous_secret_used: IntCounter,
    /// `sitg_bot_webhook_rejected_total{reason}`: deliveries answered 4xx other than 401.
    pub webhook_rejected: IntCounterVec,
    /// `sitg_bot_webhook_duration_seconds`: from request to response.
    pub webhook_duration: Histogram,
    /// `sitg_bot_outbox_claim_total`: successful claims.
    pub outbox_claims: IntCounter,
    /// `sitg_bot_outbox_actions_claimed_total`
    pub actions_claimed: IntCounter,
    /// `sitg_bot_outbox_actions_success_total`
    pub actions_success: IntCounter,
    /// `sitg_bot_outbox_actions_retryable_failure_total`
    pub actions_retryable_failure: IntCounter,
    /// `sitg_bot_outbox_actions_failed_total`
    pub actions_failed: IntCounter,
    /// `sitg_bot_outbox_action_failures_total{code}`: failures by failure code.
    pub action_failures_by_code: IntCounterVec,
    /// `sitg_bot_outbox_action_duration_seconds{action_type}`: execution on GitHub.
    pub action_duration: HistogramVec,
    /// `sitg_bot_outbox_lag_seconds`: age of the oldest action in the last claim, 0 when
    /// the claim was empty. The HPA scales on it.
    pub outbox_lag: Gauge,
    /// `sitg_bot_outbox_actions_in_flight`: claimed and not yet reported.
    pub actions_in_flight: IntGauge,
    /// `sitg_bot_errors_total`: every error the worker handled (backend or GitHub
    /// failures, failed reports, failed claims).
    pub errors: IntCounter,
}

/// Metrics could not be registered (a name registered twice).
#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl WorkerMetrics {
    /// Creates a fresh registry holding every worker metric.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let webhook_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sitg_bot_webhook_duration_seconds",
                "Time from receiving a webhook delivery to answering it",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        r.register(Box::new(webhook_duration.clone()))?;
        let action_duration = HistogramVec::new(
            HistogramOpts::new(
                "sitg_bot_outbox_action_duration_seconds",
                "Time to execute one outbox action on GitHub, retries included",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["action_type"],
        )?;
        r.register(Box::new(action_duration.clone()))?;
        let outbox_lag = Gauge::new(
            "sitg_bot_outbox_lag_seconds",
            "Age in seconds of the oldest action in the last claim (0 when the claim was empty)",
        )?;
        r.register(Box::new(outbox_lag.clone()))?;
        let actions_in_flight = IntGauge::new(
            "sitg_bot_outbox_actions_in_flight",
            "Actions claimed by this worker and not yet reported",
        )?;
        r.register(Box::new(actions_in_flight.clone()))?;
        Ok(Self {
            webhook_events: counter(
                &r,
                "sitg_bot_webhook_events_total",
                "Webhook deliveries with a valid signature",
            )?,
            webhook_ignored: counter(
                &r,
                "sitg_bot_webhook_ignored_total",
                "Verified deliveries of events or actions that are not forwarded",
            )?,
            pull_request_forwarded: counter(
                &r,
                "sitg_bot_webhook_pull_request_forwarded_total",
                "Pull-request events forwarded to the backend",
            )?,
            installation_sync_forwarded: counter(
                &r,
                "sitg_bot_webhook_installation_sync_forwarded_total",
                "Installation events forwarded to the backend",
            )?,
            ingest_accepted: counter(
                &r,
                "sitg_bot_webhook_ingest_accepted_total",
                "Forwarded events the backend answered ACCEPTED",
            )?,
            ingest_duplicate: counter(
                &r,
                "sitg_bot_webhook_ingest_duplicate_total",
                "Forwarded events the backend answered DUPLICATE",
            )?,
            ingest_ignored: counter(
                &r,
                "sitg_bot_webhook_ingest_ignored_total",
                "Forwarded events the backend answered IGNORED",
            )?,
            signature_failures: counter_vec(
                &r,
                "sitg_bot_webhook_signature_failures_total",
                "Deliveries refused with 401 for a missing, malformed or wrong signature",
                &["reason"],
            )?,
            previous_secret_used: counter(
                &r,
                "sitg_bot_webhook_previous_secret_total",
                "Deliveries verified with GITHUB_WEBHOOK_SECRET_PREVIOUS",
            )?,
            webhook_rejected: counter_vec(
                &r,
                "sitg_bot_webhook_rejected_total",
                "Deliveries refused with 4xx other than 401, by reason",
                &["reason"],
            )?,
            webhook_duration,
            outbox_claims: counter(
                &r,
                "sitg_bot_outbox_claim_total",
                "Successful outbox claims",
            )?,
            actions_claimed: counter(
                &r,
                "sitg_bot_outbox_actions_claimed_total",
                "Outbox actions claimed",
            )?,
            actions_success: counter(
                &r,
                "sitg_bot_outbox_actions_success_total",
                "Outbox actions reported SUCCEEDED",
            )?,
            actions_retryable_failure: counter(
                &r,
                "sitg_bot_outbox_actions_retryable_failure_total",
                "Outbox actions reported RETRYABLE_FAILURE",
            )?,
            actions_failed: counter(
                &r,
                "sitg_bot_outbox_actions_failed_total",
                "Outbox actions reported FAILED",
            )?,
            action_failures_by_code: counter_vec(
                &r,
                "sitg_bot_outbox_action_failures_total",
                "Outbox action failures by failure code",
                &["code"],
            )?,
            action_duration,
            outbox_lag,
            actions_in_flight,
            errors: counter(&r, "sitg_bot_errors_total", "Errors handled by the worker")?,
            registry: r,
        })
    }

    /// The registry in Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which the
        // prometheus crate does not produce.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_counter_names_are_exposed() {
        let m = WorkerMetrics::new().unwrap();
        m.signature_failures.with_label_values(&["mismatch"]).inc();
        m.webhook_rejected
            .with_label_values(&["invalid_payload"])
            .inc();
        m.action_failures_by_code
            .with_label_values(&["EXECUTION_ERROR"])
            .inc();
        m.action_duration
            .with_label_values(&["UPSERT_PR_COMMENT"])
            .observe(0.1);
        let text = m.render();
        for name in [
            "sitg_bot_webhook_events_total",
            "sitg_bot_webhook_ignored_total",
            "sitg_bot_webhook_pull_request_forwarded_total",
            "sitg_bot_webhook_installation_sync_forwarded_total",
            "sitg_bot_webhook_ingest_accepted_total",
            "sitg_bot_webhook_ingest_duplicate_total",
            "sitg_bot_webhook_ingest_ignored_total",
            "sitg_bot_outbox_claim_total",
            "sitg_bot_outbox_actions_claimed_total",
            "sitg_bot_outbox_actions_success_total",
            "sitg_bot_outbox_actions_retryable_failure_total",
            "sitg_bot_outbox_actions_failed_total",
            "sitg_bot_errors_total",
            "sitg_bot_outbox_lag_seconds",
            "sitg_bot_webhook_duration_seconds_bucket",
            "sitg_bot_outbox_action_duration_seconds_bucket",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name} missing");
        }
    }
}
