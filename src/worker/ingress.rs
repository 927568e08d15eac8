//! `POST /webhooks/github`: verify, normalise, forward, answer within GitHub's 10 s.
//!
//! Bodies are JSON, or GitHub's form encoding (`payload=<percent-encoded JSON>`, see
//! [`webhook_payload`]). Status codes: 401 bad signature; 400 malformed or unstorable
//! payload (nothing forwarded); 415 a `Content-Type` that is neither; 408 body not received in full within [`BODY_READ_DEADLINE`]; 413 body over
//! 25 MB; 503 `overloaded` when the bytes of bodies received so far (over all requests)
//! would exceed `WEBHOOK_BUFFER_LIMIT_MB`;
//! 200 `ignored` for events not forwarded; 200 with the backend's `ingest_status` when
//! forwarded; 502/503/504 when the backend or GitHub failed, so GitHub records the
//! delivery as failed and it can be redelivered.
//!
//! Answers never carry internal addresses (backend URL, GitHub base URL); the logs do.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::json;

use super::state::{AppState, BodyReservation, BudgetExhausted};
use crate::backend::types::{InstallationSyncEvent, PullRequestEvent, RepositoryRef};
use crate::backend::{BackendError, CallPolicy};
use crate::contract::RepoFullName;
use crate::github::GitHubError;
use crate::metrics::RejectReason;
use crate::webhook::{Delivery, MatchedSecret, Normalized, normalize, validate_delivery_id};

/// GitHub caps payloads at 25 MB (contract §3).
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Everything, GitHub look-ups and backend retries included, ends within this; GitHub
/// gives up after 10 s.
const DELIVERY_BUDGET: Duration = Duration::from_millis(9_500);
/// The body must arrive in full within this, inside [`DELIVERY_BUDGET`]: an upload that
/// stalls is the sender's fault (408), and must leave time for the backend call.
pub const BODY_READ_DEADLINE: Duration = Duration::from_secs(5);
/// Longest part of an unvalidated `X-GitHub-Delivery` written to the logs.
const LOGGED_DELIVERY_ID_PREFIX: usize = 64;

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
                budget_ms = DELIVERY_BUDGET.as_millis() as u64,
                "webhook not handled within its time budget"
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
        return too_large(state);
    }
    // Room is taken as the body's bytes arrive, never from `Content-Length` up front: a
    // client that announces 16 MiB and sends nothing (it needs no signature for that)
    // must hold nothing, or a few of them would starve every signed delivery.
    let mut reservation = match state.body_budget.reserve(0) {
        Ok(reservation) => reservation,
        Err(err) => return overloaded(state, headers, &err),
    };
    let read = tokio::time::timeout(
        BODY_READ_DEADLINE,
        read_body(body, declared, &mut reservation),
    )
    .await;
    let body = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadError::TooLarge)) => return too_large(state),
        Ok(Err(ReadError::Overloaded(err))) => return overloaded(state, headers, &err),
        Ok(Err(ReadError::Unreadable(err))) => {
            m.reject(RejectReason::Unreadable);
            return error_answer(StatusCode::BAD_REQUEST, "unreadable_body", err);
        }
        Err(_) => {
            m.reject(RejectReason::BodyTimeout);
            tracing::warn!(
                event = "webhook_body_timeout",
                delivery_id = %loggable_delivery_id(headers),
                declared_bytes = declared,
                deadline_ms = BODY_READ_DEADLINE.as_millis() as u64,
                "webhook body not received in time"
            );
            return error_answer(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive in full within {} s",
                    BODY_READ_DEADLINE.as_secs()
                ),
            );
        }
    };
    verify_and_process(state, headers, body, reservation).await
}

fn too_large(state: &AppState) -> Response {
    state.metrics.reject(RejectReason::TooLarge);
    error_answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "body exceeds 25 MB",
    )
}

fn overloaded(state: &AppState, headers: &HeaderMap, err: &BudgetExhausted) -> Response {
    state.metrics.reject(RejectReason::Overloaded);
    tracing::warn!(
        event = "webhook_overloaded",
        delivery_id = %loggable_delivery_id(headers),
        wanted_bytes = err.wanted_bytes,
        available_bytes = err.available_bytes,
        budget_bytes = state.body_budget.capacity_bytes(),
        "webhook refused: body buffer full"
    );
    error_answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the worker holds as many webhook bodies as it may; retry later",
    )
}

enum ReadError {
    TooLarge,
    Overloaded(BudgetExhausted),
    Unreadable(axum::Error),
}

