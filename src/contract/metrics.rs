//! Metric names read outside the worker: by the operator's HorizontalPodAutoscaler and
//! by the Helm chart's Prometheus adapter rule.

/// Gauge, seconds: age of the oldest action in a worker's last claim (0 when the claim
/// was empty). The autoscaler averages it over the fleet's pods.
pub const OUTBOX_LAG_SECONDS: &str = "sitg_bot_outbox_lag_seconds";
