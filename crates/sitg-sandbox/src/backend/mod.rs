//! `BackendSim`: an in-process SITG backend serving the four `/internal/v2` endpoints of
//! contract §1 with the real service's behaviour of §1.1 and §1.6.
//!
//! Behaviour, endpoint by endpoint:
//!
//! - Every endpoint checks, in this order: `content-type: application/json` (else 415),
//!   the body's shape (else 400 on a JSON syntax error, 422 on a wrong shape, both plain
//!   text as axum writes them), the service token when one is configured (else 401
//!   `UNAUTHORIZED`: the contract does not say, and a missing bearer credential is a 401
//!   in the usual reading of RFC 6750), then the key id, timestamp skew (300 s),
//!   signature and single use (each else 403 `FORBIDDEN`). An accepted signature is
//!   spent even if the request then fails validation.
//! - Pull-request ingest deduplicates on `(delivery_id, "pull_request")` and spends the
//!   delivery before processing. Values the backend cannot store (`head_sha` over 40
//!   characters; also non-positive ids and empty logins or names, which the contract
//!   tells the worker to reject) then fail with 500 `INTERNAL_ERROR`, and a redelivery
//!   answers `DUPLICATE`. Gated actions of non-draft PRs are `ACCEPTED` with one
//!   challenge per pull request (reused by later events of the same PR) and, per the
//!   [`GatePolicy`], one enqueued action; drafts (outside `gate_drafts_in`) and other
//!   actions are `IGNORED`.
//! - Installation-sync deduplicates on `(delivery_id, event_name of the body)`, i.e. the
//!   webhook's event name, and keeps an installation table ([`BackendSim::installations`]).
//!   Unknown event/action pairs are `IGNORED`.
//! - Claim hands out the oldest `PENDING` actions (limit clamped to 1..=100), in reversed
//!   order because the contract guarantees none. No lease expiry.
//! - Result: 409 `CONFLICT` unless `CLAIMED` by that worker; 404 `NOT_FOUND` for an
//!   unknown action id; 400 `VALIDATION_ERROR` for an id that is not a UUID.
//!   `RETRYABLE_FAILURE` requeues at once at the head of the queue.
//!
//! Faults ([`BackendSim::set_unavailable`], [`BackendSim::set_latency`],
//! [`BackendSim::fail_next_requests`]) apply before any of the above and change no state.
//! Answer faults ([`BackendSim::fault_next_answers`]) apply after it: the request has
//! been processed and its effects stored, and only the answer is delayed, cut off or
//! mangled on its way back, as a slow network, a proxy or a reset connection does.

mod auth;
mod http;
mod store;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

pub use auth::{
    AuthFailure, AuthHeaders, MAX_SKEW_SECONDS, claim_message, derive_key, expected_signature,
    installation_sync_message, pull_request_message, result_message,
};
pub use store::{
    ActionRecord, CLAIM_LIMIT_RANGE, CLOSE_PR_WITH_COMMENT, ClaimRecord, GatePolicy,
    IngestEndpoint, IngestOutcome, IngestRecord, InstallationRecord, NewAction, ResultRecord,
    UPSERT_PR_COMMENT, clamp_claim_limit, gate_marker,
};
pub use wire::{
    ActionStatus, ClaimRequest, ClaimResponse, ClaimedAction, IngestStatus, InstallationRef,
    InstallationSyncIngest, InstallationSyncResponse, Outcome, PullRequestIngest,
    PullRequestIngestResponse, PullRequestRef, RepositoryRef, ResultRequest, ResultResponse,
    UserRef,
};

use self::auth::Authenticator;
use self::store::Store;
use super::changes::Changes;
use crate::secret::SecretString;

