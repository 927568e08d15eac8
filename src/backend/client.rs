//! HTTP client for the backend's internal API: signing, retries and deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::signing::{RequestSigner, SignatureClock, SignedMessage};
use super::types::{
    ClaimRequest, ClaimResponse, ClaimedAction, ErrorBody, InstallationSyncEvent,
    InstallationSyncResponse, Outcome, PullRequestEvent, PullRequestIngestResponse, ResultRequest,
    ResultResponse,
};
use crate::secret::SecretString;

/// Characters escaped in a path segment: everything but RFC 3986's unreserved ones, so
/// a UUID stays as it is.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The most bytes of a backend `error.code` kept (the contract's codes are short).
const MAX_ERROR_CODE_BYTES: usize = 64;

/// Settings of a [`BackendClient`].
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// `BACKEND_BASE_URL` without trailing slash.
    pub base_url: String,
    /// `BACKEND_BOT_KEY_ID`.
    pub key_id: String,
    /// `BACKEND_INTERNAL_HMAC_SECRET`.
    pub hmac_secret: SecretString,
    /// `BACKEND_SERVICE_TOKEN`, sent as a bearer token when set.
    pub service_token: Option<SecretString>,
    /// `user-agent` of every request.
    pub user_agent: String,
}

/// How long one call may take and how often it is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// Timeout of one HTTP attempt.
    pub attempt_timeout: Duration,
    /// Total time for all attempts and the waits between them.
    pub deadline: Duration,
    /// Attempts at most (the first included).
    pub max_attempts: usize,
}

impl CallPolicy {
    /// Webhook forwarding: GitHub gives a delivery 10 s, so everything, retries included,
    /// ends within 8 s and leaves time to answer.
    pub const WEBHOOK: Self = Self {
        attempt_timeout: Duration::from_secs(4),
        deadline: Duration::from_secs(8),
        max_attempts: 3,
    };
    /// Claims and result reports.
    pub const OUTBOX: Self = Self {
        attempt_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(30),
        max_attempts: 5,
    };
}

/// A failed backend call. Messages name the endpoint and status, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No HTTP answer: connection refused or reset, DNS, attempt timeout.
    #[error("backend {endpoint} unreachable: {reason}")]
    Transport {
        endpoint: &'static str,
        reason: String,
    },
    /// The backend answered with an error status.
    #[error("backend {endpoint} answered {status} {code}: {message}")]
    Status {
        endpoint: &'static str,
        status: u16,
        /// The `error.code` of the body, or `HTTP_{status}` when the body had none.
        code: String,
        message: String,
    },
    /// A 2xx answer whose body does not match the contract.
    #[error("backend {endpoint} answered with an unexpected body: {reason}")]
    Decode {
        endpoint: &'static str,
        reason: String,
    },
    /// Retries did not succeed within [`CallPolicy::deadline`].
    #[error("backend {endpoint} did not answer within {deadline:?}")]
    DeadlineExceeded {
        endpoint: &'static str,
        deadline: Duration,
    },
}

impl BackendError {
    /// Connection errors and 408/425/429/5xx are worth another attempt; other answers
    /// (400 validation, 403 auth, 409 conflict, 415, 422) will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => matches!(*status, 408 | 425 | 429 | 500..=599),
            Self::Decode { .. } | Self::DeadlineExceeded { .. } => false,
        }
    }

    /// The HTTP status the backend answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A claim that failed. The backend marks actions `CLAIMED` before it answers, so when
/// the request may have reached it (`answer_lost`), up to `limit` actions may now be
/// held by this worker without it knowing their ids.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ClaimError {
    /// What went wrong.
    pub error: BackendError,
    /// True when the request was (or may have been) received and processed: the attempt
    /// got past connecting and no answer of the backend says the claim was refused
    /// (attempt timeout, connection reset while waiting or mid-body, a 2xx whose body
    /// does not parse, a proxy's 502/504). False for connection failures and for the
    /// backend's own error answers.
    pub answer_lost: bool,
}

#[derive(Clone)]
struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    refusing: IntGauge,
    replay_retries: IntCounterVec,
}