/// Memory set aside for a body before its first byte arrives, whatever its
/// `Content-Length` says (64 KiB): the buffer grows with what really arrives.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Reads the body frame by frame, growing `reservation` to cover the bytes received so
/// far and stopping at [`MAX_BODY_BYTES`], so no body is buffered beyond either bound.
/// `declared` (`Content-Length`) only sizes the first allocation, up to
/// [`INITIAL_BODY_CAPACITY`]; an unauthenticated client's claim costs nothing.
async fn read_body(
    mut body: Body,
    declared: Option<u64>,
    reservation: &mut BodyReservation,
) -> Result<Bytes, ReadError> {
    let capacity = declared.map_or(0, |len| usize::try_from(len).unwrap_or(0));
    let mut buf = BytesMut::with_capacity(capacity.min(INITIAL_BODY_CAPACITY));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the webhook uses
        };
        let total = buf.len() + data.len();
        if total > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge);
        }
        reservation
            .cover(total as u64)
            .map_err(ReadError::Overloaded)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// `X-GitHub-Delivery` as it may be written to the logs: the id when it is valid,
/// otherwise an escaped prefix of at most 64 bytes and the full length, so that a huge
/// or binary header cannot flood or garble the logs.
fn loggable_delivery_id(headers: &HeaderMap) -> Cow<'_, str> {
    if let Ok(id) = validate_delivery_id(header_str(headers, "x-github-delivery")) {
        return Cow::Borrowed(id);
    }
    let Some(raw) = headers.get("x-github-delivery").map(|v| v.as_bytes()) else {
        return Cow::Borrowed("");
    };
    let prefix = &raw[..raw.len().min(LOGGED_DELIVERY_ID_PREFIX)];
    let mut shown = prefix.escape_ascii().to_string();
    if raw.len() > prefix.len() {
        shown.push_str(&format!("... ({} bytes)", raw.len()));
    }
    Cow::Owned(shown)
}

/// Verifies, normalises and forwards. `reservation` covers `body` and is given back as
/// soon as the body is no longer needed, before any call to GitHub or the backend.
async fn verify_and_process(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    reservation: BodyReservation,
) -> Response {
    let m = &state.metrics;
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    match state.verifier.verify(signature, &body) {
        Ok(MatchedSecret::Current) => {}
        Ok(MatchedSecret::Previous) => m.previous_secret_used.inc(),
        Err(err) => {
            let reason = err.reason();
            m.signature_failures.with_label_values(&[reason]).inc();
            tracing::warn!(
                event = "webhook_signature_refused",
                reason,
                delivery_id = %loggable_delivery_id(headers),
                "webhook refused: signature check failed"
            );
            return error_answer(StatusCode::UNAUTHORIZED, "invalid_signature", err);
        }
    }
    m.webhook_events.inc();

    let Some(event) = header_str(headers, "x-github-event")
        .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_graphic()))
    else {
        m.reject(RejectReason::MissingEvent);
        return error_answer(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            "X-GitHub-Event: header is missing or not printable ASCII",
        );
    };
    let delivery_id = match validate_delivery_id(header_str(headers, "x-github-delivery")) {
        Ok(id) => id,
        Err(err) => {
            m.reject(RejectReason::InvalidDeliveryId);
            return error_answer(StatusCode::BAD_REQUEST, "invalid_payload", err);
        }
    };
    // The signature covers the body as sent; the JSON document is inside it.
    let payload = match webhook_payload(headers, body) {
        Ok(payload) => payload,
        Err(refusal) => {
            m.reject(refusal.reason);
            tracing::warn!(
                event = "webhook_payload_refused",
                delivery_id,
                github_event = event,
                field = "body",
                problem = %refusal.message,
                "webhook refused: payload unusable"
            );
            return error_answer(refusal.status, refusal.error, refusal.message);
        }
    };
    let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let normalized = normalize(Delivery {
        event,
        delivery_id,
        received_at: &received_at,
        body: &payload,
    });
    // The event holds copies of what it needs: free the body's memory and budget now,
    // not after the backend call.
    drop(payload);
    drop(reservation);
    match normalized {
        Err(err) => {
            m.reject(RejectReason::InvalidPayload);
            tracing::warn!(
                event = "webhook_payload_refused",
                delivery_id,
                github_event = event,
                field = %err.field,
                problem = %err.problem,
                "webhook refused: payload unusable"
            );
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

/// `Content-Type` of GitHub's form-encoded webhooks.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Longest part of an unsupported `Content-Type` quoted in an answer.
const QUOTED_CONTENT_TYPE_PREFIX: usize = 64;

/// A body the ingress cannot take a JSON document from.
#[derive(Debug)]
struct PayloadRefusal {
    status: StatusCode,
    error: &'static str,
    reason: RejectReason,
    message: String,
}

impl PayloadRefusal {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_payload",
            reason: RejectReason::InvalidPayload,
            message: message.into(),
        }
    }
}