/// Settings of a [`BackendSim`].
#[derive(Clone, Debug)]
pub struct BackendSimConfig {
    /// Active bot keys: `(key id, secret)`; the secret is what the worker holds as
    /// `BACKEND_INTERNAL_HMAC_SECRET`.
    pub keys: Vec<(String, SecretString)>,
    /// When set (and non-empty), every request must carry `authorization: Bearer {token}`.
    pub service_token: Option<SecretString>,
    /// What accepted pull request events enqueue.
    pub policy: GatePolicy,
    /// Ingest records kept for [`BackendSim::events`]; the oldest are dropped beyond it.
    pub max_recorded_events: usize,
}

impl BackendSimConfig {
    /// One active key, no service token, the default policy, 10,000 recorded events.
    pub fn new(key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            keys: vec![(key_id.into(), SecretString::new(secret))],
            service_token: None,
            policy: GatePolicy::default(),
            max_recorded_events: 10_000,
        }
    }
}

/// The backend's four endpoints, for request accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `POST /internal/v2/github/events/pull-request`
    PullRequestIngest,
    /// `POST /internal/v2/github/events/installation-sync`
    InstallationSync,
    /// `POST /internal/v2/bot-actions/claim`
    Claim,
    /// `POST /internal/v2/bot-actions/{action_id}/result`
    Result,
}

/// Counters of everything the simulator saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Requests received per endpoint (any outcome).
    pub requests: BTreeMap<Endpoint, u64>,
    /// Responses per endpoint and HTTP status.
    pub responses: BTreeMap<Endpoint, BTreeMap<u16, u64>>,
    /// Authentication rejections by reason (replays included).
    pub auth_failures: BTreeMap<AuthFailure, u64>,
    /// Requests rejected because their signature had been used before.
    pub replays_rejected: u64,
    /// Successful claim requests.
    pub claims: u64,
    /// Successful claim requests that returned no action.
    pub empty_claims: u64,
    /// Actions handed out by claims, re-claims included.
    pub actions_claimed: u64,
    /// Result reports accepted.
    pub results_accepted: u64,
    /// Result reports refused with 409.
    pub result_conflicts: u64,
    /// Requests answered by an injected fault.
    pub faults_served: u64,
    /// Processed requests whose answer an [`AnswerFault`] delayed, cut off or mangled.
    pub answer_faults_served: u64,
    /// When each claim request arrived (before any latency fault), oldest first.
    pub claim_requests_at: Vec<DateTime<Utc>>,
}

impl BackendStats {
    /// Sum of all authentication rejections.
    pub fn auth_failures_total(&self) -> u64 {
        self.auth_failures.values().sum()
    }

    /// Requests received by `endpoint`.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint).copied().unwrap_or_default()
    }

    /// Responses of `endpoint` with HTTP `status`.
    pub fn responses_with(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.responses
            .get(&endpoint)
            .and_then(|by_status| by_status.get(&status))
            .copied()
            .unwrap_or_default()
    }

    fn count_request(&mut self, endpoint: Endpoint) {
        *self.requests.entry(endpoint).or_default() += 1;
        if endpoint == Endpoint::Claim {
            self.claim_requests_at.push(Utc::now());
        }
    }

    fn count_response(&mut self, endpoint: Endpoint, status: StatusCode) {
        *self
            .responses
            .entry(endpoint)
            .or_default()
            .entry(status.as_u16())
            .or_default() += 1;
    }
}

struct State {
    auth: Authenticator,
    store: Store,
    stats: BackendStats,
}

impl State {
    fn authenticate(
        &mut self,
        headers: &AuthHeaders<'_>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthFailure> {
        let verdict = self.auth.verify(headers, message, now.timestamp());
        if let Err(failure) = verdict {
            *self.stats.auth_failures.entry(failure).or_default() += 1;
            if failure == AuthFailure::Replay {
                self.stats.replays_rejected += 1;
            }
        }
        verdict
    }
}

/// What happens to an answer the backend has already produced: the request was
/// processed and its effects are stored (actions `CLAIMED`, results applied), and the
/// worker sees something other than the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerFault {
    /// The answer is sent after this delay; a worker whose attempt timed out meanwhile
    /// never reads it.
    Delay(Duration),
    /// The status line, the headers and the first half of the body are sent, then the
    /// connection is closed (chunked encoding, so the client sees the body cut short).
    ResetMidBody,
    /// A 2xx answer becomes `200 OK` with the plain-text body `OK` (a proxy's page).
    NotJson,
    /// A claim answer lists every action twice.
    DuplicateActions,
}

