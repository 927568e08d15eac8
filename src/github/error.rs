//! Errors of the GitHub client and how the outbox reports them (contract §1.5, §2).

use std::time::Instant;

use super::jwt::KeyError;
use crate::contract::FailureCode;

/// A GitHub call that did not succeed.
///
/// [`GitHubError::is_retryable`] decides between the outbox outcomes
/// `RETRYABLE_FAILURE` and `FAILED`; [`GitHubError::failure_code`] is the
/// `failure_code` reported to the backend. No variant carries a token, JWT or key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitHubError {
    /// The installation does not exist (token mint answered 404, and the repository's
    /// installation could not be resolved either). Permanent.
    #[error("GitHub App installation {installation_id} not found")]
    InstallationNotFound { installation_id: u64 },
    /// A primary or secondary rate limit refused the call, or an earlier one still
    /// pauses the installation. Retryable once `retry_at` has passed.
    #[error(
        "GitHub {} rate limit for installation {installation_id}; retry in {} s",
        if *.secondary { "secondary" } else { "primary" },
        .retry_at.saturating_duration_since(Instant::now()).as_secs()
    )]
    RateLimited {
        installation_id: u64,
        retry_at: Instant,
        secondary: bool,
    },
    /// 403 that is not a rate limit, e.g. "Resource not accessible by integration"
    /// (the App lacks a permission). Permanent.
    #[error("GitHub refused permission: {message}")]
    PermissionDenied { message: String },
    /// 422: GitHub rejected the request's content. Permanent.
    #[error("GitHub validation failed: {message}")]
    ValidationFailed { message: String },
    /// 404 on a repository resource with a valid installation token. Permanent.
    #[error("GitHub resource not found: {resource}")]
    NotFound { resource: String },
    /// A list's `Link: rel="next"` chain loops back to a page already read, or runs past
    /// the pages the list can fill (an issue's comment count / 100). Permanent: the
    /// next attempt would read the same chain.
    #[error("GitHub pagination of {what} does not end: {reason}")]
    PaginationLoop { what: &'static str, reason: String },
    /// 410 Gone: the resource was removed for good (GitHub answers it for the comments
    /// of a deleted issue, or when issues are disabled on the repository). Permanent.
    #[error("GitHub resource gone: {resource}")]
    Gone { resource: String },
    /// 401 even after evicting the installation access token and retrying once.
    #[error("GitHub answered 401 Unauthorized")]
    Unauthorized,
    /// 5xx, or a 4xx without a meaning of its own. Retryable.
    #[error("GitHub answered HTTP {status}")]
    Server { status: u16 },
    /// Connection-level failure; the text keeps the URL but never headers.
    #[error("GitHub request failed: {0}")]
    Transport(String),
    /// No complete answer within the configured request timeout.
    #[error("GitHub request timed out")]
    Timeout,
    /// GitHub's answer did not have the documented shape.
    #[error("unexpected GitHub response: {0}")]
    InvalidResponse(String),
    /// The App private key is unusable. Retryable: configuration, not the action, is at fault.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The App JWT could not be signed. Retryable (configuration).
    #[error("could not sign the GitHub App JWT: {0}")]
    Jwt(String),
    /// The client could not be built from its configuration (base URL, metrics). Retryable (configuration).
    #[error("invalid GitHub client configuration: {0}")]
    Config(String),
}

impl GitHubError {
    /// True for failures worth another attempt later (`RETRYABLE_FAILURE`).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Unauthorized
            | Self::Server { .. }
            | Self::Transport(_)
            | Self::Timeout
            | Self::InvalidResponse(_)
            // A broken App key or client set-up is the fleet's fault, not the action's:
            // keep the action alive until an operator fixes the configuration.
            | Self::Key(_)
            | Self::Jwt(_)
            | Self::Config(_) => true,
            Self::InstallationNotFound { .. }
            | Self::PermissionDenied { .. }
            | Self::ValidationFailed { .. }
            | Self::NotFound { .. }
            | Self::PaginationLoop { .. }
            | Self::Gone { .. } => false,
        }
    }

    /// The `failure_code` to report to the backend for this error.
    pub fn failure_code(&self) -> FailureCode {
        match self {
            Self::InstallationNotFound { .. } => FailureCode::InstallationNotFound,
            Self::RateLimited { .. } => FailureCode::GitHubRateLimited,
            Self::PermissionDenied { .. } => FailureCode::GitHubPermissionDenied,
            Self::ValidationFailed { .. } => FailureCode::GitHubValidationFailed,
            Self::NotFound { .. } => FailureCode::GitHubNotFound,
            Self::PaginationLoop { .. } => FailureCode::GitHubPaginationLoop,
            Self::Gone { .. } => FailureCode::GitHubGone,
            Self::Key(_) | Self::Jwt(_) | Self::Config(_) => FailureCode::GitHubAppMisconfigured,
            Self::Unauthorized
            | Self::Server { .. }
            | Self::Transport(_)
            | Self::Timeout
            | Self::InvalidResponse(_) => FailureCode::ExecutionError,
        }
    }

    /// Turns a reqwest failure into `Timeout` or `Transport`, keeping the error chain
    /// (reqwest's text names the URL, which holds no secret, and never the headers).
    pub(crate) fn from_reqwest(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Transport(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_codes_follow_the_contract() {
        let retry_at = Instant::now();
        let table: Vec<(GitHubError, bool, &str)> = vec![
            (
                GitHubError::InstallationNotFound { installation_id: 1 },
                false,
                "INSTALLATION_NOT_FOUND",
            ),
            (
                GitHubError::RateLimited {
                    installation_id: 1,
                    retry_at,
                    secondary: true,
                },
                true,
                "GITHUB_RATE_LIMITED",
            ),
            (
                GitHubError::PermissionDenied {
                    message: "x".into(),
                },
                false,
                "GITHUB_PERMISSION_DENIED",
            ),
            (
                GitHubError::ValidationFailed {
                    message: "x".into(),
                },
                false,
                "GITHUB_VALIDATION_FAILED",
            ),
            (
                GitHubError::NotFound {
                    resource: "x".into(),
                },
                false,
                "GITHUB_NOT_FOUND",
            ),
            (
                GitHubError::PaginationLoop {
                    what: "issue comments",
                    reason: "x".into(),
                },
                false,
                "GITHUB_PAGINATION_LOOP",
            ),
            (
                GitHubError::Gone {
                    resource: "x".into(),
                },
                false,
                "GITHUB_GONE",
            ),
            (GitHubError::Unauthorized, true, "EXECUTION_ERROR"),
            (GitHubError::Server { status: 502 }, true, "EXECUTION_ERROR"),
            (GitHubError::Transport("x".into()), true, "EXECUTION_ERROR"),
            (GitHubError::Timeout, true, "EXECUTION_ERROR"),
            (
                GitHubError::InvalidResponse("x".into()),
                true,
                "EXECUTION_ERROR",
            ),
            (
                GitHubError::Key(KeyError::Empty),
                true,
                "GITHUB_APP_MISCONFIGURED",
            ),
        ];
        for (err, retryable, code) in table {
            assert_eq!(err.is_retryable(), retryable, "{err:?}");
            assert_eq!(err.failure_code().as_str(), code, "{err:?}");
        }
    }

    #[test]
    fn rate_limit_message_names_kind_and_installation() {
        let err = GitHubError::RateLimited {
            installation_id: 77,
            retry_at: Instant::now() + std::time::Duration::from_secs(90),
            secondary: false,
        };
        let text = err.to_string();
        assert!(text.contains("primary") && text.contains("77"), "{text}");
    }
}
