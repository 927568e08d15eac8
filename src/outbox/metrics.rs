//! Prometheus metrics of the outbox loop. The outbox owns their names and labels (its
//! failure codes come from [`crate::contract::FailureCode`], its action types from
//! [`ActionKind`]); the worker's registry ([`crate::metrics::WorkerMetrics`]) holds
//! them next to the ingress metrics.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::action::ActionKind;
use crate::contract::FailureCode;

/// Buckets of `sitg_bot_outbox_action_duration_seconds`, in seconds: 0.5 ms to 30 s.
const ACTION_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The outbox's metrics, registered in the worker's registry. Cloning shares them.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// `sitg_bot_outbox_claim_total`: successful claims.
    pub outbox_claims: IntCounter,
    /// `sitg_bot_outbox_claim_answers_lost_total`: claims that may have been carried out
    /// by the backend but whose answer never arrived (timeout, reset, unreadable body):
    /// each may have left up to `OUTBOX_CLAIM_LIMIT` actions `CLAIMED` by this worker.
    pub claim_answers_lost: IntCounter,
    /// `sitg_bot_outbox_actions_claimed_total`
    pub actions_claimed: IntCounter,
    /// `sitg_bot_outbox_actions_success_total`
    pub actions_success: IntCounter,
    /// `sitg_bot_outbox_actions_retryable_failure_total`
    pub actions_retryable_failure: IntCounter,
    /// `sitg_bot_outbox_actions_failed_total`
    pub actions_failed: IntCounter,
    /// `sitg_bot_outbox_action_failures_total{code}`: failures by [`FailureCode`]; every
    /// code a worker reports has its series from the start, at 0.
    pub action_failures_by_code: IntCounterVec,
    /// `sitg_bot_outbox_action_duration_seconds{action_type}`: execution on GitHub.
    pub action_duration: HistogramVec,
    /// `sitg_bot_outbox_lag_seconds`: age of the oldest action in the last claim, 0 when
    /// the claim was empty: how long the head of the queue waited. The HPA scales on
    /// its average over pods (docs/architecture.md); unchanged while the worker has no
    /// room to claim, so a saturated replica never reads as idle.
    pub outbox_lag: Gauge,
    /// `sitg_bot_outbox_actions_in_flight`: claimed and not yet reported.
    pub actions_in_flight: IntGauge,
    /// `sitg_bot_errors_total`, shared with the rest of the worker: failed claims,
    /// failed reports.
    pub errors: IntCounter,
}

/// The `code` values of `sitg_bot_outbox_action_failures_total` created at 0: every
/// [`FailureCode`] a running worker reports.
pub fn worker_failure_codes() -> Vec<&'static str> {
    FailureCode::ALL
        .into_iter()
        .filter(|c| c.counted_by_worker())
        .map(FailureCode::as_str)
        .collect()
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl OutboxMetrics {
    /// Registers the outbox metrics in `registry`; `errors` is the worker's
    /// `sitg_bot_errors_total`, already registered there.
    ///
    /// Errors: a name already registered in `registry`.
    pub fn register(registry: &Registry, errors: IntCounter) -> prometheus::Result<Self> {
        let action_failures_by_code = IntCounterVec::new(
            Opts::new(
                "sitg_bot_outbox_action_failures_total",
                "Outbox action failures by failure code",
            ),
            &["code"],
        )?;
        for code in worker_failure_codes() {
            action_failures_by_code.get_metric_with_label_values(&[code])?;
        }
        registry.register(Box::new(action_failures_by_code.clone()))?;
        let action_duration = HistogramVec::new(
            HistogramOpts::new(
                "sitg_bot_outbox_action_duration_seconds",
                "Time to execute one outbox action on GitHub, retries included",
            )
            .buckets(ACTION_DURATION_BUCKETS.to_vec()),
            &["action_type"],
        )?;
        for kind in ActionKind::ALL {
            action_duration.get_metric_with_label_values(&[kind.as_str()])?;
        }
        registry.register(Box::new(action_duration.clone()))?;
        let outbox_lag = Gauge::new(
            crate::contract::metrics::OUTBOX_LAG_SECONDS,
            "Age in seconds of the oldest action in the last claim (0 when the claim was empty)",
        )?;
        registry.register(Box::new(outbox_lag.clone()))?;
        let actions_in_flight = IntGauge::new(
            "sitg_bot_outbox_actions_in_flight",
            "Actions claimed by this worker and not yet reported",
        )?;
        registry.register(Box::new(actions_in_flight.clone()))?;
        Ok(Self {
            outbox_claims: counter(
                registry,
                "sitg_bot_outbox_claim_total",
                "Successful outbox claims",
            )?,
            claim_answers_lost: counter(
                registry,
                "sitg_bot_outbox_claim_answers_lost_total",
                "Claims the backend may have carried out whose answer was lost (timeout, reset, unreadable body); their actions stay CLAIMED",
            )?,
            actions_claimed: counter(
                registry,
                "sitg_bot_outbox_actions_claimed_total",
                "Outbox actions claimed",
            )?,
            actions_success: counter(
                registry,
                "sitg_bot_outbox_actions_success_total",
                "Outbox actions reported SUCCEEDED",
            )?,
            actions_retryable_failure: counter(
                registry,
                "sitg_bot_outbox_actions_retryable_failure_total",
                "Outbox actions reported RETRYABLE_FAILURE",
            )?,
            actions_failed: counter(
                registry,
                "sitg_bot_outbox_actions_failed_total",
                "Outbox actions reported FAILED",
            )?,
            action_failures_by_code,
            action_duration,
            outbox_lag,
            actions_in_flight,
            errors,
        })
    }
}
