//! [`IngressError`]: every answer of `POST /webhooks/github` other than a success, and
//! what each one costs in metrics and logs.
//!
//! One variant per refusal or failure; its match arms are the ingress's table:
//!
//! | variant | status | `error` | counted in | log event (level) |
//! | --- | --- | --- | --- | --- |
//! | `Timeout` | 504 | `timeout` | `sitg_bot_errors_total` | `webhook_timeout` (error) |
//! | `TooLarge` | 413 | `payload_too_large` | rejected `too_large` | — |
//! | `Overloaded` | 503 | `overloaded` | rejected `overloaded` | `webhook_overloaded` (warn) |
//! | `Unreadable` | 400 | `unreadable_body` | rejected `unreadable` | — |
//! | `BodyTimeout` | 408 | `body_timeout` | rejected `body_timeout` | `webhook_body_timeout` (warn) |
//! | `InvalidSignature` | 401 | `invalid_signature` | signature failures `{reason}` | `webhook_signature_refused` (warn) |
//! | `MissingEvent` | 400 | `invalid_payload` | rejected `missing_event` | — |
//! | `InvalidDeliveryId` | 400 | `invalid_payload` | rejected `invalid_delivery_id` | — |
//! | `UnusableBody` | 400 | `invalid_payload` | rejected `invalid_payload` | `webhook_payload_refused` (warn) |
//! | `UnsupportedMediaType` | 415 | `unsupported_media_type` | rejected `unsupported_media_type` | `webhook_payload_refused` (warn) |
//! | `InvalidPayload` | 400 | `invalid_payload` | rejected `invalid_payload` | `webhook_payload_refused` (warn) |
//! | `InvalidRepository` | 400 | `invalid_payload` | rejected `invalid_payload` | — |
//! | `GitHub` | 502 | `github_unavailable` | `sitg_bot_errors_total` | `webhook_github_failed` (error) |
//! | `Backend` | 504 / 503 / 502 | `backend_unavailable` | `sitg_bot_errors_total` | `webhook_forward_failed` (error) |
//!
//! ("rejected" is `sitg_bot_webhook_rejected_total{reason}`, whose series are created
//! from [`RejectReason::ALL`]; signature failures are
//! `sitg_bot_webhook_signature_failures_total{reason}`, from `SignatureError::ALL`.)
//!
//! The answer's body is `{"status":"error","error":…,"message":…}`, the message being
//! the error's `Display`: it never carries internal addresses (backend URL, GitHub base
//! URL); the log line does. [`IngressError::record`] counts and logs, once, before the
//! answer is sent ([`super::ingress::receive`] does it); [`IntoResponse`] builds the
//! answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ingress::BODY_READ_DEADLINE;
use crate::backend::BackendError;
use crate::contract::InvalidRepoName;
use crate::github::GitHubError;
use crate::metrics::{RejectReason, WorkerMetrics};
use crate::webhook::{PayloadError, SignatureError};

