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
//! Every refusal and failure is an [`IngressError`], which owns its status, body,
//! metric and log line.

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

use super::ingress_error::{FORM_CONTENT_TYPE, IngressError};
use super::state::{AppState, BodyReservation, BudgetExhausted};
use crate::backend::CallPolicy;
use crate::backend::types::{InstallationSyncEvent, PullRequestEvent, RepositoryRef};
use crate::contract::RepoFullName;
use crate::github::GitHubError;
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

/// The webhook handler. A refusal or failure is counted and logged here, once
/// ([`IngressError::record`]), and answered by its [`IntoResponse`].
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngressError> {
    let started = Instant::now();
    let result = match tokio::time::timeout(DELIVERY_BUDGET, handle(&state, &headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(IngressError::Timeout {
            budget_ms: DELIVERY_BUDGET.as_millis() as u64,
        }),
    };
    if let Err(err) = &result {
        err.record(&state.metrics);
    }
    state
        .metrics
        .webhook_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, IngressError> {
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(IngressError::TooLarge);
    }
    // Room is taken as the body's bytes arrive, never from `Content-Length` up front: a
    // client that announces 16 MiB and sends nothing (it needs no signature for that)
    // must hold nothing, or a few of them would starve every signed delivery.
    let mut reservation = state
        .body_budget
        .reserve(0)
        .map_err(|err| overloaded(state, headers, &err))?;
    let mut body = body;
    let read = tokio::time::timeout(
        BODY_READ_DEADLINE,
        read_body(&mut body, declared, &mut reservation),
    )
    .await;
    let body = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadError::TooLarge)) => {
            discard_rest_in_background(body);
            return Err(IngressError::TooLarge);
        }
        Ok(Err(ReadError::Overloaded(err))) => {
            discard_rest_in_background(body);
            return Err(overloaded(state, headers, &err));
        }
        Ok(Err(ReadError::Unreadable(err))) => return Err(IngressError::Unreadable(err)),
        Err(_) => {
            return Err(IngressError::BodyTimeout {
                delivery_id: loggable_delivery_id(headers).into_owned(),
                declared_bytes: declared,
            });
        }
    };
    verify_and_process(state, headers, body, reservation).await
}