impl Metrics {
    /// Counts one attempt in `sitg_bot_backend_requests_total` under `class` (`2xx`,
    /// `4xx`, `5xx`, `other`, or `error` without an answer), written to both
    /// `status_class` and its deprecated copy `status`.
    fn count_request(&self, endpoint: &str, class: &str) {
        self.requests
            .with_label_values(&[endpoint, class, class])
            .inc();
    }

    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "sitg_bot_backend_requests_total",
                "HTTP attempts to the backend internal API, by endpoint and status class (status: deprecated copy of status_class)",
            ),
            // `status` is the former name of `status_class` (the GitHub client's
            // label), kept with the same value for one release (docs/operations.md,
            // "Metric changes").
            &["endpoint", "status_class", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sitg_bot_backend_request_duration_seconds",
                "Duration of one HTTP attempt to the backend internal API",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["endpoint"],
        )?;
        let refusing = IntGauge::new(
            "sitg_bot_backend_refusing",
            "1 while the backend's last answer said the worker is misconfigured (403: key id or \
             HMAC secret; 404 on a fixed endpoint: BACKEND_BASE_URL), else 0",
        )?;
        let replay_retries = IntCounterVec::new(
            Opts::new(
                "sitg_bot_backend_replay_retries_total",
                "403 answers to an event forward, a message other replicas sign too, that \
                 were signed again in a later second (the backend refuses a signature it \
                 has seen; another replica may have sent the same delivery)",
            ),
            &["endpoint"],
        )?;
        for endpoint in ["pull_request_event", "installation_sync_event"] {
            replay_retries.with_label_values(&[endpoint]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(refusing.clone()))?;
        registry.register(Box::new(replay_retries.clone()))?;
        Ok(Self {
            requests,
            duration,
            refusing,
            replay_retries,
        })
    }
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    signer: RequestSigner,
    clock: SignatureClock,
    service_token: Option<SecretString>,
    reachable: AtomicBool,
    /// Probes failed in a row; readiness drops only after [`UNREACHABLE_AFTER`] of them.
    probe_failures: AtomicU32,
    /// What the backend's last answer said about our configuration.
    refusal: AtomicU8,
    metrics: Metrics,
}

/// Why the backend refuses this worker, from its last answer to a signed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the key id is unknown, inactive or revoked, the HMAC secret does not match,
    /// or the host clock is off by more than 300 s (contract §1.1).
    Forbidden,
    /// 404 on an endpoint that always exists: `BACKEND_BASE_URL` points at the wrong
    /// path or service.
    NotFound,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Self::Forbidden => 1,
            Self::NotFound => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Forbidden),
            2 => Some(Self::NotFound),
            _ => None,
        }
    }

    /// What an operator should check, for `/readyz` and the log.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Forbidden => {
                "backend answers 403 to signed requests: check BACKEND_BOT_KEY_ID, \
                 BACKEND_INTERNAL_HMAC_SECRET and the host clock"
            }
            Self::NotFound => {
                "backend answers 404 on /internal/v2 endpoints: check BACKEND_BASE_URL"
            }
        }
    }
}

/// Failed probes in a row before the backend counts as unreachable: one lost request
/// must not take every replica out of the load balancer at once.
const UNREACHABLE_AFTER: u32 = 3;

/// Client of `/internal/v2`, cheap to clone.
///
/// Every attempt is signed afresh and one message is never signed twice in the same
/// second ([`SignatureClock`]), because the backend refuses a replayed signature.
#[derive(Clone)]
pub struct BackendClient {
    inner: Arc<Inner>,
}