/// `Content-Type` of GitHub's form-encoded webhooks.
pub(super) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Why a webhook delivery was not handled. The `String` fields are log context only
/// (`delivery_id` as the logs may show it), never part of the answer.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The delivery was not handled within its budget (inside GitHub's 10 s).
    #[error("the delivery could not be processed in time")]
    Timeout {
        /// The budget, in milliseconds.
        budget_ms: u64,
    },
    /// The body is over GitHub's 25 MB (declared or received).
    #[error("body exceeds 25 MB")]
    TooLarge,
    /// The bodies received so far, over all requests, would exceed
    /// `WEBHOOK_BUFFER_LIMIT_MB`.
    #[error("the worker holds as many webhook bodies as it may; retry later")]
    Overloaded {
        delivery_id: String,
        /// Bytes the request needed, free bytes then, and the whole budget.
        wanted_bytes: u64,
        available_bytes: u64,
        budget_bytes: u64,
    },
    /// The connection failed while the body was read.
    #[error("{0}")]
    Unreadable(axum::Error),
    /// The body did not arrive in full within [`BODY_READ_DEADLINE`].
    #[error(
        "the request body did not arrive in full within {} s",
        BODY_READ_DEADLINE.as_secs()
    )]
    BodyTimeout {
        delivery_id: String,
        /// `Content-Length`, when it was a number.
        declared_bytes: Option<u64>,
    },
    /// `X-Hub-Signature-256` is missing, malformed or does not match.
    #[error("{error}")]
    InvalidSignature {
        error: SignatureError,
        delivery_id: String,
    },
    /// No usable `X-GitHub-Event`.
    #[error("X-GitHub-Event: header is missing or not printable ASCII")]
    MissingEvent,
    /// No usable `X-GitHub-Delivery`.
    #[error("{0}")]
    InvalidDeliveryId(PayloadError),
    /// A form-encoded body without exactly one `payload` field.
    #[error("{message}")]
    UnusableBody {
        message: &'static str,
        delivery_id: String,
        github_event: String,
    },
    /// A `Content-Type` that is neither JSON nor [`FORM_CONTENT_TYPE`]; `message` names
    /// it (escaped, its first 64 bytes).
    #[error("{message}")]
    UnsupportedMediaType {
        message: String,
        delivery_id: String,
        github_event: String,
    },
    /// Malformed JSON, a missing field or a value the backend cannot store.
    #[error("{error}")]
    InvalidPayload {
        error: PayloadError,
        delivery_id: String,
        github_event: String,
    },
    /// `repository.full_name` is not a repository name GitHub would accept.
    #[error("repository.full_name: {0}")]
    InvalidRepository(InvalidRepoName),
    /// A GitHub call the delivery needed (`step`) failed; the answer names its failure
    /// code only, since the error's text may name the GitHub base URL.
    #[error("{step} failed at GitHub ({})", .error.failure_code())]
    GitHub {
        step: &'static str,
        error: GitHubError,
    },
    /// The backend did not take the event; the answer says how, without the backend's
    /// address.
    #[error("{}", backend_public_message(.error))]
    Backend {
        delivery_id: String,
        error: BackendError,
    },
}

/// Where a refusal is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// `sitg_bot_webhook_rejected_total{reason}`.
    Rejected(RejectReason),
    /// `sitg_bot_webhook_signature_failures_total{reason}`.
    Signature(SignatureError),
    /// `sitg_bot_errors_total`.
    Error,
}