fn overloaded(state: &AppState, headers: &HeaderMap, err: &BudgetExhausted) -> IngressError {
    IngressError::Overloaded {
        delivery_id: loggable_delivery_id(headers).into_owned(),
        wanted_bytes: err.wanted_bytes,
        available_bytes: err.available_bytes,
        budget_bytes: state.body_budget.capacity_bytes(),
    }
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
    body: &mut Body,
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

/// How long the rest of a refused body is read and thrown away after the answer.
const DISCARD_WINDOW: Duration = Duration::from_secs(1);

/// Reads and drops what is left of a body refused mid-upload (413, 503), for at most
/// [`DISCARD_WINDOW`] and [`MAX_BODY_BYTES`], keeping no byte of it.
///
/// Why: the answer goes out while the sender is still writing. Closing with unread bytes
/// in the socket makes the kernel send a reset, which can reach the sender before it
/// reads the answer: GitHub would record a reset instead of the 503 that says
/// "overloaded". Holding the read side open a moment lets the answer arrive first. The
/// connection is idle for the eviction order meanwhile, and nothing is buffered.
fn discard_rest_in_background(mut body: Body) {
    tokio::spawn(async move {
        let discard = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |data| data.len());
                if seen > MAX_BODY_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_WINDOW, discard).await;
    });
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
) -> Result<Response, IngressError> {
    let m = &state.metrics;
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    match state.verifier.verify(signature, &body) {
        Ok(MatchedSecret::Current) => {}
        Ok(MatchedSecret::Previous) => m.previous_secret_used.inc(),
        Err(error) => {
            return Err(IngressError::InvalidSignature {
                error,
                delivery_id: loggable_delivery_id(headers).into_owned(),
            });
        }
    }
    m.webhook_events.inc();

    let event = header_str(headers, "x-github-event")
        .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(IngressError::MissingEvent)?;
    let delivery_id = validate_delivery_id(header_str(headers, "x-github-delivery"))
        .map_err(IngressError::InvalidDeliveryId)?;
    // The signature covers the body as sent; the JSON document is inside it.
    let payload = webhook_payload(headers, body).map_err(|refusal| match refusal {
        BodyRefusal::Form(message) => IngressError::UnusableBody {
            message,
            delivery_id: delivery_id.to_owned(),
            github_event: event.to_owned(),
        },
        BodyRefusal::MediaType(message) => IngressError::UnsupportedMediaType {
            message,
            delivery_id: delivery_id.to_owned(),
            github_event: event.to_owned(),
        },
    })?;
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
    let normalized = normalized.map_err(|error| IngressError::InvalidPayload {
        error,
        delivery_id: delivery_id.to_owned(),
        github_event: event.to_owned(),
    })?;
    match normalized {
        Normalized::Ignored { reason } => Ok(ignored(state, delivery_id, event, &reason)),
        Normalized::PullRequest(pr) => forward_pull_request(state, pr).await,
        Normalized::PullRequestWithoutInstallation(pr) => {
            match resolve_installation(state, pr).await? {
                Some(pr) => forward_pull_request(state, pr).await,
                None => Ok(ignored(
                    state,
                    delivery_id,
                    event,
                    "the App is not installed on the repository",
                )),
            }
        }
        Normalized::InstallationSync { event, backfill } => {
            let event = if backfill {
                match backfill_repositories(state, event).await? {
                    Backfill::Filled(event) => event,
                    Backfill::InstallationGone { delivery_id } => {
                        return Ok(ignored(
                            state,
                            &delivery_id,
                            "installation",
                            "the installation no longer exists on GitHub (deleted after this delivery)",
                        ));
                    }
                }
            } else {
                event
            };
            forward_installation_sync(state, event).await
        }
    }
}

/// Longest part of an unsupported `Content-Type` quoted in an answer.
const QUOTED_CONTENT_TYPE_PREFIX: usize = 64;

