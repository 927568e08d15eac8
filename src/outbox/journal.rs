//! The claim journal: which actions this worker holds, on disk, so a worker killed
//! without reporting (SIGKILL, the OOM killer) releases them when it starts again.
//!
//! The backend has no lease on claimed actions (contract §1.4, §1.6): only a result
//! posted with the same `worker_id` releases one. Before an action is executed its id
//! is written as an empty file `{state dir}/claims/{worker id}/{hex of the id}`, made
//! durable (the file and its directory are fsync'ed); the file is removed once the
//! backend accepted the action's result. At start the worker reports every action
//! still listed as `RETRYABLE_FAILURE` / `WORKER_RESTARTED`
//! ([`crate::contract::FailureCode::WorkerRestarted`]) before it claims.
//!
//! A journal that cannot be written stops the claiming (the runner checks
//! [`ClaimJournal::problem`] before every claim and probes the directory until it
//! is writable again): running without one would bring the stuck actions back.

use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge, Registry};

/// Name of the file written and removed to test that the directory is writable.
const PROBE: &str = ".probe";

/// A journal operation that failed; the text names the path and the OS error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim journal {path}: {message}")]
pub struct JournalError {
    path: String,
    message: String,
}

impl JournalError {
    fn at(path: &Path, err: &std::io::Error) -> Self {
        Self {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

/// The journal of one `WORKER_ID` under a state directory. Shared by the outbox loop
/// (writes) and `/readyz` (reads [`ClaimJournal::problem`]).
pub struct ClaimJournal {
    dir: PathBuf,
    problem: Mutex<Option<JournalError>>,
    writable: IntGauge,
    released_at_start: IntCounter,
}

impl std::fmt::Debug for ClaimJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimJournal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClaimJournal {
    /// The journal of `worker_id` under `state_dir` (`WORKER_STATE_DIR`, else
    /// systemd's `STATE_DIRECTORY`), creating its directory. Registers
    /// `sitg_bot_outbox_claim_journal_writable` (1 when the last write or probe worked)
    /// and `sitg_bot_outbox_claim_journal_released_total` (actions released at start).
    ///
    /// An unwritable directory is not an error here: it is recorded as the journal's
    /// [`problem`](Self::problem), and claiming waits until it is writable.
    ///
    /// # Errors
    /// The metrics are already registered in `registry`.
    pub fn open(
        state_dir: &Path,
        worker_id: &str,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        let writable = IntGauge::new(
            "sitg_bot_outbox_claim_journal_writable",
            "1 while the claim journal can be written; 0 stops claiming",
        )?;
        let released_at_start = IntCounter::new(
            "sitg_bot_outbox_claim_journal_released_total",
            "Actions found in the claim journal at start and reported RETRYABLE_FAILURE (WORKER_RESTARTED)",
        )?;
        registry.register(Box::new(writable.clone()))?;
        registry.register(Box::new(released_at_start.clone()))?;
        let journal = Self {
            // A worker id is 1..128 characters of A-Z a-z 0-9 . _ - (config.rs), so it
            // is one path segment; "." and ".." are hex-encoded to stay one.
            dir: state_dir.join("claims").join(segment(worker_id)),
            problem: Mutex::new(None),
            writable,
            released_at_start,
        };
        let created = std::fs::create_dir_all(&journal.dir)
            .map_err(|e| JournalError::at(&journal.dir, &e))
            .and_then(|()| journal.probe_now());
        journal.set(created.err());
        Ok(journal)
    }

    /// The directory holding this worker's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the journal cannot be written now, if so.
    pub fn problem(&self) -> Option<JournalError> {
        self.problem.lock().clone()
    }

    /// Records `action_ids` durably: every file created first, then each fsync'ed, then
    /// the directory.
    ///
    /// Creating all entries before the first fsync keeps the window in which a killed
    /// process leaves a claimed action unrecorded to the microseconds the creations
    /// take: a process killed mid-way loses nothing the kernel already holds, and only
    /// a crash of the machine itself needs the fsyncs, which complete before any of
    /// these actions is executed.
    ///
    /// # Errors
    /// A file or the directory could not be written; the journal is marked unwritable.
    pub fn record<S: AsRef<str>>(&self, action_ids: &[S]) -> Result<(), JournalError> {
        let result = (|| {
            let mut files = Vec::with_capacity(action_ids.len());
            for id in action_ids {
                let path = self.dir.join(encode(id.as_ref()));
                let file = File::create(&path).map_err(|e| JournalError::at(&path, &e))?;
                files.push((path, file));
            }
            for (path, file) in &files {
                file.sync_all().map_err(|e| JournalError::at(path, &e))?;
            }
            self.sync_dir()
        })();
        self.set(result.clone().err());
        result
    }

    /// Forgets an action whose result the backend accepted (or that is no longer this
    /// worker's). A file already gone is fine.
    ///
    /// # Errors
    /// The file exists but could not be removed (the action will be released once
    /// more at the next start, which the backend answers 409: harmless).
    pub fn remove(&self, action_id: &str) -> Result<(), JournalError> {
        let path = self.dir.join(encode(action_id));
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(JournalError::at(&path, &e)),
        }
    }

    /// The action ids recorded and not removed, in no particular order.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn entries(&self) -> Result<Vec<String>, JournalError> {
        let read = std::fs::read_dir(&self.dir).map_err(|e| JournalError::at(&self.dir, &e))?;
        Ok(read
            .flatten()
            .filter_map(|entry| decode(&entry.file_name().to_string_lossy()))
            .collect())
    }

    /// Tries a write when the journal is marked unwritable; true when it is writable.
    pub fn recheck(&self) -> bool {
        if self.problem.lock().is_none() {
            return true;
        }
        let result = std::fs::create_dir_all(&self.dir)
            .map_err(|e| JournalError::at(&self.dir, &e))
            .and_then(|()| self.probe_now());
        let ok = result.is_ok();
        self.set(result.err());
        ok
    }

    /// Counts actions released at start.
    pub fn count_released(&self) {
        self.released_at_start.inc();
    }

    fn probe_now(&self) -> Result<(), JournalError> {
        let path = self.dir.join(PROBE);
        let file = File::create(&path).map_err(|e| JournalError::at(&path, &e))?;
        file.sync_all().map_err(|e| JournalError::at(&path, &e))?;
        std::fs::remove_file(&path).map_err(|e| JournalError::at(&path, &e))
    }

    fn sync_dir(&self) -> Result<(), JournalError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| JournalError::at(&self.dir, &e))
    }

    fn set(&self, problem: Option<JournalError>) {
        self.writable.set(i64::from(problem.is_none()));
        *self.problem.lock() = problem;
    }
}

