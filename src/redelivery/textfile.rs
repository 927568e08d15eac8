//! Metrics of a one-shot sweep: counters carried between runs in a small JSON file,
//! and the registry written atomically for node_exporter's textfile collector.

use std::io::Write;
use std::path::{Path, PathBuf};

use prometheus::{Encoder, Registry, TextEncoder};
use serde::{Deserialize, Serialize};

use super::metrics::{FailureReason, RedeliveryMetrics};

/// Name of the counters file in the state directory.
pub const COUNTERS_FILE: &str = "redelivery-counters.json";

/// A metrics or counters file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a counters file: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding: {0}")]
    Encode(#[from] prometheus::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TextfileError + '_ {
    move |source| TextfileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The sweep's counters, as kept between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub sweeps: u64,
    pub requested: u64,
    pub list_error: u64,
    pub redelivery_refused: u64,
    pub redelivery_error: u64,
}

impl Counters {
    /// The counters of `dir`; zero when the file does not exist yet.
    ///
    /// # Errors
    /// Unreadable or unparsable file.
    pub fn load(dir: &Path) -> Result<Self, TextfileError> {
        let path = dir.join(COUNTERS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| TextfileError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Current values of `metrics`.
    pub fn of(metrics: &RedeliveryMetrics) -> Self {
        let failed = |r: FailureReason| metrics.failures.with_label_values(&[r.as_str()]).get();
        Self {
            sweeps: metrics.sweeps.get(),
            requested: metrics.requested.get(),
            list_error: failed(FailureReason::List),
            redelivery_refused: failed(FailureReason::Refused),
            redelivery_error: failed(FailureReason::Request),
        }
    }

    /// Adds the kept values to fresh `metrics`.
    pub fn restore(&self, metrics: &RedeliveryMetrics) {
        metrics.sweeps.inc_by(self.sweeps);
        metrics.requested.inc_by(self.requested);
        metrics.failed(FailureReason::List, self.list_error);
        metrics.failed(FailureReason::Refused, self.redelivery_refused);
        metrics.failed(FailureReason::Request, self.redelivery_error);
    }

    /// Writes the counters to `dir` (temporary file, then rename).
    ///
    /// # Errors
    /// Unwritable directory.
    pub fn save(&self, dir: &Path) -> Result<(), TextfileError> {
        let bytes = serde_json::to_vec(self).map_err(|source| TextfileError::Corrupt {
            path: dir.join(COUNTERS_FILE),
            source,
        })?;
        replace(&dir.join(COUNTERS_FILE), &bytes)
    }
}

/// Writes `registry` in Prometheus text format to `path`, replacing it atomically (the
/// collector never reads half a file).
///
/// # Errors
/// Unwritable path.
pub fn write_metrics(path: &Path, registry: &Registry) -> Result<(), TextfileError> {
    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    replace(path, &text)
}

fn replace(path: &Path, bytes: &[u8]) -> Result<(), TextfileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_run() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Counters::load(dir.path()).unwrap(), Counters::default());
        let first = RedeliveryMetrics::register(&Registry::new()).unwrap();
        first.requested.inc_by(3);
        first.failed(FailureReason::Request, 2);
        Counters::of(&first).save(dir.path()).unwrap();

        let registry = Registry::new();
        let second = RedeliveryMetrics::register(&registry).unwrap();
        Counters::load(dir.path()).unwrap().restore(&second);
        second.requested.inc();
        assert_eq!(second.requested.get(), 4);
        let file = dir.path().join("m.prom");
        write_metrics(&file, &registry).unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.contains("sitg_bot_redeliveries_requested_total 4"),
            "{text}"
        );
        assert!(
            text.contains("sitg_bot_redelivery_failures_total{reason=\"redelivery_error\"} 2"),
            "{text}"
        );
    }
}
