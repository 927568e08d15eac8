//! The operator's Prometheus metrics, in a registry of their own.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Operator metrics served on `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `sitg_bot_operator_reconciles_total`: reconcile passes started.
    pub reconciles: IntCounter,
    /// `sitg_bot_operator_reconcile_errors_total{error}`: failed passes by error
    /// variant ([`super::Error::metric_label`]).
    pub reconcile_errors: IntCounterVec,
    /// `sitg_bot_operator_reconcile_duration_seconds`: wall time of a pass, seconds.
    pub reconcile_duration: Histogram,
    /// `sitg_bot_operator_leader`: 1 while this process holds the leader Lease.
    pub leader: IntGauge,
    /// The redelivery sweeps' `sitg_bot_redelivery_*` metrics, summed over the fleets
    /// this operator sweeps for (as `sitg-bot redeliver` exports them on systemd hosts).
    pub redelivery: crate::redelivery::RedeliveryMetrics,
}

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// A [`prometheus::Error`] if a metric definition is invalid (a programming error).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        crate::build_info::register(&registry)?;
        let reconciles = IntCounter::new(
            "sitg_bot_operator_reconciles_total",
            "BotFleet reconcile passes started.",
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "sitg_bot_operator_reconcile_errors_total",
                "BotFleet reconcile passes that failed, by error variant.",
            ),
            &["error"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sitg_bot_operator_reconcile_duration_seconds",
                "Wall time of a BotFleet reconcile pass, in seconds.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let leader = IntGauge::new(
            "sitg_bot_operator_leader",
            "1 while this operator process holds the leader Lease, else 0.",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        let redelivery = crate::redelivery::RedeliveryMetrics::register(&registry)?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            leader,
            redelivery,
        })
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_operator_metrics() {
        let m = Metrics::new().expect("metrics");
        m.reconciles.inc();
        m.reconcile_errors
            .with_label_values(&["secret_not_found"])
            .inc();
        m.reconcile_duration.observe(0.2);
        m.leader.set(1);
        let text = m.encode();
        assert!(
            text.contains("sitg_bot_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("sitg_bot_operator_reconcile_errors_total{error=\"secret_not_found\"} 1"),
            "{text}"
        );
        assert!(text.contains("sitg_bot_operator_reconcile_duration_seconds_count 1"));
        assert!(text.contains("sitg_bot_operator_leader 1"));
    }
}
