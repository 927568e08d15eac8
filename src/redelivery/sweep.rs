//! One redelivery sweep: list the App's deliveries, plan, ask GitHub to redeliver.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::metrics::{FailureReason, RedeliveryMetrics};
use super::plan::{SweepPolicy, plan_sweep};
use crate::github::{GitHubClient, GitHubError};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Delivery attempts listed within the look-back window.
    pub listed: usize,
    /// Redeliveries GitHub accepted.
    pub requested: usize,
    /// Redeliveries GitHub refused or that failed.
    pub failed: usize,
    /// Events still undelivered before this sweep's redeliveries.
    pub undelivered: usize,
    /// Undelivered events left to the next sweep (per-sweep bound, or a rate limit).
    pub deferred: usize,
    /// Events refused on purpose by the worker (400, 401, 413), not redelivered.
    pub refused: usize,
    /// Events given up after too many failed attempts.
    pub abandoned: usize,
    /// Age of the oldest undelivered event's first failed attempt.
    pub oldest_undelivered_age: Option<Duration>,
}

/// Runs sweeps with one GitHub client, policy and set of metrics.
#[derive(Clone)]
pub struct Sweeper {
    github: GitHubClient,
    policy: SweepPolicy,
    metrics: RedeliveryMetrics,
}

impl Sweeper {
    /// A sweeper acting as the App of `github`.
    pub fn new(github: GitHubClient, policy: SweepPolicy, metrics: RedeliveryMetrics) -> Self {
        Self {
            github,
            policy,
            metrics,
        }
    }

    /// One sweep at the current time; see [`Sweeper::sweep_at`].
    ///
    /// # Errors
    /// The deliveries could not be listed (nothing was redelivered).
    pub async fn sweep(&self) -> Result<SweepReport, GitHubError> {
        self.sweep_at(Utc::now()).await
    }

    /// Lists the attempts of the look-back window before `now`, plans with
    /// [`plan_sweep`] and requests each planned redelivery in turn, logging one
    /// `webhook_redelivery_requested` line per accepted request (delivery id, GUID,
    /// event, action, the failed attempt's status code). A rate limit ends the sweep
    /// early; the rest is left to the next one.
    ///
    /// # Errors
    /// The deliveries could not be listed (nothing was redelivered).
    pub async fn sweep_at(&self, now: DateTime<Utc>) -> Result<SweepReport, GitHubError> {
        self.metrics.sweeps.inc();
        let deliveries = match self
            .github
            .list_hook_deliveries(self.policy.since(now))
            .await
        {
            Ok(deliveries) => deliveries,
            Err(err) => {
                self.metrics.failed(FailureReason::List, 1);
                warn!(event = "webhook_deliveries_list_failed", error = %err, "could not list the App's webhook deliveries");
                return Err(err);
            }
        };
        self.metrics.last_success.set(now.timestamp());
        let plan = plan_sweep(&deliveries, now, &self.policy);
        let age = plan.oldest_undelivered_age.unwrap_or_default().as_secs();
        self.metrics
            .oldest_age
            .set(i64::try_from(age).unwrap_or(i64::MAX));
        self.metrics
            .undelivered
            .set(i64::try_from(plan.undelivered).unwrap_or(i64::MAX));
        self.metrics
            .abandoned
            .set(i64::try_from(plan.exhausted).unwrap_or(i64::MAX));

        let mut report = SweepReport {
            listed: deliveries.len(),
            undelivered: plan.undelivered,
            deferred: plan.deferred,
            refused: plan.refused,
            abandoned: plan.exhausted,
            oldest_undelivered_age: plan.oldest_undelivered_age,
            ..SweepReport::default()
        };
        let planned = plan.redeliver.len();
        for (done, delivery) in plan.redeliver.iter().enumerate() {
            match self.github.redeliver_hook_delivery(delivery.id).await {
                Ok(()) => {
                    report.requested += 1;
                    self.metrics.requested.inc();
                    info!(
                        event = "webhook_redelivery_requested",
                        delivery_id = delivery.id,
                        guid = %delivery.guid,
                        github_event = %delivery.event,
                        action = delivery.action.as_deref(),
                        failed_status_code = delivery.status_code,
                        failed_at = %delivery.delivered_at,
                        "asked GitHub to redeliver a failed webhook delivery"
                    );
                }
                Err(err) => {
                    report.failed += 1;
                    let reason = if err.is_retryable() {
                        FailureReason::Request
                    } else {
                        FailureReason::Refused
                    };
                    self.metrics.failed(reason, 1);
                    warn!(
                        event = "webhook_redelivery_failed",
                        delivery_id = delivery.id,
                        guid = %delivery.guid,
                        github_event = %delivery.event,
                        reason = reason.as_str(),
                        error = %err,
                        "GitHub did not accept a redelivery"
                    );
                    if matches!(err, GitHubError::RateLimited { .. }) {
                        report.deferred += planned - done - 1;
                        break;
                    }
                }
            }
        }
        info!(
            event = "webhook_redelivery_sweep",
            listed = report.listed,
            undelivered = report.undelivered,
            requested = report.requested,
            failed = report.failed,
            deferred = report.deferred,
            refused = report.refused,
            abandoned = report.abandoned,
            oldest_undelivered_age_seconds = age,
            "webhook redelivery sweep done"
        );
        Ok(report)
    }
}
