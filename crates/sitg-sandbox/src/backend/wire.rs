//! JSON bodies of the backend's `/internal/v2` endpoints (contract §1.2–§1.5), as the
//! backend parses and answers them. A body that does not deserialise into these types
//! is rejected with 422 before authentication (contract §1.6).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /internal/v2/github/events/pull-request` request body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct PullRequestIngest {
    /// `X-GitHub-Delivery` of the webhook.
    pub delivery_id: String,
    /// When the worker received the webhook (RFC 3339).
    pub event_time: DateTime<Utc>,
    /// GitHub installation id.
    pub installation_id: i64,
    /// Webhook action (`opened`, `reopened`, `synchronize`, `ready_for_review`).
    pub action: String,
    /// The repository.
    pub repository: RepositoryRef,
    /// The pull request.
    pub pull_request: PullRequestRef,
}

/// A repository as the backend identifies it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct RepositoryRef {
    /// GitHub repository id.
    pub id: i64,
    /// `owner/name`.
    pub full_name: String,
}

/// The pull request fields the backend stores.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct PullRequestRef {
    /// Pull request number within the repository.
    pub number: i64,
    /// GitHub's global pull request id.
    pub id: i64,
    /// Browser URL of the pull request.
    pub html_url: String,
    /// GitHub's `draft`.
    pub is_draft: bool,
    /// The author.
    pub user: UserRef,
    /// `head.sha`; the backend's column holds 40 characters.
    pub head_sha: String,
}

/// A GitHub user.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct UserRef {
    /// GitHub user id.
    pub id: i64,
    /// Login.
    pub login: String,
}

/// `POST /internal/v2/github/events/installation-sync` request body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct InstallationSyncIngest {
    /// `X-GitHub-Delivery` of the webhook.
    pub delivery_id: String,
    /// When the worker received the webhook (RFC 3339).
    pub event_time: DateTime<Utc>,
    /// `installation` or `installation_repositories`.
    pub event_name: String,
    /// `created`, `deleted`, `suspend`, `unsuspend`, `added` or `removed`.
    pub action: String,
    /// The installation.
    pub installation: InstallationRef,
    /// Always present, possibly empty.
    pub repositories_added: Vec<RepositoryRef>,
    /// Always present, possibly empty.
    pub repositories_removed: Vec<RepositoryRef>,
    /// Always present, possibly empty; the backfill of contract §1.3 lands here.
    pub repositories: Vec<RepositoryRef>,
}

/// An installation as the backend stores it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct InstallationRef {
    /// GitHub installation id.
    pub id: i64,
    /// Login of the account the App is installed on.
    pub account_login: String,
    /// Free text: `User`, `Organization`, `Enterprise`, whatever GitHub sends.
    pub account_type: String,
}

/// `POST /internal/v2/bot-actions/claim` request body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claiming worker; must be unique per replica.
    pub worker_id: String,
    /// Wanted number of actions, clamped to 1..=100.
    pub limit: i64,
}

/// `POST /internal/v2/bot-actions/{action_id}/result` request body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ResultRequest {
    /// The worker that claimed the action.
    pub worker_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// Machine-readable failure code, e.g. `INVALID_ACTION_PAYLOAD`.
    #[serde(default)]
    pub failure_code: Option<String>,
    /// Human-readable failure detail.
    #[serde(default)]
    pub failure_message: Option<String>,
}

/// Outcome a worker reports for an action (contract §1.5).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Applied on GitHub → `DONE`.
    Succeeded,
    /// Transient failure → back to `PENDING` at once.
    RetryableFailure,
    /// Permanent failure → `FAILED`.
    Failed,
}

impl Outcome {
    /// The upper-case wire value, as it appears in the signed result message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::RetryableFailure => "RETRYABLE_FAILURE",
            Self::Failed => "FAILED",
        }
    }
}

/// `ingest_status` of an ingest response.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IngestStatus {
    /// Processed.
    Accepted,
    /// `(delivery_id, event name)` seen before.
    Duplicate,
    /// Valid but nothing to do (draft PR, unhandled action).
    Ignored,
}

/// Response of the pull-request ingest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct PullRequestIngestResponse {
    /// What the backend did.
    pub ingest_status: IngestStatus,
    /// The gate challenge, on `ACCEPTED`.
    pub challenge_id: Option<Uuid>,
    /// Actions put in the outbox by this event.
    pub enqueued_actions: u32,
}

/// Response of the installation-sync ingest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct InstallationSyncResponse {
    /// What the backend did.
    pub ingest_status: IngestStatus,
    /// The installation updated; null on `DUPLICATE` / `IGNORED`.
    pub updated_installation_id: Option<i64>,
    /// Repository rows written or removed.
    pub updated_repositories: u32,
}

/// Status of an outbox action.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionStatus {
    /// Waiting to be claimed.
    Pending,
    /// Held by one worker until it reports.
    Claimed,
    /// Reported `SUCCEEDED`.
    Done,
    /// Reported `FAILED` (terminal).
    Failed,
}

/// One action of a claim response.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ClaimedAction {
    /// Action id.
    pub id: Uuid,
    /// `UPSERT_PR_COMMENT`, `CLOSE_PR_WITH_COMMENT`, or anything enqueued by a test.
    pub action_type: String,
    /// Installation to act through.
    pub installation_id: i64,
    /// GitHub repository id.
    pub github_repo_id: i64,
    /// `owner/name` (unchecked: tests enqueue invalid names on purpose).
    pub repo_full_name: String,
    /// Pull request number.
    pub github_pr_number: i64,
    /// Gate challenge, if any.
    pub challenge_id: Option<Uuid>,
    /// `{comment_markdown, comment_marker, reason?}` or anything enqueued by a test.
    pub payload: serde_json::Value,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// RFC 3339.
    pub created_at: DateTime<Utc>,
}

/// Response of the claim endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ClaimResponse {
    /// The claimed actions, in no guaranteed order.
    pub actions: Vec<ClaimedAction>,
}

/// Response of the result endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ResultResponse {
    /// Action id.
    pub id: Uuid,
    /// Status after the report.
    pub status: ActionStatus,
}