/// Errors building a [`BackendClient`].
#[derive(Debug, thiserror::Error)]
pub enum BackendSetupError {
    #[error("could not build the HTTP client: {0}")]
    Http(String),
    #[error("could not register backend metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl BackendClient {
    /// Builds the client and registers its metrics in `registry`.
    pub fn new(config: BackendConfig, registry: &Registry) -> Result<Self, BackendSetupError> {
        crate::tls::install_crypto_provider();
        // Credentials by value, so no log line or report can carry them out.
        crate::redact::remember("BACKEND_INTERNAL_HMAC_SECRET", config.hmac_secret.expose());
        if let Some(token) = &config.service_token {
            crate::redact::remember("BACKEND_SERVICE_TOKEN", token.expose());
        }
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BackendSetupError::Http(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url: config.base_url.trim_end_matches('/').to_owned(),
                signer: RequestSigner::new(config.key_id, &config.hmac_secret),
                clock: SignatureClock::default(),
                service_token: config.service_token.filter(|t| !t.is_empty()),
                reachable: AtomicBool::new(false),
                probe_failures: AtomicU32::new(0),
                refusal: AtomicU8::new(0),
                metrics: Metrics::register(registry)?,
            }),
        })
    }

    /// Whether the backend answers HTTP: set by any answer (any status), cleared after
    /// three failed probes in a row.
    pub fn is_reachable(&self) -> bool {
        self.inner.reachable.load(Ordering::Relaxed)
    }

    /// Whether the backend's last answer to a signed call said this worker is
    /// misconfigured (set by a 403, or a 404 on an endpoint without an id in its path;
    /// cleared by any 2xx). Not a readiness condition: a worker that only takes webhooks
    /// would never be sent the request that clears it.
    pub fn refusal(&self) -> Option<Refusal> {
        Refusal::from_code(self.inner.refusal.load(Ordering::Relaxed))
    }

    fn note_answer(&self, endpoint: &'static str, status: StatusCode) {
        let refusal = match status.as_u16() {
            200..=299 => None,
            403 => Some(Refusal::Forbidden),
            // A result report addresses an action by id: its 404 says nothing about us.
            404 if endpoint != "result" => Some(Refusal::NotFound),
            _ => return,
        };
        let code = refusal.map_or(0, Refusal::code);
        let before = self.inner.refusal.swap(code, Ordering::Relaxed);
        self.inner.metrics.refusing.set(i64::from(code != 0));
        if before != code {
            match refusal {
                Some(refusal) => tracing::error!(
                    event = "backend_refusing",
                    endpoint,
                    status = status.as_u16(),
                    hint = refusal.hint(),
                    "the backend refuses this worker's requests"
                ),
                None => tracing::info!(
                    event = "backend_accepting",
                    endpoint,
                    "the backend accepts this worker's requests again"
                ),
            }
        }
    }

    /// Checks that the backend answers HTTP at all (`GET {base}/`, any status counts),
    /// for readiness. Returns whether this probe got an answer.
    pub async fn probe(&self) -> bool {
        let ok = self
            .inner
            .http
            .get(format!("{}/", self.inner.base_url))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok();
        let inner = &self.inner;
        if ok {
            inner.probe_failures.store(0, Ordering::Relaxed);
            inner.reachable.store(true, Ordering::Relaxed);
        } else if inner.probe_failures.fetch_add(1, Ordering::Relaxed) + 1 >= UNREACHABLE_AFTER {
            inner.reachable.store(false, Ordering::Relaxed);
        }
        ok
    }

    /// Forwards a pull-request event (contract §1.2).
    pub async fn forward_pull_request(
        &self,
        event: &PullRequestEvent,
        policy: CallPolicy,
    ) -> Result<PullRequestIngestResponse, BackendError> {
        let message = SignedMessage::PullRequestEvent {
            delivery_id: &event.delivery_id,
        };
        self.call(
            "pull_request_event",
            "/internal/v2/github/events/pull-request",
            message,
            event,
            policy,
        )
        .await
    }

    /// Forwards an installation or installation_repositories event (contract §1.3).
    pub async fn forward_installation_sync(
        &self,
        event: &InstallationSyncEvent,
        policy: CallPolicy,
    ) -> Result<InstallationSyncResponse, BackendError> {
        let message = SignedMessage::InstallationSyncEvent {
            delivery_id: &event.delivery_id,
        };
        self.call(
            "installation_sync_event",
            "/internal/v2/github/events/installation-sync",
            message,
            event,
            policy,
        )
        .await
    }

    /// Claims up to `limit` pending actions for `worker_id` (contract §1.4).
    ///
    /// The caller should use a policy of one attempt: a claim whose answer was lost
    /// must not be sent again at once, since every resend can strand another batch.
    ///
    /// # Errors
    /// [`ClaimError`], saying whether the claim may have been carried out anyway.
    pub async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        policy: CallPolicy,
    ) -> Result<Vec<ClaimedAction>, ClaimError> {
        let body = ClaimRequest {
            worker_id: worker_id.to_owned(),
            limit,
        };
        let message = SignedMessage::Claim { worker_id };
        let reached = AtomicBool::new(false);
        let resp: ClaimResponse = self
            .post_noting(
                "claim",
                "/internal/v2/bot-actions/claim",
                &message,
                &body,
                policy,
                &reached,
            )
            .await
            .map(|(resp, _)| resp)
            .map_err(|(error, _)| {
                let answer_lost = reached.load(Ordering::Relaxed)
                    && match &error {
                        BackendError::Status { status, .. } => matches!(status, 502 | 504),
                        _ => true,
                    };
                ClaimError { error, answer_lost }
            })?;
        Ok(resp
            .actions
            .into_iter()
            .filter_map(|raw| {
                let text = raw.to_string();
                let action = ClaimedAction::from_claimed_json(raw);
                if action.is_none() {
                    // Claimed but unreportable: only an operator can release it.
                    tracing::error!(
                        event = "claimed_action_without_id",
                        action = %text,
                        "a claimed action has no usable id; it stays claimed until released by hand"
                    );
                }
                action
            })
            .collect())
    }

    /// Reports an action's result (contract §1.5).
    ///
    /// A 409 on a *repeated* attempt means the first attempt did land but its answer was
    /// lost; that counts as reported and returns `Ok(None)`. A 409 on the first attempt
    /// is an error: the action was not ours.
    pub async fn report_result(
        &self,
        action_id: &str,
        request: &ResultRequest,
        policy: CallPolicy,
    ) -> Result<Option<ResultResponse>, BackendError> {
        let message = SignedMessage::Result {
            action_id,
            worker_id: &request.worker_id,
            outcome: request.outcome.as_str(),
        };
        // The id is the backend's, but it goes into a URL path: encode it as one segment
        // so an odd id can never address another endpoint.
        let encoded = percent_encoding::utf8_percent_encode(action_id, PATH_SEGMENT);
        let path = format!("/internal/v2/bot-actions/{encoded}/result");
        // The message may quote a peer (a GitHub error): no credential leaves with it.
        let request = &ResultRequest {
            failure_message: request
                .failure_message
                .as_deref()
                .map(|m| crate::redact::peer_text(m, &[])),
            ..request.clone()
        };
        match self
            .post::<_, ResultResponse>("result", &path, &message, request, policy)
            .await
        {
            Ok((resp, _)) => Ok(Some(resp)),
            Err((BackendError::Status { status: 409, .. }, attempts)) if attempts > 1 => Ok(None),
            // A 2xx is the backend's acceptance even when its body is not the contract's
            // (a proxy rewrote it): the action is no longer ours to report.
            Err((err @ BackendError::Decode { .. }, attempts)) if attempts > 0 => {
                tracing::warn!(
                    event = "action_report_answer_unreadable",
                    action_id,
                    error = %err,
                    "the backend accepted the result (2xx) with a body that is not the contract's"
                );
                Ok(None)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Convenience for callers that build a [`ResultRequest`] from parts.
    pub fn result_request(
        worker_id: &str,
        outcome: Outcome,
        failure_code: Option<&str>,
        failure_message: Option<&str>,
    ) -> ResultRequest {
        ResultRequest {
            worker_id: worker_id.to_owned(),
            outcome,
            failure_code: failure_code.map(str::to_owned),
            failure_message: failure_message.map(str::to_owned),
        }
    }

    /// [`Self::post`] signed with `message`, for callers that need no attempt count.
    async fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        message: SignedMessage<'_>,
        body: &Req,
        policy: CallPolicy,
    ) -> Result<Resp, BackendError> {
        self.post(endpoint, path, &message, body, policy)
            .await
            .map(|(resp, _)| resp)
            .map_err(|(e, _)| e)
    }

    /// POSTs `body` to `path` signed with `message`, retrying per `policy`. On error
    /// also returns how many attempts were made.
    ///
    /// A 403 to a message other replicas sign too
    /// ([`SignedMessage::shared_by_replicas`]) is tried again, signed in a later
    /// second: the backend answers a replayed signature with the same 403 `FORBIDDEN` as
    /// a wrong key, so only a fresh signature tells them apart. Such a 403 counts as a
    /// refusal ([`Self::refusal`], log `backend_refusing`) only when no attempt is left.
    async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        message: &SignedMessage<'_>,
        body: &Req,
        policy: CallPolicy,
    ) -> Result<(Resp, usize), (BackendError, usize)> {
        let reached = AtomicBool::new(false);
        self.post_noting(endpoint, path, message, body, policy, &reached)
            .await
    }

    /// [`Self::post`], setting `reached` once an attempt got past connecting (its
    /// request may have been received).
    async fn post_noting<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        message: &SignedMessage<'_>,
        body: &Req,
        policy: CallPolicy,
        reached: &AtomicBool,
    ) -> Result<(Resp, usize), (BackendError, usize)> {
        let shared = message.shared_by_replicas();
        let message = &message.to_string();
        let bytes = bytes::Bytes::from(serde_json::to_vec(body).map_err(|e| {
            (
                BackendError::Decode {
                    endpoint,
                    reason: format!("request body did not serialise: {e}"),
                },
                0,
            )
        })?);
        let url = format!("{}{path}", self.inner.base_url);
        let attempts = AtomicUsize::new(0);
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt::<Resp>(
                endpoint,
                &url,
                message,
                bytes.clone(),
                AttemptOptions {
                    timeout: policy.attempt_timeout,
                    reached,
                    shared,
                },
            )
            .await
        };
        let replay_suspected =
            |err: &BackendError| shared && matches!(err, BackendError::Status { status: 403, .. });
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(4))
            .with_jitter()
            .with_max_times(policy.max_attempts.saturating_sub(1));
        let retried = attempt
            .retry(backoff)
            .when(|err| err.is_retryable() || replay_suspected(err))
            .notify(|err, delay| {
                if replay_suspected(err) {
                    self.inner
                        .metrics
                        .replay_retries
                        .with_label_values(&[endpoint])
                        .inc();
                    tracing::info!(
                        event = "backend_replay_suspected",
                        endpoint,
                        error = %err,
                        retry_in_ms = delay.as_millis() as u64,
                        "403 to a message another replica may have signed in the same \
                         second; signing again in a later second"
                    );
                } else {
                    tracing::warn!(
                        event = "backend_retry",
                        endpoint,
                        error = %err,
                        retry_in_ms = delay.as_millis() as u64,
                        "backend request failed; retrying"
                    );
                }
            });
        let outcome = tokio::time::timeout(policy.deadline, retried).await;
        let made = attempts.load(Ordering::Relaxed);
        if let Ok(Err(err)) = &outcome {
            if replay_suspected(err) {
                // Every attempt was refused, fresh signatures included: a real refusal.
                self.note_answer(endpoint, StatusCode::FORBIDDEN);
            }
        }
        match outcome {
            Ok(Ok(resp)) => Ok((resp, made)),
            Ok(Err(e)) => Err((e, made)),
            Err(_) => Err((
                BackendError::DeadlineExceeded {
                    endpoint,
                    deadline: policy.deadline,
                },
                made,
            )),
        }
    }

    async fn attempt<Resp: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        url: &str,
        message: &str,
        body: bytes::Bytes,
        how: AttemptOptions<'_>,
    ) -> Result<Resp, BackendError> {
        let AttemptOptions {
            timeout,
            reached,
            shared,
        } = how;
        let inner = &self.inner;
        // A fresh signature for every attempt: the backend refuses a replayed one.
        let timestamp = inner.clock.reserve(message).await;
        let auth = inner.signer.headers(timestamp, message);
        // Whatever the backend (or a proxy before it) answers is redacted of this
        // attempt's signature as well as of every registered credential.
        let signature = auth.signature.clone();
        let sent: [&str; 1] = [&signature];
        let mut request = inner
            .http
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("x-sitg-key-id", auth.key_id)
            .header("x-sitg-timestamp", auth.timestamp)
            .header("x-sitg-signature", auth.signature)
            .body(body);
        if let Some(token) = &inner.service_token {
            request = request.bearer_auth(token.expose());
        }
        let started = Instant::now();
        // Until the answer (or an error that is not a connection failure) is known, the
        // request may be on its way: an abandoned attempt counts as reached.
        let reached_before = reached.swap(true, Ordering::Relaxed);
        let result = request.send().await;
        if result.as_ref().is_err_and(reqwest::Error::is_connect) {
            reached.store(reached_before, Ordering::Relaxed);
        }
        inner
            .metrics
            .duration
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                inner.metrics.count_request(endpoint, "error");
                return Err(BackendError::Transport {
                    endpoint,
                    // reqwest's message names the URL, which carries no secret here.
                    reason: crate::redact::peer_text(&error_chain(&e), &sent),
                });
            }
        };
        inner.reachable.store(true, Ordering::Relaxed);
        let status = response.status();
        // A 403 to a shared message may be another replica's replay; [`Self::post`]
        // decides once the retries are over.
        if !(shared && status == StatusCode::FORBIDDEN) {
            self.note_answer(endpoint, status);
        }
        inner.metrics.count_request(endpoint, status_class(status));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| BackendError::Transport {
                endpoint,
                reason: crate::redact::peer_text(&error_chain(&e), &sent),
            })?;
        if status.is_success() {
            // serde's message may quote a value of the body.
            return serde_json::from_slice(&bytes).map_err(|e| BackendError::Decode {
                endpoint,
                reason: crate::redact::peer_text(&e.to_string(), &sent),
            });
        }
        // Only the contract's `error.code` and `error.message` are kept, redacted and
        // capped; any other body (a proxy's page that may echo the request) is never
        // kept, only its size.
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (
                crate::redact::cap(
                    crate::redact::peer_text(&body.error.code, &sent),
                    MAX_ERROR_CODE_BYTES,
                ),
                crate::redact::peer_text(&body.error.message, &sent),
            ),
            Err(_) => (
                format!("HTTP_{}", status.as_u16()),
                format!(
                    "error body is not the contract's JSON ({} bytes, not shown)",
                    bytes.len()
                ),
            ),
        };
        Err(BackendError::Status {
            endpoint,
            status: status.as_u16(),
            code,
            message,
        })
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source`).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How one backend attempt runs.
#[derive(Clone, Copy)]
struct AttemptOptions<'a> {
    /// Deadline of the attempt, from sending to the whole answer read.
    timeout: Duration,
    /// Set once the request got past connecting: the backend may have received it.
    reached: &'a AtomicBool,
    /// Other replicas sign the same message ([`SignedMessage::shared_by_replicas`]),
    /// so a 403 may be a replay rather than a refusal.
    shared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_the_issue() {
        let status = |s| BackendError::Status {
            endpoint: "claim",
            status: s,
            code: String::new(),
            message: String::new(),
        };
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 415, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(
            BackendError::Transport {
                endpoint: "claim",
                reason: "refused".into()
            }
            .is_retryable()
        );
    }

    /// A real socket answering one claim with 200: the request counter carries
    /// `status_class` (the GitHub client's label name) and, for one release, the same
    /// value under its former name `status`.
    #[tokio::test]
    async fn requests_are_counted_by_status_class_and_the_deprecated_status() {
        use prometheus::Encoder;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = Vec::new();
            // Read the head and the announced body before answering.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before the request was complete");
                read.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&read).to_lowercase();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if read.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let body = r#"{"actions":[]}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let registry = Registry::new();
        let client = BackendClient::new(
            BackendConfig {
                base_url: format!("http://{addr}"),
                key_id: "k".into(),
                hmac_secret: SecretString::new("s"),
                service_token: None,
                user_agent: "test".into(),
            },
            &registry,
        )
        .unwrap();
        let policy = CallPolicy {
            attempt_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(10),
            max_attempts: 1,
        };
        let claimed =
            tokio::time::timeout(Duration::from_secs(20), client.claim("worker-1", 1, policy))
                .await
                .unwrap()
                .unwrap();
        assert!(claimed.is_empty());
        server.await.unwrap();
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let line = r#"sitg_bot_backend_requests_total{endpoint="claim",status="2xx",status_class="2xx"} 1"#;
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in:\n{text}"
        );
    }
}