impl IngressError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unreadable(_)
            | Self::MissingEvent
            | Self::InvalidDeliveryId(_)
            | Self::UnusableBody { .. }
            | Self::InvalidPayload { .. }
            | Self::InvalidRepository(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::InvalidSignature { .. } => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::GitHub { .. } => StatusCode::BAD_GATEWAY,
            Self::Backend { error, .. } => match error {
                BackendError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
                BackendError::Transport { .. } => StatusCode::SERVICE_UNAVAILABLE,
                BackendError::Status { .. } | BackendError::Decode { .. } => {
                    StatusCode::BAD_GATEWAY
                }
            },
        }
    }

    /// The `error` field of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::TooLarge => "payload_too_large",
            Self::Overloaded { .. } => "overloaded",
            Self::Unreadable(_) => "unreadable_body",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::InvalidSignature { .. } => "invalid_signature",
            Self::MissingEvent
            | Self::InvalidDeliveryId(_)
            | Self::UnusableBody { .. }
            | Self::InvalidPayload { .. }
            | Self::InvalidRepository(_) => "invalid_payload",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::GitHub { .. } => "github_unavailable",
            Self::Backend { .. } => "backend_unavailable",
        }
    }

    /// The `reason` label of `sitg_bot_webhook_rejected_total` this refusal counts
    /// under; `None` for a signature failure or a failure of the worker or its peers.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self.counted() {
            Counted::Rejected(reason) => Some(reason),
            Counted::Signature(_) | Counted::Error => None,
        }
    }

    fn counted(&self) -> Counted {
        match self {
            Self::Timeout { .. } | Self::GitHub { .. } | Self::Backend { .. } => Counted::Error,
            Self::TooLarge => Counted::Rejected(RejectReason::TooLarge),
            Self::Overloaded { .. } => Counted::Rejected(RejectReason::Overloaded),
            Self::Unreadable(_) => Counted::Rejected(RejectReason::Unreadable),
            Self::BodyTimeout { .. } => Counted::Rejected(RejectReason::BodyTimeout),
            Self::InvalidSignature { error, .. } => Counted::Signature(*error),
            Self::MissingEvent => Counted::Rejected(RejectReason::MissingEvent),
            Self::InvalidDeliveryId(_) => Counted::Rejected(RejectReason::InvalidDeliveryId),
            Self::UnusableBody { .. }
            | Self::InvalidPayload { .. }
            | Self::InvalidRepository(_) => Counted::Rejected(RejectReason::InvalidPayload),
            Self::UnsupportedMediaType { .. } => {
                Counted::Rejected(RejectReason::UnsupportedMediaType)
            }
        }
    }

    /// Counts the refusal in its metric and writes its log line (if it has one).
    pub fn record(&self, metrics: &WorkerMetrics) {
        match self.counted() {
            Counted::Rejected(reason) => metrics.reject(reason),
            Counted::Signature(error) => metrics
                .signature_failures
                .with_label_values(&[error.reason()])
                .inc(),
            Counted::Error => metrics.errors.inc(),
        }
        self.log();
    }

    fn log(&self) {
        match self {
            Self::Timeout { budget_ms } => tracing::error!(
                event = "webhook_timeout",
                budget_ms,
                "webhook not handled within its time budget"
            ),
            Self::Overloaded {
                delivery_id,
                wanted_bytes,
                available_bytes,
                budget_bytes,
            } => tracing::warn!(
                event = "webhook_overloaded",
                delivery_id = %delivery_id,
                wanted_bytes,
                available_bytes,
                budget_bytes,
                "webhook refused: body buffer full"
            ),
            Self::BodyTimeout {
                delivery_id,
                declared_bytes,
            } => tracing::warn!(
                event = "webhook_body_timeout",
                delivery_id = %delivery_id,
                declared_bytes,
                deadline_ms = BODY_READ_DEADLINE.as_millis() as u64,
                "webhook body not received in time"
            ),
            Self::InvalidSignature { error, delivery_id } => tracing::warn!(
                event = "webhook_signature_refused",
                reason = error.reason(),
                delivery_id = %delivery_id,
                "webhook refused: signature check failed"
            ),
            Self::UnusableBody {
                message,
                delivery_id,
                github_event,
            } => log_body_refused(delivery_id, github_event, message),
            Self::UnsupportedMediaType {
                message,
                delivery_id,
                github_event,
            } => log_body_refused(delivery_id, github_event, message),
            Self::InvalidPayload {
                error,
                delivery_id,
                github_event,
            } => tracing::warn!(
                event = "webhook_payload_refused",
                delivery_id = delivery_id.as_str(),
                github_event = github_event.as_str(),
                field = %error.field,
                problem = %error.problem,
                "webhook refused: payload unusable"
            ),
            Self::GitHub { step, error } => tracing::error!(
                event = "webhook_github_failed",
                step = *step,
                error = %error,
                "GitHub call for a webhook failed"
            ),
            Self::Backend { delivery_id, error } => tracing::error!(
                event = "webhook_forward_failed",
                delivery_id = delivery_id.as_str(),
                error = %error,
                "webhook not forwarded to the backend"
            ),
            Self::TooLarge
            | Self::Unreadable(_)
            | Self::MissingEvent
            | Self::InvalidDeliveryId(_)
            | Self::InvalidRepository(_) => {}
        }
    }
}

