//! `POST /webhooks/github`: verify, normalise, forward, answer within GitHub's 10 s.
//!
//! Status codes: 401 bad signature; 400 malformed or unstorable payload (nothing
//! forwarded); 413 body over 25 MB; 200 `ignored` for events not forwarded; 200 with the
//! backend's `ingest_status` when forwarded; 502/503/504 when the backend or GitHub
//! failed, so GitHub records the delivery as failed and it can be redelivered.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::AppState;
use crate::backend::types::{InstallationSyncEvent, PullRequestEvent, RepositoryRef};
use crate::backend::{BackendError, CallPolicy};
use crate::github::{GitHubError, RepoFullName};
use crate::webhook::{
    Delivery, MatchedSecret, Normalized, SignatureError, normalize, validate_delivery_id,
};

/// GitHub caps payloads at 25 MB (contract §3).
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Everything, GitHub look-ups and backend retries included, ends within this; GitHub
/// gives up after 10 s.
const DELIVERY_BUDGET: Duration = Duration::from_millis(9_500);

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn error_answer(status: StatusCode, error: &str, message: impl std::fmt::Display) -> Response {
    answer(
        status,
        json!({"status": "error", "error": error, "message": message.to_string()}),
    )
}

/// The webhook handler.
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = match tokio::time::timeout(DELIVERY_BUDGET, handle(&state, &headers, body)).await
    {
        Ok(response) => response,
        Err(_) => {
            state.metrics.errors.inc();
            tracing::error!(
                event = "webhook_timeout",
                budget_ms = DELIVERY_BUDGET.as_millis() as u64
            );
            error_answer(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the delivery could not be processed in time",
            )
        }
    };
    state
        .metrics
        .webhook_duration
        .observe(started.elapsed().as_secs_f64());
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let m = &state.metrics;
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        m.webhook_rejected.with_label_values(&["too_large"]).inc();
        return error_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body exceeds 25 MB",
        );
    }
    // Limited read: a chunked body over the cap is cut off, never buffered whole.
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                m.webhook_rejected.with_label_values(&["too_large"]).inc();
                return error_answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "body exceeds 25 MB",
                );
            }
            m.webhook_rejected.with_label_values(&["unreadable"]).inc();
            return error_answer(StatusCode::BAD_REQUEST, "unreadable_body", err);
        }
    };

    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    match state.verifier.verify(signature, &body) {
        Ok(MatchedSecret::Current) => {}
        Ok(MatchedSecret::Previous) => m.previous_secret_used.inc(),
        Err(err) => {
            let reason = match err {
                SignatureError::Missing => "missing",
                SignatureError::Malformed => "malformed",
                SignatureError::Mismatch => "mismatch",
            };
            m.signature_failures.with_label_values(&[reason]).inc();
            tracing::warn!(
                event = "webhook_signature_refused",
                reason,
                delivery_id = header_str(headers, "x-github-delivery"),
            );
            return error_answer(StatusCode::UNAUTHORIZED, "invalid_signature", err);
        }
    }
    m.webhook_events.inc();

    let Some(event) = header_str(headers, "x-github-event")
        .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_graphic()))
    else {
        m.webhook_rejected
            .with_label_values(&["missing_event"])
            .inc();
        return error_answer(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            "X-GitHub-Event: header is missing or not printable ASCII",
        );
    };
    let delivery_id = match validate_delivery_id(header_str(headers, "x-github-delivery")) {
        Ok(id) => id,
        Err(err) => {
            m.webhook_rejected
                .with_label_values(&["invalid_delivery_id"])
                .inc();
            return error_answer(StatusCode::BAD_REQUEST, "invalid_payload", err);
        }
    };
    let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let normalized = normalize(Delivery {
        event,
        delivery_id,
        received_at: &received_at,
        body: &body,
    });
    match normalized {
        Err(err) => {
            m.webhook_rejected
                .with_label_values(&["invalid_payload"])
                .inc();
            tracing::warn!(event = "webhook_payload_refused", delivery_id, github_event = event, field = %err.field, problem = %err.problem);
            error_answer(StatusCode::BAD_REQUEST, "invalid_payload", err)
        }
        Ok(Normalized::Ignored { reason }) => ignored(state, delivery_id, event, &reason),
        Ok(Normalized::PullRequest(pr)) => forward_pull_request(state, pr).await,
        Ok(Normalized::PullRequestWithoutInstallation(pr)) => {
            match resolve_installation(state, pr).await {
                Ok(Some(pr)) => forward_pull_request(state, pr).await,
                Ok(None) => ignored(
                    state,
                    delivery_id,
                    event,
                    "the App is not installed on the repository",
                ),
                Err(response) => response,
            }
        }
        Ok(Normalized::InstallationSync { event, backfill }) => {
            let event = if backfill {
                match backfill_repositories(state, event).await {
                    Ok(event) => event,
                    Err(response) => return response,
                }
            } else {
                event
            };
            forward_installation_sync(state, event).await
        }
    }
}