/// A body the ingress cannot take a JSON document from (see [`IngressError`]'s
/// `UnusableBody` and `UnsupportedMediaType`).
#[derive(Debug, PartialEq, Eq)]
enum BodyRefusal {
    /// A form without exactly one `payload` field: what is wrong.
    Form(&'static str),
    /// Another media type: the message naming it.
    MediaType(String),
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
/// [`BodyRefusal::MediaType`] for another media type (415); [`BodyRefusal::Form`] for
/// a form without exactly one `payload` field (400 `invalid_payload`).
fn webhook_payload(headers: &HeaderMap, body: Bytes) -> Result<Bytes, BodyRefusal> {
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
                // `payload=` with nothing after it would otherwise reach the JSON parser
                // and be refused with a message about JSON, not the field.
                (Some(payload), None) if payload.is_empty() => Err(BodyRefusal::Form(
                    "body: a form-encoded delivery's `payload` field is empty",
                )),
                (Some(payload), None) => Ok(Bytes::from(payload.into_owned())),
                (None, _) => Err(BodyRefusal::Form(
                    "body: a form-encoded delivery must have a `payload` field",
                )),
                (Some(_), Some(_)) => Err(BodyRefusal::Form(
                    "body: a form-encoded delivery must have one `payload` field, not several",
                )),
            }
        }
        _ => {
            let bytes = raw.as_bytes();
            let prefix = &bytes[..bytes.len().min(QUOTED_CONTENT_TYPE_PREFIX)];
            Err(BodyRefusal::MediaType(format!(
                "Content-Type {:?} is not supported: send application/json or \
                 {FORM_CONTENT_TYPE}",
                prefix.escape_ascii().to_string()
            )))
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

/// Payloads without `installation` come from a repository webhook aimed at the App's
/// URL; the App's own installation on that repository is what the backend needs.
async fn resolve_installation(
    state: &AppState,
    mut pr: PullRequestEvent,
) -> Result<Option<PullRequestEvent>, IngressError> {
    let repo =
        RepoFullName::parse(&pr.repository.full_name).map_err(IngressError::InvalidRepository)?;
    match state.github.repository_installation(&repo).await {
        Ok(Some(id)) => {
            pr.installation_id = id;
            Ok(Some(pr))
        }
        Ok(None) => Ok(None),
        Err(error) => Err(IngressError::GitHub {
            step: "installation lookup",
            error,
        }),
    }
}

/// What the repository backfill of an installation event found.
enum Backfill {
    /// The event, with every repository the installation can access.
    Filled(InstallationSyncEvent),
    /// GitHub no longer knows the installation.
    InstallationGone { delivery_id: String },
}

/// Contract §1.3: an installation created or unsuspended without a repository list gets
/// its repositories from GitHub, all pages. An installation GitHub no longer knows is
/// answered 200 `ignored` (nothing forwarded), since no redelivery could fill it.
async fn backfill_repositories(
    state: &AppState,
    mut event: InstallationSyncEvent,
) -> Result<Backfill, IngressError> {
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
            Ok(Backfill::Filled(event))
        }
        // GitHub signed this event for our App, so a 404 on the installation means it
        // was deleted since; a redelivery could never succeed, and forwarding it would
        // bring back an installation whose `deleted` event may already be stored.
        Err(GitHubError::InstallationNotFound { .. }) => Ok(Backfill::InstallationGone {
            delivery_id: event.delivery_id,
        }),
        Err(error) => Err(IngressError::GitHub {
            step: "repository backfill",
            error,
        }),
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

async fn forward_pull_request(
    state: &AppState,
    pr: PullRequestEvent,
) -> Result<Response, IngressError> {
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
            Ok(answer(
                StatusCode::OK,
                json!({
                    "status": "forwarded",
                    "ingest_status": resp.ingest_status,
                    "challenge_id": resp.challenge_id,
                    "enqueued_actions": resp.enqueued_actions,
                }),
            ))
        }
        Err(error) => Err(IngressError::Backend {
            delivery_id: pr.delivery_id,
            error,
        }),
    }
}

async fn forward_installation_sync(
    state: &AppState,
    event: InstallationSyncEvent,
) -> Result<Response, IngressError> {
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
            Ok(answer(
                StatusCode::OK,
                json!({
                    "status": "forwarded",
                    "ingest_status": resp.ingest_status,
                    "updated_installation_id": resp.updated_installation_id,
                    "updated_repositories": resp.updated_repositories,
                }),
            ))
        }
        Err(error) => Err(IngressError::Backend {
            delivery_id: event.delivery_id,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RejectReason;
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
        for bad in [
            &b"other=1"[..],
            b"",
            b"payload=1&payload=2",
            b"payload=",
            b"payload",
        ] {
            let BodyRefusal::Form(message) =
                webhook_payload(&headers, Bytes::from_static(bad)).unwrap_err()
            else {
                panic!("{bad:?}: not a form refusal");
            };
            let err = IngressError::UnusableBody {
                message,
                delivery_id: String::new(),
                github_event: String::new(),
            };
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(err.reject_reason(), Some(RejectReason::InvalidPayload));
            assert!(err.to_string().contains("payload"), "{err}");
        }
    }

    #[test]
    fn other_media_types_get_415_naming_them() {
        let media_type = |value: &str| {
            let BodyRefusal::MediaType(message) =
                webhook_payload(&with_content_type(value), Bytes::new()).unwrap_err()
            else {
                panic!("{value}: not a media type refusal");
            };
            IngressError::UnsupportedMediaType {
                message,
                delivery_id: String::new(),
                github_event: String::new(),
            }
        };
        let err = media_type("text/plain");
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err.code(), "unsupported_media_type");
        assert!(err.to_string().contains("\"text/plain\""), "{err}");
        let long = "x".repeat(300);
        assert!(media_type(&long).to_string().len() < 200);
    }
}