/// `webhook_payload_refused` for a body no JSON document could be taken from.
fn log_body_refused(delivery_id: &str, github_event: &str, problem: &str) {
    tracing::warn!(
        event = "webhook_payload_refused",
        delivery_id,
        github_event,
        field = "body",
        problem = %problem,
        "webhook refused: payload unusable"
    );
}

impl IntoResponse for IngressError {
    /// `{"status":"error","error":code,"message":Display}` with [`Self::status`].
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "error": self.code(), "message": self.to_string()});
        (self.status(), Json(body)).into_response()
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    /// One error of each variant (the match makes a new variant fail to compile here
    /// until it is listed).
    fn one_of_each() -> Vec<IngressError> {
        let payload = || PayloadError {
            field: "f".to_owned(),
            problem: "p".to_owned(),
        };
        let all = vec![
            IngressError::Timeout { budget_ms: 1 },
            IngressError::TooLarge,
            IngressError::Overloaded {
                delivery_id: String::new(),
                wanted_bytes: 1,
                available_bytes: 0,
                budget_bytes: 1,
            },
            IngressError::Unreadable(axum::Error::new(std::io::Error::other("reset"))),
            IngressError::BodyTimeout {
                delivery_id: String::new(),
                declared_bytes: None,
            },
            IngressError::InvalidSignature {
                error: SignatureError::Mismatch,
                delivery_id: String::new(),
            },
            IngressError::MissingEvent,
            IngressError::InvalidDeliveryId(payload()),
            IngressError::UnusableBody {
                message: "m",
                delivery_id: String::new(),
                github_event: String::new(),
            },
            IngressError::UnsupportedMediaType {
                message: "m".to_owned(),
                delivery_id: String::new(),
                github_event: String::new(),
            },
            IngressError::InvalidPayload {
                error: payload(),
                delivery_id: String::new(),
                github_event: String::new(),
            },
            IngressError::InvalidRepository(InvalidRepoName::Shape),
            IngressError::GitHub {
                step: "s",
                error: GitHubError::Server { status: 502 },
            },
            IngressError::Backend {
                delivery_id: String::new(),
                error: BackendError::Decode {
                    endpoint: "/",
                    reason: String::new(),
                },
            },
        ];
        for err in &all {
            match err {
                IngressError::Timeout { .. }
                | IngressError::TooLarge
                | IngressError::Overloaded { .. }
                | IngressError::Unreadable(_)
                | IngressError::BodyTimeout { .. }
                | IngressError::InvalidSignature { .. }
                | IngressError::MissingEvent
                | IngressError::InvalidDeliveryId(_)
                | IngressError::UnusableBody { .. }
                | IngressError::UnsupportedMediaType { .. }
                | IngressError::InvalidPayload { .. }
                | IngressError::InvalidRepository(_)
                | IngressError::GitHub { .. }
                | IngressError::Backend { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_reject_reason_is_pre_initialised_and_produced() {
        let produced: Vec<RejectReason> = one_of_each()
            .iter()
            .filter_map(IngressError::reject_reason)
            .collect();
        for reason in &produced {
            assert!(RejectReason::ALL.contains(reason), "{reason:?} not in ALL");
        }
        for reason in RejectReason::ALL {
            assert!(produced.contains(&reason), "no refusal counts {reason:?}");
        }
    }

    #[test]
    fn refusals_are_4xx_and_failures_5xx() {
        for err in one_of_each() {
            let status = err.status();
            match err.counted() {
                Counted::Rejected(RejectReason::Overloaded) | Counted::Error => {
                    assert!(status.is_server_error(), "{err:?}: {status}");
                }
                Counted::Rejected(_) | Counted::Signature(_) => {
                    assert!(status.is_client_error(), "{err:?}: {status}");
                }
            }
        }
    }
}