fn ignored(state: &AppState, delivery_id: &str, event: &str, reason: &str) -> Response {
    state.metrics.webhook_ignored.inc();
    tracing::info!(
        event = "webhook_ignored",
        delivery_id,
        github_event = event,
        reason
    );
    answer(
        StatusCode::OK,
        json!({"status": "ignored", "reason": reason}),
    )
}

fn github_failure(state: &AppState, what: &str, err: &GitHubError) -> Response {
    state.metrics.errors.inc();
    tracing::error!(event = "webhook_github_failed", step = what, error = %err);
    error_answer(
        StatusCode::BAD_GATEWAY,
        "github_unavailable",
        format!("{what}: {err}"),
    )
}

/// Payloads without `installation` come from a repository webhook aimed at the App's
/// URL; the App's own installation on that repository is what the backend needs.
async fn resolve_installation(
    state: &AppState,
    mut pr: PullRequestEvent,
) -> Result<Option<PullRequestEvent>, Response> {
    let repo = RepoFullName::parse(&pr.repository.full_name).map_err(|e| {
        state
            .metrics
            .webhook_rejected
            .with_label_values(&["invalid_payload"])
            .inc();
        error_answer(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            format!("repository.full_name: {e}"),
        )
    })?;
    match state.github.repository_installation(&repo).await {
        Ok(Some(id)) => {
            pr.installation_id = id;
            Ok(Some(pr))
        }
        Ok(None) => Ok(None),
        Err(err) => Err(github_failure(state, "installation lookup", &err)),
    }
}

/// Contract §1.3: an installation created or unsuspended without a repository list gets
/// its repositories from GitHub, all pages.
async fn backfill_repositories(
    state: &AppState,
    mut event: InstallationSyncEvent,
) -> Result<InstallationSyncEvent, Response> {
    match state
        .github
        .list_installation_repositories(event.installation.id)
        .await
    {
        Ok(repos) => {
            event.repositories = repos
                .into_iter()
                .map(|r| RepositoryRef {
                    id: r.id,
                    full_name: r.full_name,
                })
                .collect();
            Ok(event)
        }
        Err(err) => Err(github_failure(state, "repository backfill", &err)),
    }
}

fn backend_failure(state: &AppState, delivery_id: &str, err: &BackendError) -> Response {
    state.metrics.errors.inc();
    tracing::error!(event = "webhook_forward_failed", delivery_id, error = %err);
    let status = match err {
        BackendError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        BackendError::Transport { .. } => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Status { .. } | BackendError::Decode { .. } => StatusCode::BAD_GATEWAY,
    };
    error_answer(status, "backend_unavailable", err)
}

fn count_ingest(state: &AppState, status: crate::backend::types::IngestStatus) {
    use crate::backend::types::IngestStatus;
    match status {
        IngestStatus::Accepted => state.metrics.ingest_accepted.inc(),
        IngestStatus::Duplicate => state.metrics.ingest_duplicate.inc(),
        IngestStatus::Ignored => state.metrics.ingest_ignored.inc(),
    }
}

async fn forward_pull_request(state: &AppState, pr: PullRequestEvent) -> Response {
    match state
        .backend
        .forward_pull_request(&pr, CallPolicy::WEBHOOK)
        .await
    {
        Ok(resp) => {
            state.metrics.pull_request_forwarded.inc();
            count_ingest(state, resp.ingest_status);
            tracing::info!(
                event = "webhook_forwarded",
                delivery_id = %pr.delivery_id,
                github_event = "pull_request",
                action = %pr.action,
                installation_id = pr.installation_id,
                repo = %pr.repository.full_name,
                pr = pr.pull_request.number,
                ingest_status = resp.ingest_status.as_str(),
                enqueued_actions = resp.enqueued_actions,
            );
            answer(
                StatusCode::OK,
                json!({
                    "status": "forwarded",
                    "ingest_status": resp.ingest_status,
                    "challenge_id": resp.challenge_id,
                    "enqueued_actions": resp.enqueued_actions,
                }),
            )
        }
        Err(err) => backend_failure(state, &pr.delivery_id, &err),
    }
}

async fn forward_installation_sync(state: &AppState, event: InstallationSyncEvent) -> Response {
    match state
        .backend
        .forward_installation_sync(&event, CallPolicy::WEBHOOK)
        .await
    {
        Ok(resp) => {
            state.metrics.installation_sync_forwarded.inc();
            count_ingest(state, resp.ingest_status);
            tracing::info!(
                event = "webhook_forwarded",
                delivery_id = %event.delivery_id,
                github_event = %event.event_name,
                action = %event.action,
                installation_id = event.installation.id,
                repositories = event.repositories.len(),
                repositories_added = event.repositories_added.len(),
                repositories_removed = event.repositories_removed.len(),
                ingest_status = resp.ingest_status.as_str(),
            );
            answer(
                StatusCode::OK,
                json!({
                    "status": "forwarded",
                    "ingest_status": resp.ingest_status,
                    "updated_installation_id": resp.updated_installation_id,
                    "updated_repositories": resp.updated_repositories,
                }),
            )
        }
        Err(err) => backend_failure(state, &event.delivery_id, &err),
    }
}