/// The JSON document of a verified delivery, by its `Content-Type` (GitHub's webhook
/// setting "Content type"):
///
/// - absent, `application/json` or any `…+json`: the body is the document;
/// - `application/x-www-form-urlencoded`: the body is a form whose one `payload` field
///   holds the document, percent-encoded (the signature covers the form as sent);
/// - anything else: 415 `unsupported_media_type`, naming the type received.
///
/// Parameters (`; charset=utf-8`) and letter case are ignored.
///
/// # Errors
/// [`PayloadRefusal`]: 415 for another media type; 400 `invalid_payload` for a form
/// without exactly one `payload` field.
fn webhook_payload(headers: &HeaderMap, body: Bytes) -> Result<Bytes, PayloadRefusal> {
    let Some(raw) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok(body);
    };
    let media_type = raw
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("application/json") | Some("") => Ok(body),
        Some(json) if json.ends_with("+json") => Ok(body),
        Some(FORM_CONTENT_TYPE) => {
            let mut payloads = form_urlencoded::parse(&body)
                .filter(|(name, _)| name == "payload")
                .map(|(_, value)| value);
            match (payloads.next(), payloads.next()) {
                (Some(payload), None) => Ok(Bytes::from(payload.into_owned())),
                (None, _) => Err(PayloadRefusal::invalid(
                    "body: a form-encoded delivery must have a `payload` field",
                )),
                (Some(_), Some(_)) => Err(PayloadRefusal::invalid(
                    "body: a form-encoded delivery must have one `payload` field, not several",
                )),
            }
        }
        _ => {
            let bytes = raw.as_bytes();
            let prefix = &bytes[..bytes.len().min(QUOTED_CONTENT_TYPE_PREFIX)];
            Err(PayloadRefusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error: "unsupported_media_type",
                reason: RejectReason::UnsupportedMediaType,
                message: format!(
                    "Content-Type {:?} is not supported: send application/json or \
                     {FORM_CONTENT_TYPE}",
                    prefix.escape_ascii().to_string()
                ),
            })
        }
    }
}

fn ignored(state: &AppState, delivery_id: &str, event: &str, reason: &str) -> Response {
    state.metrics.webhook_ignored.inc();
    tracing::info!(
        event = "webhook_ignored",
        delivery_id,
        github_event = event,
        reason,
        "webhook ignored"
    );
    answer(
        StatusCode::OK,
        json!({"status": "ignored", "reason": reason}),
    )
}

fn github_failure(state: &AppState, what: &str, err: &GitHubError) -> Response {
    state.metrics.errors.inc();
    tracing::error!(
        event = "webhook_github_failed",
        step = what,
        error = %err,
        "GitHub call for a webhook failed"
    );
    // The error's text may name the GitHub base URL (an internal proxy or GHES host);
    // the answer gives its failure code only.
    error_answer(
        StatusCode::BAD_GATEWAY,
        "github_unavailable",
        format!("{what} failed at GitHub ({})", err.failure_code()),
    )
}

