//! The worker's Prometheus registry: the ingress metrics, defined here, and the
//! outbox's ([`OutboxMetrics`], owned by `outbox/`), plus the shared error counter.
//!
//! The counter names of contract §4 are the ones operators already watch; they keep
//! their exact names and carry no labels. Everything else is added around them.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::outbox::metrics::OutboxMetrics;
use crate::webhook::SignatureError;

/// Latency buckets in seconds, from 1 ms to GitHub's 10 s delivery budget and beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why the ingress refused a delivery other than for its signature: the `reason` label
/// of `sitg_bot_webhook_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// 413: body over GitHub's 25 MB.
    TooLarge,
    /// 400: the connection failed while the body was read.
    Unreadable,
    /// 408: the body did not arrive in full within its deadline.
    BodyTimeout,
    /// 503: the body bytes received, over all requests, would exceed `WEBHOOK_BUFFER_LIMIT_MB`.
    Overloaded,
    /// 400: no usable `X-GitHub-Event`.
    MissingEvent,
    /// 400: no usable `X-GitHub-Delivery`.
    InvalidDeliveryId,
    /// 400: malformed JSON, a missing field or a value the backend cannot store.
    InvalidPayload,
    /// 415: a `Content-Type` that is neither JSON nor GitHub's form encoding.
    UnsupportedMediaType,
}

impl RejectReason {
    /// Every reason, so each series exists (at 0) from the start.
    pub const ALL: [Self; 8] = [
        Self::TooLarge,
        Self::Unreadable,
        Self::BodyTimeout,
        Self::Overloaded,
        Self::MissingEvent,
        Self::InvalidDeliveryId,
        Self::InvalidPayload,
        Self::UnsupportedMediaType,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Unreadable => "unreadable",
            Self::BodyTimeout => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::MissingEvent => "missing_event",
            Self::InvalidDeliveryId => "invalid_delivery_id",
            Self::InvalidPayload => "invalid_payload",
            Self::UnsupportedMediaType => "unsupported_media_type",
        }
    }
}

/// The former name of `sitg_bot_webhook_reserved_body_bytes`: same value, exported for
/// one more release so that dashboards and alerts can move (docs/operations.md, "Metric
/// changes").
pub const DEPRECATED_RESERVED_BODY_BYTES: &str = "sitg_bot_webhook_body_bytes_reserved";

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
    /// `sitg_bot_webhook_rejected_total{reason}`: deliveries refused before processing
    /// (4xx other than 401, and 503 `overloaded`); see [`RejectReason`] and
    /// [`WorkerMetrics::reject`].
    pub webhook_rejected: IntCounterVec,
    /// `sitg_bot_webhook_duration_seconds`: from request to response.
    pub webhook_duration: Histogram,
    /// `sitg_bot_webhook_reserved_body_bytes`: bytes of the `WEBHOOK_BUFFER_LIMIT_MB`
    /// budget held by requests being read or checked, in whole KiB. Also exported under
    /// its deprecated name [`DEPRECATED_RESERVED_BODY_BYTES`] for one release.
    pub webhook_body_bytes_reserved: IntGauge,
    /// The outbox loop's metrics (`sitg_bot_outbox_*`).
    pub outbox: OutboxMetrics,
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

