//! Request and response bodies of the backend's internal API (contract §1.2–§1.5).

use serde::{Deserialize, Serialize};

/// A repository as the backend wants it: `{ "id", "full_name" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRef {
    pub id: u64,
    pub full_name: String,
}

/// The author of a pull request: `{ "id", "login" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: u64,
    pub login: String,
}

/// `pull_request` of a forwarded event (contract §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRef {
    pub number: u64,
    pub id: u64,
    pub html_url: String,
    pub is_draft: bool,
    pub user: UserRef,
    /// 40 lowercase hex characters.
    pub head_sha: String,
}

/// Body of `POST /internal/v2/github/events/pull-request` (contract §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestEvent {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// RFC 3339 UTC time the worker received the delivery.
    pub event_time: String,
    pub installation_id: u64,
    /// `opened`, `reopened`, `synchronize` or `ready_for_review`.
    pub action: String,
    pub repository: RepositoryRef,
    pub pull_request: PullRequestRef,
}

/// `installation` of an installation-sync event (contract §1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationRef {
    pub id: u64,
    pub account_login: String,
    /// As GitHub sends it: `User`, `Organization`, `Enterprise`, …
    pub account_type: String,
}

/// Body of `POST /internal/v2/github/events/installation-sync` (contract §1.3).
///
/// The three repository arrays are always present, empty when GitHub sent none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationSyncEvent {
    pub delivery_id: String,
    pub event_time: String,
    /// `installation` or `installation_repositories`.
    pub event_name: String,
    pub action: String,
    pub installation: InstallationRef,
    pub repositories_added: Vec<RepositoryRef>,
    pub repositories_removed: Vec<RepositoryRef>,
    pub repositories: Vec<RepositoryRef>,
}

/// Outcome of an ingest as the backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IngestStatus {
    Accepted,
    Duplicate,
    Ignored,
}

impl IngestStatus {
    /// The wire form: `ACCEPTED`, `DUPLICATE` or `IGNORED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Duplicate => "DUPLICATE",
            Self::Ignored => "IGNORED",
        }
    }
}

/// Response of the pull-request ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestIngestResponse {
    pub ingest_status: IngestStatus,
    #[serde(default)]
    pub challenge_id: Option<String>,
    #[serde(default)]
    pub enqueued_actions: u64,
}

/// Response of the installation-sync ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationSyncResponse {
    pub ingest_status: IngestStatus,
    #[serde(default)]
    pub updated_installation_id: Option<u64>,
    #[serde(default)]
    pub updated_repositories: u64,
}

/// Body of `POST /internal/v2/bot-actions/claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub worker_id: String,
    pub limit: u32,
}

/// One claimed action, kept loose (`serde_json::Value` where the backend may send
/// anything) so a malformed action can still be reported `FAILED` by id instead of
/// failing the whole claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaimedAction {
    pub id: String,
    #[serde(default)]
    pub action_type: serde_json::Value,
    #[serde(default)]
    pub installation_id: serde_json::Value,
    #[serde(default)]
    pub github_repo_id: serde_json::Value,
    #[serde(default)]
    pub repo_full_name: serde_json::Value,
    #[serde(default)]
    pub github_pr_number: serde_json::Value,
    #[serde(default)]
    pub challenge_id: Option<serde_json::Value>,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub attempts: u32,
    /// RFC 3339; absent or unparsable leaves the action's age unknown.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// Response of a claim. Each element stays raw JSON until
/// [`ClaimedAction::from_claimed_json`] reads it, so one odd row cannot hide the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub actions: Vec<serde_json::Value>,
}

impl ClaimedAction {
    /// Reads one element of a claim. An element whose other fields do not fit keeps its
    /// id (a string, or a number as text) so it can still be reported `FAILED`; `None`
    /// only when it has no usable id at all.
    pub fn from_claimed_json(value: serde_json::Value) -> Option<Self> {
        let id = match value.get("id") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return None,
        };
        Some(serde_json::from_value::<Self>(value).unwrap_or(Self {
            id,
            ..Self::default()
        }))
    }
}

/// What happened to an action (contract §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Applied on GitHub; the backend marks it `DONE`.
    Succeeded,
    /// Transient failure; the backend puts it back to `PENDING` at once.
    RetryableFailure,
    /// Invalid action or permanent refusal; terminal.
    Failed,
}

impl Outcome {
    /// The wire form, also used inside the signed result message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::RetryableFailure => "RETRYABLE_FAILURE",
            Self::Failed => "FAILED",
        }
    }
}

/// Body of `POST /internal/v2/bot-actions/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRequest {
    pub worker_id: String,
    pub outcome: Outcome,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

/// Response of a result report: the action's new status (`DONE`, `PENDING`, `FAILED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultResponse {
    pub id: String,
    pub status: String,
}

/// The backend's error body: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Code (`FORBIDDEN`, `VALIDATION_ERROR`, `CONFLICT`, `INTERNAL_ERROR`, …) and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_request_serialises_like_the_contract() {
        let body = ResultRequest {
            worker_id: "w".into(),
            outcome: Outcome::RetryableFailure,
            failure_code: None,
            failure_message: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"worker_id":"w","outcome":"RETRYABLE_FAILURE","failure_code":null,"failure_message":null}"#
        );
    }

    #[test]
    fn a_claimed_action_with_odd_fields_still_parses_by_id() {
        let claim: ClaimResponse = serde_json::from_str(
            r#"{"actions":[
                {"id":"a1","action_type":7,"installation_id":"x","payload":null,"attempts":2},
                {"id":"a2","attempts":null,"created_at":5},
                {"id":17},
                {"action_type":"UPSERT_PR_COMMENT"}
            ]}"#,
        )
        .unwrap();
        let read: Vec<_> = claim
            .actions
            .into_iter()
            .map(ClaimedAction::from_claimed_json)
            .collect();
        assert_eq!(read[0].as_ref().unwrap().id, "a1");
        assert_eq!(read[0].as_ref().unwrap().attempts, 2);
        // Fields that do not fit fall back to defaults, keeping the id for the report.
        assert_eq!(read[1].as_ref().unwrap().id, "a2");
        assert_eq!(
            read[1].as_ref().unwrap().action_type,
            serde_json::Value::Null
        );
        assert_eq!(read[2].as_ref().unwrap().id, "17");
        assert!(read[3].is_none());
    }
}
