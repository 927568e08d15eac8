//! The `failure_code` values the worker reports to the backend (contract §1.5, §2).
//!
//! One enum for every code, so the wire string, the `code` label of
//! `sitg_bot_outbox_action_failures_total` and the series pre-initialised at 0 cannot
//! drift apart: a new variant that is missing from [`FailureCode::ALL`] fails the unit
//! test below.

use std::fmt;

/// A `failure_code` sent with `RETRYABLE_FAILURE` or `FAILED`. The wire value is
/// [`FailureCode::as_str`]; values are byte-identical to contract §1.5 and §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// `FAILED`: an action whose fields are missing or invalid.
    InvalidActionPayload,
    /// `FAILED`: an `action_type` this worker does not know.
    UnsupportedAction,
    /// `RETRYABLE_FAILURE`: the action was released because the worker is stopping.
    WorkerShutdown,
    /// `RETRYABLE_FAILURE`: found in the claim journal at start (a previous run with
    /// this `WORKER_ID` was killed holding it).
    WorkerRestarted,
    /// `RETRYABLE_FAILURE`: claimed, but the claim journal could not record it, so it
    /// was given back unexecuted.
    ClaimJournalUnwritable,
    /// `RETRYABLE_FAILURE`: released by hand with `sitg-bot release` (never counted by
    /// a worker).
    ReleasedByOperator,
    /// `RETRYABLE_FAILURE`: a GitHub failure without a code of its own (401, 5xx,
    /// transport, timeout, unexpected answer) or an internal failure of the worker.
    ExecutionError,
    /// `FAILED`: the GitHub App installation does not exist.
    InstallationNotFound,
    /// `RETRYABLE_FAILURE`: a GitHub rate limit pauses the installation.
    GitHubRateLimited,
    /// `FAILED`: GitHub answered 403 other than for a rate limit.
    GitHubPermissionDenied,
    /// `FAILED`: GitHub answered 422.
    GitHubValidationFailed,
    /// `FAILED`: GitHub answered 404 on a repository resource.
    GitHubNotFound,
    /// `RETRYABLE_FAILURE`: the App key, JWT or client configuration is unusable.
    GitHubAppMisconfigured,
    /// `FAILED`: GitHub answered 410 Gone.
    GitHubGone,
    /// `FAILED`: a list's `Link` chain never ends.
    GitHubPaginationLoop,
}

impl FailureCode {
    /// Every code, in the order of the docs' metric table.
    pub const ALL: [Self; 15] = [
        Self::InvalidActionPayload,
        Self::UnsupportedAction,
        Self::WorkerShutdown,
        Self::WorkerRestarted,
        Self::ClaimJournalUnwritable,
        Self::ReleasedByOperator,
        Self::ExecutionError,
        Self::InstallationNotFound,
        Self::GitHubRateLimited,
        Self::GitHubPermissionDenied,
        Self::GitHubValidationFailed,
        Self::GitHubNotFound,
        Self::GitHubAppMisconfigured,
        Self::GitHubGone,
        Self::GitHubPaginationLoop,
    ];

    /// The wire value, also the `code` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidActionPayload => "INVALID_ACTION_PAYLOAD",
            Self::UnsupportedAction => "UNSUPPORTED_ACTION",
            Self::WorkerShutdown => "WORKER_SHUTDOWN",
            Self::WorkerRestarted => "WORKER_RESTARTED",
            Self::ClaimJournalUnwritable => "CLAIM_JOURNAL_UNWRITABLE",
            Self::ReleasedByOperator => "RELEASED_BY_OPERATOR",
            Self::ExecutionError => "EXECUTION_ERROR",
            Self::InstallationNotFound => "INSTALLATION_NOT_FOUND",
            Self::GitHubRateLimited => "GITHUB_RATE_LIMITED",
            Self::GitHubPermissionDenied => "GITHUB_PERMISSION_DENIED",
            Self::GitHubValidationFailed => "GITHUB_VALIDATION_FAILED",
            Self::GitHubNotFound => "GITHUB_NOT_FOUND",
            Self::GitHubAppMisconfigured => "GITHUB_APP_MISCONFIGURED",
            Self::GitHubGone => "GITHUB_GONE",
            Self::GitHubPaginationLoop => "GITHUB_PAGINATION_LOOP",
        }
    }

    /// Whether a running worker reports this code, so that it counts it in
    /// `sitg_bot_outbox_action_failures_total` (and creates its series at 0).
    /// `RELEASED_BY_OPERATOR` is sent by the `release` subcommand only.
    pub fn counted_by_worker(self) -> bool {
        match self {
            Self::ReleasedByOperator => false,
            Self::InvalidActionPayload
            | Self::UnsupportedAction
            | Self::WorkerShutdown
            | Self::WorkerRestarted
            | Self::ClaimJournalUnwritable
            | Self::ExecutionError
            | Self::InstallationNotFound
            | Self::GitHubRateLimited
            | Self::GitHubPermissionDenied
            | Self::GitHubValidationFailed
            | Self::GitHubNotFound
            | Self::GitHubAppMisconfigured
            | Self::GitHubGone
            | Self::GitHubPaginationLoop => true,
        }
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Exhaustive on purpose (no wildcard): a new variant does not compile until it is
    /// given a position here, and the assertion then requires it in `ALL`.
    fn position(code: FailureCode) -> usize {
        match code {
            FailureCode::InvalidActionPayload => 0,
            FailureCode::UnsupportedAction => 1,
            FailureCode::WorkerShutdown => 2,
            FailureCode::WorkerRestarted => 3,
            FailureCode::ClaimJournalUnwritable => 4,
            FailureCode::ReleasedByOperator => 5,
            FailureCode::ExecutionError => 6,
            FailureCode::InstallationNotFound => 7,
            FailureCode::GitHubRateLimited => 8,
            FailureCode::GitHubPermissionDenied => 9,
            FailureCode::GitHubValidationFailed => 10,
            FailureCode::GitHubNotFound => 11,
            FailureCode::GitHubAppMisconfigured => 12,
            FailureCode::GitHubGone => 13,
            FailureCode::GitHubPaginationLoop => 14,
        }
    }

    #[test]
    fn all_lists_every_variant_once() {
        for (i, code) in FailureCode::ALL.into_iter().enumerate() {
            assert_eq!(position(code), i, "{code:?} out of place in ALL");
        }
        let wire: HashSet<&str> = FailureCode::ALL.map(FailureCode::as_str).into();
        assert_eq!(
            wire.len(),
            FailureCode::ALL.len(),
            "two codes share a wire value"
        );
    }

    #[test]
    fn wire_values_are_the_contract_ones() {
        let wire = FailureCode::ALL.map(FailureCode::as_str);
        assert_eq!(
            wire,
            [
                "INVALID_ACTION_PAYLOAD",
                "UNSUPPORTED_ACTION",
                "WORKER_SHUTDOWN",
                "WORKER_RESTARTED",
                "CLAIM_JOURNAL_UNWRITABLE",
                "RELEASED_BY_OPERATOR",
                "EXECUTION_ERROR",
                "INSTALLATION_NOT_FOUND",
                "GITHUB_RATE_LIMITED",
                "GITHUB_PERMISSION_DENIED",
                "GITHUB_VALIDATION_FAILED",
                "GITHUB_NOT_FOUND",
                "GITHUB_APP_MISCONFIGURED",
                "GITHUB_GONE",
                "GITHUB_PAGINATION_LOOP",
            ]
        );
        assert_eq!(FailureCode::GitHubGone.to_string(), "GITHUB_GONE");
    }
}