/// Payloads without `installation` come from a repository webhook aimed at the App's
/// URL; the App's own installation on that repository is what the backend needs.
async fn resolve_installation(
    state: &AppState,
    mut pr: PullRequestEvent,
) -> Result<Option<PullRequestEvent>, Response> {
    let repo = RepoFullName::parse(&pr.repository.full_name).map_err(|e| {
        state.metrics.reject(RejectReason::InvalidPayload);
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
/// its repositories from GitHub, all pages. An installation GitHub no longer knows is
/// answered 200 `ignored` (nothing forwarded), since no redelivery could fill it.
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
        // GitHub signed this event for our App, so a 404 on the installation means it
        // was deleted since; a redelivery could never succeed, and forwarding it would
        // bring back an installation whose `deleted` event may already be stored.
        Err(GitHubError::InstallationNotFound { .. }) => Err(ignored(
            state,
            &event.delivery_id,
            "installation",
            "the installation no longer exists on GitHub (deleted after this delivery)",
        )),
        Err(err) => Err(github_failure(state, "repository backfill", &err)),
    }
}

fn backend_failure(state: &AppState, delivery_id: &str, err: &BackendError) -> Response {
    state.metrics.errors.inc();
    tracing::error!(
        event = "webhook_forward_failed",
        delivery_id,
        error = %err,
        "webhook not forwarded to the backend"
    );
    let status = match err {
        BackendError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        BackendError::Transport { .. } => StatusCode::SERVICE_UNAVAILABLE,
        BackendError::Status { .. } | BackendError::Decode { .. } => StatusCode::BAD_GATEWAY,
    };
    error_answer(status, "backend_unavailable", backend_public_message(err))
}

/// What a backend failure tells the sender: the kind of failure without the text of the
/// underlying error, which names the backend's internal URL.
fn backend_public_message(err: &BackendError) -> String {
    match err {
        BackendError::Transport { .. } => "the backend could not be reached".to_owned(),
        BackendError::Status { status, code, .. } => {
            format!("the backend answered {status} ({code})")
        }
        BackendError::Decode { .. } => "the backend answered with an unexpected body".to_owned(),
        BackendError::DeadlineExceeded { deadline, .. } => format!(
            "the backend did not answer within {} s",
            deadline.as_secs_f64()
        ),
    }
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
                "webhook forwarded to the backend"
            );
            if resp.enqueued_actions > 0 {
                state.claim_wake.request();
            }
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
                "webhook forwarded to the backend"
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_delivery(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-delivery", HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn a_valid_delivery_id_is_logged_as_is() {
        let headers = with_delivery(b"72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(
            loggable_delivery_id(&headers),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert_eq!(loggable_delivery_id(&HeaderMap::new()), "");
    }

    #[test]
    fn an_invalid_delivery_id_is_logged_as_a_short_escaped_prefix() {
        let huge = with_delivery(&vec![b'd'; 300 * 1024]);
        let logged = loggable_delivery_id(&huge);
        assert!(logged.starts_with(&"d".repeat(64)), "{logged}");
        assert!(
            logged.ends_with(&format!("({} bytes)", 300 * 1024)),
            "{logged}"
        );
        assert!(logged.len() < 100, "{logged}");
        // Bytes that are not printable ASCII are escaped, not written raw.
        let odd = with_delivery(b"a b\xff\t");
        assert_eq!(loggable_delivery_id(&odd), "a b\\xff\\t");
    }

    fn with_content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_bodies_are_the_payload_with_or_without_a_content_type() {
        let body = Bytes::from_static(br#"{"a":1}"#);
        for headers in [
            HeaderMap::new(),
            with_content_type("application/json"),
            with_content_type("Application/JSON; charset=utf-8"),
            with_content_type("application/vnd.github+json"),
        ] {
            assert_eq!(webhook_payload(&headers, body.clone()).unwrap(), body);
        }
    }

    #[test]
    fn a_form_body_yields_its_decoded_payload_field() {
        let headers = with_content_type("application/x-www-form-urlencoded");
        let form = Bytes::from_static(b"payload=%7B%22a%22%3A%22x+y%26z%22%7D");
        assert_eq!(
            webhook_payload(&headers, form).unwrap(),
            Bytes::from_static(br#"{"a":"x y&z"}"#)
        );
        for bad in [&b"other=1"[..], b"", b"payload=1&payload=2"] {
            let err = webhook_payload(&headers, Bytes::from_static(bad)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(err.reason, RejectReason::InvalidPayload);
            assert!(err.message.contains("payload"), "{}", err.message);
        }
    }

    #[test]
    fn other_media_types_get_415_naming_them() {
        let err = webhook_payload(&with_content_type("text/plain"), Bytes::new()).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err.error, "unsupported_media_type");
        assert!(err.message.contains("\"text/plain\""), "{}", err.message);
        let long = "x".repeat(300);
        let err = webhook_payload(&with_content_type(&long), Bytes::new()).unwrap_err();
        assert!(err.message.len() < 200, "{}", err.message);
    }

    #[test]
    fn backend_failures_are_told_without_their_address() {
        let url = "http://sitg-backend.internal:8080/internal/v2/github/events/pull-request";
        let errors = [
            BackendError::Transport {
                endpoint: "/internal/v2/github/events/pull-request",
                reason: format!("error sending request for url ({url})"),
            },
            BackendError::Status {
                endpoint: "/internal/v2/github/events/pull-request",
                status: 500,
                code: "HTTP_500".to_owned(),
                message: format!("upstream {url} failed"),
            },
            BackendError::Decode {
                endpoint: "/internal/v2/github/events/pull-request",
                reason: format!("bad body from {url}"),
            },
            BackendError::DeadlineExceeded {
                endpoint: "/internal/v2/github/events/pull-request",
                deadline: Duration::from_secs(8),
            },
        ];
        for err in errors {
            let message = backend_public_message(&err);
            assert!(!message.contains("sitg-backend.internal"), "{message}");
            assert!(!message.contains("/internal/v2"), "{message}");
            assert!(message.starts_with("the backend"), "{message}");
        }
    }
}