/// Action ids come from the backend: hex-encoded, any id is one safe file name.
fn encode(action_id: &str) -> String {
    hex::encode(action_id.as_bytes())
}

fn decode(name: &str) -> Option<String> {
    hex::decode(name)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

fn segment(worker_id: &str) -> String {
    if matches!(worker_id, "" | "." | "..") {
        encode(worker_id)
    } else {
        worker_id.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ClaimJournal::open(dir.path(), "w-1", &Registry::new()).unwrap();
        assert_eq!(journal.problem(), None);
        let ids = ["0b989ba4-242f-11e5-81e1-c7b6966d2516", "../../etc/passwd"];
        journal.record(&ids).unwrap();
        drop(journal);

        let again = ClaimJournal::open(dir.path(), "w-1", &Registry::new()).unwrap();
        let mut found = again.entries().unwrap();
        found.sort();
        assert_eq!(
            found,
            vec!["../../etc/passwd", "0b989ba4-242f-11e5-81e1-c7b6966d2516"]
        );
        again.remove(ids[1]).unwrap();
        again.remove(ids[1]).unwrap();
        assert_eq!(again.entries().unwrap(), vec![ids[0]]);
        // Another worker id has its own journal.
        let other = ClaimJournal::open(dir.path(), "w-2", &Registry::new()).unwrap();
        assert!(other.entries().unwrap().is_empty());
    }

    #[test]
    fn an_unwritable_directory_is_reported_and_rechecked() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: nothing can be created below it.
        let blocked = dir.path().join("state");
        std::fs::write(&blocked, b"").unwrap();
        let registry = Registry::new();
        let journal = ClaimJournal::open(&blocked, "w-1", &registry).unwrap();
        let problem = journal.problem().expect("unwritable");
        assert!(problem.to_string().contains("claims"), "{problem}");
        assert!(journal.record(&["a"]).is_err());
        assert!(!journal.recheck());
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("sitg_bot_outbox_claim_journal_writable 0"),
            "{text}"
        );

        std::fs::remove_file(&blocked).unwrap();
        assert!(journal.recheck());
        assert_eq!(journal.problem(), None);
        journal.record(&["a"]).unwrap();
    }
}