#[derive(Default)]
struct Faults {
    unavailable: bool,
    latency: Duration,
    fail_next: u32,
    echo_next: u32,
    /// Credential header values (`authorization`, `x-sitg-signature`) sent back in echoes.
    echoed: Vec<String>,
    /// Per endpoint: the fault for its next answers and how many are left.
    answers: BTreeMap<Endpoint, (AnswerFault, u32)>,
}

impl Faults {
    /// Whether the next request is answered with an echo of itself.
    fn take_echo(&mut self) -> bool {
        let echo = self.echo_next > 0 && !self.unavailable;
        self.echo_next = self.echo_next.saturating_sub(u32::from(echo));
        echo
    }

    /// Latency to add and the fault status (if any) for the next request.
    fn next_request(&mut self) -> (Duration, Option<StatusCode>) {
        let fault = if self.unavailable {
            Some(StatusCode::SERVICE_UNAVAILABLE)
        } else if self.fail_next > 0 {
            self.fail_next -= 1;
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            None
        };
        (self.latency, fault)
    }

    /// The answer fault for the next answer of `endpoint`, consuming it.
    fn next_answer(&mut self, endpoint: Endpoint) -> Option<AnswerFault> {
        let (fault, left) = self.answers.get_mut(&endpoint)?;
        let fault = *fault;
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.answers.remove(&endpoint);
        }
        Some(fault)
    }
}

struct Shared {
    state: Mutex<State>,
    faults: Mutex<Faults>,
    changes: Changes,
}

/// The simulated SITG backend. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct BackendSim {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BackendSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSim").finish_non_exhaustive()
    }
}

