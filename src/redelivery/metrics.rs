//! Prometheus metrics of the redelivery sweep.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a sweep, or one redelivery in it, did not succeed: the `reason` label of
/// `sitg_bot_redelivery_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// `GET /app/hook/deliveries` failed: the whole sweep did nothing.
    List,
    /// GitHub refused a redelivery (4xx other than a rate limit: the attempt is gone).
    Refused,
    /// A redelivery request failed otherwise (5xx, transport, timeout, rate limit).
    Request,
}

impl FailureReason {
    /// Every reason, so each series exists (at 0) from the start.
    pub const ALL: [Self; 3] = [Self::List, Self::Refused, Self::Request];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list_error",
            Self::Refused => "redelivery_refused",
            Self::Request => "redelivery_error",
        }
    }
}

/// The sweep's series, registered in a caller's registry.
#[derive(Clone)]
pub struct RedeliveryMetrics {
    pub(crate) requested: IntCounter,
    pub(crate) failures: IntCounterVec,
    pub(crate) sweeps: IntCounter,
    pub(crate) oldest_age: IntGauge,
    pub(crate) undelivered: IntGauge,
    pub(crate) abandoned: IntGauge,
    pub(crate) last_success: IntGauge,
}

impl RedeliveryMetrics {
    /// Registers:
    /// - `sitg_bot_redeliveries_requested_total`: redeliveries GitHub accepted (202);
    /// - `sitg_bot_redelivery_failures_total{reason}`: see [`FailureReason`];
    /// - `sitg_bot_redelivery_sweeps_total`: sweeps run;
    /// - `sitg_bot_redelivery_oldest_failed_delivery_age_seconds`: age of the first failed
    ///   attempt of the oldest event still undelivered at the last sweep (0 when none);
    /// - `sitg_bot_redelivery_undelivered_events`: events still undelivered at the last sweep;
    /// - `sitg_bot_redelivery_abandoned_events`: events given up (too many failed attempts)
    ///   within the look-back window;
    /// - `sitg_bot_redelivery_last_success_timestamp_seconds`: unix time of the last sweep
    ///   that listed the deliveries.
    ///
    /// # Errors
    /// A series already registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requested = IntCounter::new(
            "sitg_bot_redeliveries_requested_total",
            "Webhook redeliveries requested from GitHub and accepted (POST /app/hook/deliveries/{id}/attempts answered 202)",
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "sitg_bot_redelivery_failures_total",
                "Redelivery sweep failures, by reason (list_error, redelivery_refused, redelivery_error)",
            ),
            &["reason"],
        )?;
        let sweeps = IntCounter::new(
            "sitg_bot_redelivery_sweeps_total",
            "Redelivery sweeps started",
        )?;
        let oldest_age = IntGauge::new(
            "sitg_bot_redelivery_oldest_failed_delivery_age_seconds",
            "Age of the first failed attempt of the oldest webhook event still undelivered at the last sweep; 0 when none",
        )?;
        let undelivered = IntGauge::new(
            "sitg_bot_redelivery_undelivered_events",
            "Webhook events whose every attempt failed (refusals on purpose excluded) at the last sweep",
        )?;
        let abandoned = IntGauge::new(
            "sitg_bot_redelivery_abandoned_events",
            "Webhook events given up after too many failed attempts, within the look-back window, at the last sweep",
        )?;
        let last_success = IntGauge::new(
            "sitg_bot_redelivery_last_success_timestamp_seconds",
            "Unix time of the last sweep that listed the App's webhook deliveries",
        )?;
        registry.register(Box::new(requested.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(sweeps.clone()))?;
        registry.register(Box::new(oldest_age.clone()))?;
        registry.register(Box::new(undelivered.clone()))?;
        registry.register(Box::new(abandoned.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        for reason in FailureReason::ALL {
            failures.with_label_values(&[reason.as_str()]);
        }
        Ok(Self {
            requested,
            failures,
            sweeps,
            oldest_age,
            undelivered,
            abandoned,
            last_success,
        })
    }

    pub(crate) fn failed(&self, reason: FailureReason, n: u64) {
        self.failures
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }
}