/// A counter with one label whose values are known in advance. Each value's series is
/// created at 0, so that `increase()` and `rate()` see the first event after a restart
/// (a series that appears at 1 has no earlier sample to compare with).
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    known_values: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
    for value in known_values {
        c.get_metric_with_label_values(&[value])?;
    }
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl WorkerMetrics {
    /// Creates a fresh registry holding every worker metric.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        crate::build_info::register(&r)?;
        let webhook_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sitg_bot_webhook_duration_seconds",
                "Time from receiving a webhook delivery to answering it",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        r.register(Box::new(webhook_duration.clone()))?;
        let webhook_body_bytes_reserved = IntGauge::new(
            "sitg_bot_webhook_reserved_body_bytes",
            "Bytes of the webhook body budget (WEBHOOK_BUFFER_LIMIT_MB) held by requests in progress",
        )?;
        r.register(Box::new(webhook_body_bytes_reserved.clone()))?;
        let reserved = webhook_body_bytes_reserved.clone();
        // Gauge values are whole KiB multiples far below 2^53: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let deprecated_reserved = prometheus::PullingGauge::new(
            DEPRECATED_RESERVED_BODY_BYTES,
            "Deprecated: use sitg_bot_webhook_reserved_body_bytes (same value); removed in the next release",
            Box::new(move || reserved.get() as f64),
        )?;
        r.register(Box::new(deprecated_reserved))?;
        let errors = counter(&r, "sitg_bot_errors_total", "Errors handled by the worker")?;
        let outbox = OutboxMetrics::register(&r, errors.clone())?;
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
                "reason",
                &SignatureError::ALL.map(SignatureError::reason),
            )?,
            previous_secret_used: counter(
                &r,
                "sitg_bot_webhook_previous_secret_total",
                "Deliveries verified with GITHUB_WEBHOOK_SECRET_PREVIOUS",
            )?,
            webhook_rejected: counter_vec(
                &r,
                "sitg_bot_webhook_rejected_total",
                "Deliveries refused before processing (4xx other than 401, and 503 when over the buffer budget), by reason",
                "reason",
                &RejectReason::ALL.map(RejectReason::as_str),
            )?,
            webhook_duration,
            webhook_body_bytes_reserved,
            outbox,
            errors,
            registry: r,
        })
    }

    /// Counts one refused delivery under `reason`.
    pub fn reject(&self, reason: RejectReason) {
        self.webhook_rejected
            .with_label_values(&[reason.as_str()])
            .inc();
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
    fn every_known_label_value_is_exposed_at_zero_before_any_event() {
        let text = WorkerMetrics::new().unwrap().render();
        let mut expected: Vec<String> = Vec::new();
        for reason in SignatureError::ALL.map(SignatureError::reason) {
            expected.push(format!(
                "sitg_bot_webhook_signature_failures_total{{reason=\"{reason}\"}} 0"
            ));
        }
        for reason in RejectReason::ALL {
            expected.push(format!(
                "sitg_bot_webhook_rejected_total{{reason=\"{}\"}} 0",
                reason.as_str()
            ));
        }
        for code in crate::outbox::metrics::worker_failure_codes() {
            expected.push(format!(
                "sitg_bot_outbox_action_failures_total{{code=\"{code}\"}} 0"
            ));
        }
        for kind in ["UPSERT_PR_COMMENT", "CLOSE_PR_WITH_COMMENT"] {
            expected.push(format!(
                "sitg_bot_outbox_action_duration_seconds_count{{action_type=\"{kind}\"}} 0"
            ));
        }
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[test]
    fn every_code_a_worker_reports_is_pre_initialised() {
        let text = WorkerMetrics::new().unwrap().render();
        // The claim journal's codes were once counted without a series at 0.
        for code in [
            "WORKER_SHUTDOWN",
            "WORKER_RESTARTED",
            "CLAIM_JOURNAL_UNWRITABLE",
            "EXECUTION_ERROR",
            "GITHUB_PAGINATION_LOOP",
        ] {
            let line = format!("sitg_bot_outbox_action_failures_total{{code=\"{code}\"}} 0");
            assert!(text.lines().any(|l| l == line), "{line} missing");
        }
        assert_eq!(
            crate::outbox::metrics::worker_failure_codes().len(),
            crate::contract::FailureCode::ALL.len() - 1
        );
        assert!(
            !text.contains("RELEASED_BY_OPERATOR"),
            "only the release subcommand sends RELEASED_BY_OPERATOR"
        );
    }

    #[test]
    fn the_reserved_body_bytes_gauge_is_also_exported_under_its_deprecated_name() {
        let m = WorkerMetrics::new().unwrap();
        m.webhook_body_bytes_reserved.set(61_440);
        let text = m.render();
        for line in [
            "sitg_bot_webhook_reserved_body_bytes 61440",
            "sitg_bot_webhook_body_bytes_reserved 61440",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }

    #[test]
    fn a_rejection_counts_under_its_reason() {
        let m = WorkerMetrics::new().unwrap();
        m.reject(RejectReason::Overloaded);
        let text = m.render();
        assert!(
            text.lines()
                .any(|l| l == "sitg_bot_webhook_rejected_total{reason=\"overloaded\"} 1")
        );
        assert!(
            text.lines()
                .any(|l| l == "sitg_bot_webhook_rejected_total{reason=\"too_large\"} 0")
        );
    }

    #[test]
    fn contract_counter_names_are_exposed() {
        let m = WorkerMetrics::new().unwrap();
        m.signature_failures.with_label_values(&["mismatch"]).inc();
        m.webhook_rejected
            .with_label_values(&["invalid_payload"])
            .inc();
        m.outbox
            .action_failures_by_code
            .with_label_values(&["EXECUTION_ERROR"])
            .inc();
        m.outbox
            .action_duration
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