impl BackendSim {
    /// A backend with the given keys, service token and policy, and an empty outbox.
    pub fn new(config: BackendSimConfig) -> Self {
        let state = State {
            auth: Authenticator::new(config.keys, config.service_token),
            store: Store::new(config.policy, config.max_recorded_events.max(1)),
            stats: BackendStats::default(),
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                faults: Mutex::new(Faults::default()),
                changes: Changes::new(),
            }),
        }
    }

    /// The axum router serving `/internal/v2` (contract §1); serve it with
    /// [`crate::Served`] or [`crate::serve`].
    pub fn router(&self) -> Router {
        http::router(self.clone())
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.shared.state.lock());
        self.shared.changes.bump();
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.state.lock())
    }

    /// A claim for `worker_id` straight on the store (what `POST /internal/v2/bot-actions/claim`
    /// does after authentication), for the crate's own tests.
    #[cfg(test)]
    pub(crate) fn claim_for_test(
        &self,
        worker_id: &str,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Vec<ClaimedAction> {
        self.mutate(|s| s.store.claim(worker_id, limit, now))
    }

    /// A result report straight on the store, for the crate's own tests.
    #[cfg(test)]
    pub(crate) fn report_for_test(
        &self,
        id: Uuid,
        worker_id: &str,
        outcome: Outcome,
        failure_code: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<ActionStatus, store::ResultRefusal> {
        self.mutate(|s| {
            s.store
                .report(id, worker_id, outcome, failure_code, None, now)
        })
    }

    /// Puts an action in the outbox as `PENDING` and returns its id. Nothing is validated.
    pub fn enqueue_action(&self, action: NewAction) -> Uuid {
        self.mutate(|s| s.store.enqueue(action, Utc::now()))
    }

    /// One action with its status, attempts, holder, claims and results.
    pub fn action(&self, id: Uuid) -> Option<ActionRecord> {
        self.read(|s| s.store.action(id))
    }

    /// Every action, oldest first.
    pub fn actions(&self) -> Vec<ActionRecord> {
        self.read(|s| s.store.actions())
    }

    /// Recorded ingest requests (authenticated ones; duplicates and failures included),
    /// oldest first, bounded by [`BackendSimConfig::max_recorded_events`].
    pub fn events(&self) -> Vec<IngestRecord> {
        self.read(|s| s.store.events())
    }

    /// Authenticated ingest requests per delivery id of `event_name` (e.g.
    /// `pull_request`), duplicates included: 1 for a delivery the worker forwarded
    /// once, more for one it sent again (the backend answered `DUPLICATE`). Unlike
    /// [`BackendSim::events`] not bounded.
    pub fn ingest_requests(&self, event_name: &str) -> BTreeMap<String, u64> {
        self.read(|s| s.store.ingest_requests(event_name))
    }

    /// Installations known from installation-sync events, by id.
    pub fn installations(&self) -> Vec<InstallationRecord> {
        self.read(|s| s.store.installations())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BackendStats {
        self.read(|s| s.stats.clone())
    }

    /// Number of actions with `status`.
    pub fn count(&self, status: ActionStatus) -> usize {
        self.read(|s| s.store.count_with_status(status))
    }

    /// Number of `PENDING` actions.
    pub fn pending_count(&self) -> usize {
        self.count(ActionStatus::Pending)
    }

    /// Number of `CLAIMED` actions: after a worker's shutdown this must be 0.
    pub fn claimed_count(&self) -> usize {
        self.count(ActionStatus::Claimed)
    }

    /// Replaces the gate policy for later events.
    pub fn set_policy(&self, policy: GatePolicy) {
        self.mutate(|s| s.store.set_policy(policy));
    }

    /// Adds or re-activates a bot key (key rotation drills).
    pub fn add_key(&self, key_id: impl Into<String>, secret: &SecretString) {
        self.mutate(|s| s.auth.add_key(key_id.into(), secret));
    }

    /// Revokes a bot key: later requests with it get 403. False when unknown.
    pub fn revoke_key(&self, key_id: &str) -> bool {
        self.mutate(|s| s.auth.revoke_key(key_id))
    }

    /// While true every request gets 503 `SERVICE_UNAVAILABLE` and changes nothing.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.faults.lock().unavailable = unavailable;
        self.shared.changes.bump();
    }

    /// Delay added before every request is handled (zero to disable).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.lock().latency = latency;
        self.shared.changes.bump();
    }

    /// The next `n` requests get 500 `INTERNAL_ERROR` before any processing (nothing
    /// spent, no signature recorded).
    pub fn fail_next_requests(&self, n: u32) {
        self.shared.faults.lock().fail_next = n;
        self.shared.changes.bump();
    }

    /// The next `n` requests get 502 `BAD_GATEWAY` whose `error.message` echoes the
    /// request line, every header and the body, as a misconfigured proxy in front of
    /// the backend does (nothing processed, no signature recorded).
    pub fn echo_next_requests(&self, n: u32) {
        self.shared.faults.lock().echo_next = n;
        self.shared.changes.bump();
    }

    /// The `authorization` and `x-sitg-signature` values sent back by echoes so far.
    pub fn echoed_credentials(&self) -> Vec<String> {
        self.shared.faults.lock().echoed.clone()
    }

    /// The next `n` answers of `endpoint` get `fault` after the request was processed
    /// (replacing an earlier answer fault of that endpoint; `n` = 0 removes it).
    pub fn fault_next_answers(&self, endpoint: Endpoint, fault: AnswerFault, n: u32) {
        let mut faults = self.shared.faults.lock();
        if n == 0 {
            faults.answers.remove(&endpoint);
        } else {
            faults.answers.insert(endpoint, (fault, n));
        }
        drop(faults);
        self.shared.changes.bump();
    }

    /// Waits until `condition` holds, re-checking after every state change and request,
    /// for at most `timeout`. Returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&BackendSim) -> bool,
    ) -> bool {
        self.shared
            .changes
            .wait_for(timeout, || condition(self))
            .await
    }

    /// A receiver whose value changes after every state change and request.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}
