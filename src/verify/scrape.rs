//! One `/metrics` scrape, reduced to the values the checklist reads.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

/// The samples of one scrape: for each metric name, the sum of its counter, gauge and
/// untyped samples over all label sets. Histograms and summaries are left out (the
/// checklist reads none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    values: BTreeMap<String, f64>,
}

/// The body was not Prometheus text exposition format.
#[derive(Debug, thiserror::Error)]
#[error("not Prometheus text format: {0}")]
pub struct ScrapeError(#[source] std::io::Error);

impl Snapshot {
    /// Parses a Prometheus text-format (0.0.4) body.
    ///
    /// # Errors
    /// [`ScrapeError`] when the parser refuses the body.
    pub fn parse(body: &str) -> Result<Self, ScrapeError> {
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).map_err(ScrapeError)?;
        let mut values = BTreeMap::new();
        for sample in scrape.samples {
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                Value::Histogram(_) | Value::Summary(_) => continue,
            };
            *values.entry(sample.metric).or_insert(0.0) += value;
        }
        Ok(Self { values })
    }

    /// The value of `metric` (summed over its labels), `None` when the scrape has no
    /// sample of that name.
    pub fn get(&self, metric: &str) -> Option<f64> {
        self.values.get(metric).copied()
    }

    /// Whether the scrape holds any sample at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_series_and_skips_histograms() {
        let text = "\
# HELP x_total things
# TYPE x_total counter
x_total{code=\"a\"} 2
x_total{code=\"b\"} 3
# TYPE lag_seconds gauge
lag_seconds 1.5
# TYPE d_seconds histogram
d_seconds_bucket{le=\"1\"} 4
d_seconds_bucket{le=\"+Inf\"} 5
d_seconds_sum 2.5
d_seconds_count 5
";
        let s = Snapshot::parse(text).unwrap();
        assert_eq!(s.get("x_total"), Some(5.0));
        assert_eq!(s.get("lag_seconds"), Some(1.5));
        assert_eq!(s.get("d_seconds"), None);
        assert_eq!(s.get("missing_total"), None);
    }

    #[test]
    fn the_workers_own_exposition_parses() {
        let m = crate::metrics::WorkerMetrics::new().unwrap();
        m.errors.inc_by(7);
        m.outbox.outbox_lag.set(2.25);
        m.outbox
            .action_failures_by_code
            .with_label_values(&["EXECUTION_ERROR"])
            .inc();
        let s = Snapshot::parse(&m.render()).unwrap();
        assert_eq!(s.get("sitg_bot_errors_total"), Some(7.0));
        assert_eq!(s.get("sitg_bot_outbox_lag_seconds"), Some(2.25));
        assert_eq!(s.get("sitg_bot_outbox_action_failures_total"), Some(1.0));
        assert_eq!(s.get("sitg_bot_webhook_events_total"), Some(0.0));
    }

    #[test]
    fn a_page_without_samples_is_empty() {
        let s = Snapshot::parse("<html>not metrics</html>\n").unwrap();
        assert!(s.is_empty());
    }
}
