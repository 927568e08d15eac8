//! The backend's data: spent deliveries, gate challenges, installations and the outbox
//! of bot actions. Pure logic; the HTTP layer authenticates and then calls in here with
//! the current time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::wire::{
    ActionStatus, ClaimedAction, IngestStatus, InstallationSyncIngest, InstallationSyncResponse,
    Outcome, PullRequestIngest, PullRequestIngestResponse, RepositoryRef,
};

/// `action_type` of a gate comment upsert.
pub const UPSERT_PR_COMMENT: &str = "UPSERT_PR_COMMENT";
/// `action_type` of closing a pull request with a comment.
pub const CLOSE_PR_WITH_COMMENT: &str = "CLOSE_PR_WITH_COMMENT";

/// Pull request actions the backend gates (contract §1.2).
const GATED_ACTIONS: [&str; 4] = ["opened", "reopened", "synchronize", "ready_for_review"];

/// Largest `head_sha` the backend's column stores.
const HEAD_SHA_COLUMN_CHARS: usize = 40;

/// Smallest and largest effective claim limit.
pub const CLAIM_LIMIT_RANGE: (i64, i64) = (1, 100);

/// What the simulated backend does with an accepted pull request event.
#[derive(Clone, Debug)]
pub struct GatePolicy {
    /// When false, accepted events enqueue no action (`enqueued_actions` = 0).
    pub enqueue_actions: bool,
    /// Authors (logins) whose pull requests get `CLOSE_PR_WITH_COMMENT` instead of a gate
    /// comment.
    pub close_pr_authors: BTreeSet<String>,
    /// Repositories (`owner/name`) that gate draft pull requests too; drafts elsewhere
    /// are `IGNORED`.
    pub gate_drafts_in: BTreeSet<String>,
}

impl Default for GatePolicy {
    fn default() -> Self {
        Self {
            enqueue_actions: true,
            close_pr_authors: BTreeSet::new(),
            gate_drafts_in: BTreeSet::new(),
        }
    }
}

/// The gate comment marker of a challenge: `sitg:gate:{challenge_id}`.
pub fn gate_marker(challenge_id: Uuid) -> String {
    format!("sitg:gate:{challenge_id}")
}

/// Which ingest endpoint an event came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IngestEndpoint {
    /// `/internal/v2/github/events/pull-request`
    PullRequest,
    /// `/internal/v2/github/events/installation-sync`
    InstallationSync,
}

/// What became of an authenticated ingest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IngestOutcome {
    /// `ACCEPTED`.
    Accepted,
    /// `DUPLICATE`: the delivery was spent before.
    Duplicate,
    /// `IGNORED`.
    Ignored,
    /// The delivery was spent, then processing failed with 500 (a value the backend's
    /// storage cannot hold, contract §1.6). A redelivery answers `DUPLICATE`.
    Failed,
}

/// One authenticated ingest request, as recorded for inspection.
#[derive(Clone, Debug)]
pub struct IngestRecord {
    /// The endpoint.
    pub endpoint: IngestEndpoint,
    /// Dedup event name: `pull_request`, or the body's `event_name` for installation sync.
    pub event_name: String,
    /// `delivery_id` of the body.
    pub delivery_id: String,
    /// `action` of the body.
    pub action: String,
    /// The full JSON body as sent.
    pub body: Value,
    /// What the backend did.
    pub outcome: IngestOutcome,
    /// Gate challenge of an accepted pull request event.
    pub challenge_id: Option<Uuid>,
    /// Ids of the actions this event enqueued.
    pub enqueued: Vec<Uuid>,
    /// Backend clock at receipt.
    pub received_at: DateTime<Utc>,
}

/// An installation as the backend knows it from installation-sync events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallationRecord {
    /// GitHub installation id.
    pub id: i64,
    /// Account login.
    pub account_login: String,
    /// Account type as sent (free text).
    pub account_type: String,
    /// False after `deleted`.
    pub installed: bool,
    /// True between `suspend` and `unsuspend`.
    pub suspended: bool,
    /// Repository id → `owner/name`.
    pub repositories: BTreeMap<i64, String>,
}

/// An action to put in the outbox, for tests and `sitg-sandbox dev`. Nothing is validated:
/// invalid payloads and repository names are the point of some tests.
#[derive(Clone, Debug)]
pub struct NewAction {
    /// Any string; the worker must fail unknown types as `UNSUPPORTED_ACTION`.
    pub action_type: String,
    /// Installation id.
    pub installation_id: i64,
    /// GitHub repository id.
    pub github_repo_id: i64,
    /// Any string, e.g. `org/repo/../../x`.
    pub repo_full_name: String,
    /// Pull request number.
    pub github_pr_number: i64,
    /// Gate challenge.
    pub challenge_id: Option<Uuid>,
    /// Any JSON.
    pub payload: Value,
    /// Defaults to now; earlier values sort first in the queue.
    pub created_at: Option<DateTime<Utc>>,
}

impl NewAction {
    /// An `UPSERT_PR_COMMENT` with payload `{comment_markdown, comment_marker}`.
    pub fn upsert_comment(
        installation_id: i64,
        github_repo_id: i64,
        repo_full_name: &str,
        github_pr_number: i64,
        comment_markdown: &str,
        comment_marker: &str,
    ) -> Self {
        Self {
            action_type: UPSERT_PR_COMMENT.to_owned(),
            installation_id,
            github_repo_id,
            repo_full_name: repo_full_name.to_owned(),
            github_pr_number,
            challenge_id: None,
            payload: json!({
                "comment_markdown": comment_markdown,
                "comment_marker": comment_marker,
            }),
            created_at: None,
        }
    }

    /// A `CLOSE_PR_WITH_COMMENT` with payload `{comment_markdown, comment_marker, reason}`.
    pub fn close_with_comment(
        installation_id: i64,
        github_repo_id: i64,
        repo_full_name: &str,
        github_pr_number: i64,
        comment_markdown: &str,
        comment_marker: &str,
        reason: &str,
    ) -> Self {
        Self {
            action_type: CLOSE_PR_WITH_COMMENT.to_owned(),
            payload: json!({
                "comment_markdown": comment_markdown,
                "comment_marker": comment_marker,
                "reason": reason,
            }),
            ..Self::upsert_comment(
                installation_id,
                github_repo_id,
                repo_full_name,
                github_pr_number,
                "",
                "",
            )
        }
    }
}

/// One claim of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRecord {
    /// The claiming worker.
    pub worker_id: String,
    /// Backend clock.
    pub at: DateTime<Utc>,
}

/// One accepted result report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRecord {
    /// The reporting worker.
    pub worker_id: String,
    /// Reported outcome.
    pub outcome: Outcome,
    /// Reported failure code.
    pub failure_code: Option<String>,
    /// Reported failure message.
    pub failure_message: Option<String>,
    /// Backend clock.
    pub at: DateTime<Utc>,
}

/// An outbox action and its history.
#[derive(Clone, Debug)]
pub struct ActionRecord {
    /// Action id.
    pub id: Uuid,
    /// Action type.
    pub action_type: String,
    /// Installation id.
    pub installation_id: i64,
    /// GitHub repository id.
    pub github_repo_id: i64,
    /// Repository name as enqueued.
    pub repo_full_name: String,
    /// Pull request number.
    pub github_pr_number: i64,
    /// Gate challenge.
    pub challenge_id: Option<Uuid>,
    /// Payload as enqueued.
    pub payload: Value,
    /// Current status.
    pub status: ActionStatus,
    /// Number of claims so far.
    pub attempts: u32,
    /// Holder while `CLAIMED`.
    pub claimed_by: Option<String>,
    /// Queue position: oldest first.
    pub created_at: DateTime<Utc>,
    /// Every claim, in order.
    pub claims: Vec<ClaimRecord>,
    /// Every accepted result, in order.
    pub results: Vec<ResultRecord>,
}

impl ActionRecord {
    /// The last reported failure code, if any.
    pub fn last_failure_code(&self) -> Option<&str> {
        self.results.last().and_then(|r| r.failure_code.as_deref())
    }

    fn to_claimed(&self) -> ClaimedAction {
        ClaimedAction {
            id: self.id,
            action_type: self.action_type.clone(),
            installation_id: self.installation_id,
            github_repo_id: self.github_repo_id,
            repo_full_name: self.repo_full_name.clone(),
            github_pr_number: self.github_pr_number,
            challenge_id: self.challenge_id,
            payload: self.payload.clone(),
            attempts: self.attempts,
            created_at: self.created_at,
        }
    }
}

/// Why a result report was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResultRefusal {
    /// No such action.
    NotFound,
    /// Not `CLAIMED` by this worker (409).
    NotClaimedByWorker,
}

/// What an ingest produced, for the HTTP layer.
pub(crate) enum IngestReply<T> {
    Ok(T),
    /// Delivery spent, then processing failed.
    ProcessingFailed(&'static str),
}

pub(crate) struct Store {
    policy: GatePolicy,
    spent_deliveries: HashSet<(String, String)>,
    /// Authenticated ingest requests per `(delivery_id, event_name)`, duplicates
    /// included: a count above 1 is a delivery the worker sent more than once.
    ingest_requests: HashMap<(String, String), u64>,
    events: VecDeque<IngestRecord>,
    max_events: usize,
    challenges: HashMap<(i64, i64), Uuid>,
    installations: BTreeMap<i64, InstallationRecord>,
    actions: HashMap<Uuid, ActionRecord>,
    /// PENDING actions by (created_at, enqueue sequence).
    pending: BTreeSet<(DateTime<Utc>, u64, Uuid)>,
    sequence: HashMap<Uuid, u64>,
    next_sequence: u64,
}

impl Store {
    pub(crate) fn new(policy: GatePolicy, max_events: usize) -> Self {
        Self {
            policy,
            spent_deliveries: HashSet::new(),
            ingest_requests: HashMap::new(),
            events: VecDeque::new(),
            max_events,
            challenges: HashMap::new(),
            installations: BTreeMap::new(),
            actions: HashMap::new(),
            pending: BTreeSet::new(),
            sequence: HashMap::new(),
            next_sequence: 0,
        }
    }

    pub(crate) fn set_policy(&mut self, policy: GatePolicy) {
        self.policy = policy;
    }

    /// Spends `(delivery_id, event_name)`; false when it was spent before. Counts the
    /// request either way ([`Store::ingest_requests`]).
    fn spend(&mut self, delivery_id: &str, event_name: &str) -> bool {
        *self
            .ingest_requests
            .entry((delivery_id.to_owned(), event_name.to_owned()))
            .or_default() += 1;
        self.spent_deliveries
            .insert((delivery_id.to_owned(), event_name.to_owned()))
    }

    fn record(&mut self, record: IngestRecord) {
        if self.events.len() >= self.max_events {
            self.events.pop_front();
        }
        self.events.push_back(record);
    }

    pub(crate) fn ingest_pull_request(
        &mut self,
        event: &PullRequestIngest,
        body: Value,
        now: DateTime<Utc>,
    ) -> IngestReply<PullRequestIngestResponse> {
        let mut record = IngestRecord {
            endpoint: IngestEndpoint::PullRequest,
            event_name: "pull_request".to_owned(),
            delivery_id: event.delivery_id.clone(),
            action: event.action.clone(),
            body,
            outcome: IngestOutcome::Duplicate,
            challenge_id: None,
            enqueued: Vec::new(),
            received_at: now,
        };
        // Spent before processing: a failure below still burns the delivery id.
        if !self.spend(&event.delivery_id, "pull_request") {
            self.record(record);
            return IngestReply::Ok(PullRequestIngestResponse {
                ingest_status: IngestStatus::Duplicate,
                challenge_id: None,
                enqueued_actions: 0,
            });
        }
        if let Some(reason) = unstorable_pull_request(event) {
            record.outcome = IngestOutcome::Failed;
            self.record(record);
            return IngestReply::ProcessingFailed(reason);
        }

        let pr = &event.pull_request;
        let gated_action = GATED_ACTIONS.contains(&event.action.as_str());
        let draft_ignored = pr.is_draft
            && !self
                .policy
                .gate_drafts_in
                .contains(&event.repository.full_name);
        if !gated_action || draft_ignored {
            record.outcome = IngestOutcome::Ignored;
            self.record(record);
            return IngestReply::Ok(PullRequestIngestResponse {
                ingest_status: IngestStatus::Ignored,
                challenge_id: None,
                enqueued_actions: 0,
            });
        }

        // One challenge per pull request, so later events upsert the same marked comment.
        let challenge_id = *self
            .challenges
            .entry((event.repository.id, pr.number))
            .or_insert_with(Uuid::new_v4);
        if self.policy.enqueue_actions {
            let action = self.gate_action(event, challenge_id, now);
            record.enqueued.push(self.enqueue(action, now));
        }
        record.outcome = IngestOutcome::Accepted;
        record.challenge_id = Some(challenge_id);
        let enqueued_actions = u32::try_from(record.enqueued.len()).unwrap_or(u32::MAX);
        self.record(record);
        IngestReply::Ok(PullRequestIngestResponse {
            ingest_status: IngestStatus::Accepted,
            challenge_id: Some(challenge_id),
            enqueued_actions,
        })
    }

    fn gate_action(
        &self,
        event: &PullRequestIngest,
        challenge_id: Uuid,
        now: DateTime<Utc>,
    ) -> NewAction {
        let pr = &event.pull_request;
        let login = &pr.user.login;
        let marker = gate_marker(challenge_id);
        let mut action = if self.policy.close_pr_authors.contains(login) {
            NewAction::close_with_comment(
                event.installation_id,
                event.repository.id,
                &event.repository.full_name,
                pr.number,
                &format!(
                    "Closing this pull request: @{login} is not allowed to open pull \
                     requests in this repository."
                ),
                &marker,
                "AUTHOR_BLOCKED",
            )
        } else {
            NewAction::upsert_comment(
                event.installation_id,
                event.repository.id,
                &event.repository.full_name,
                pr.number,
                &format!(
                    "### Stake required\n\n@{login}, this repository asks contributors to \
                     stake before review. Challenge `{challenge_id}`, commit `{sha}`.",
                    sha = pr.head_sha
                ),
                &marker,
            )
        };
        action.challenge_id = Some(challenge_id);
        action.created_at = Some(now);
        action
    }

    pub(crate) fn ingest_installation_sync(
        &mut self,
        event: &InstallationSyncIngest,
        body: Value,
        now: DateTime<Utc>,
    ) -> IngestReply<InstallationSyncResponse> {
        let mut record = IngestRecord {
            endpoint: IngestEndpoint::InstallationSync,
            event_name: event.event_name.clone(),
            delivery_id: event.delivery_id.clone(),
            action: event.action.clone(),
            body,
            outcome: IngestOutcome::Duplicate,
            challenge_id: None,
            enqueued: Vec::new(),
            received_at: now,
        };
        let not_updated = |ingest_status| {
            IngestReply::Ok(InstallationSyncResponse {
                ingest_status,
                updated_installation_id: None,
                updated_repositories: 0,
            })
        };
        if !self.spend(&event.delivery_id, &event.event_name) {
            self.record(record);
            return not_updated(IngestStatus::Duplicate);
        }
        if let Some(reason) = unstorable_installation_sync(event) {
            record.outcome = IngestOutcome::Failed;
            self.record(record);
            return IngestReply::ProcessingFailed(reason);
        }
        let known = matches!(
            (event.event_name.as_str(), event.action.as_str()),
            (
                "installation",
                "created" | "deleted" | "suspend" | "unsuspend"
            ) | ("installation_repositories", "added" | "removed")
        );
        if !known {
            record.outcome = IngestOutcome::Ignored;
            self.record(record);
            return not_updated(IngestStatus::Ignored);
        }

        let id = event.installation.id;
        let installation = self
            .installations
            .entry(id)
            .or_insert_with(|| InstallationRecord {
                id,
                account_login: String::new(),
                account_type: String::new(),
                installed: true,
                suspended: false,
                repositories: BTreeMap::new(),
            });
        installation
            .account_login
            .clone_from(&event.installation.account_login);
        installation
            .account_type
            .clone_from(&event.installation.account_type);
        match event.action.as_str() {
            "created" => {
                installation.installed = true;
                installation.suspended = false;
            }
            "deleted" => installation.installed = false,
            "suspend" => installation.suspended = true,
            "unsuspend" => installation.suspended = false,
            _ => {}
        }
        let mut updated = 0u32;
        for repo in event.repositories.iter().chain(&event.repositories_added) {
            installation
                .repositories
                .insert(repo.id, repo.full_name.clone());
            updated += 1;
        }
        for repo in &event.repositories_removed {
            installation.repositories.remove(&repo.id);
            updated += 1;
        }
        record.outcome = IngestOutcome::Accepted;
        self.record(record);
        IngestReply::Ok(InstallationSyncResponse {
            ingest_status: IngestStatus::Accepted,
            updated_installation_id: Some(id),
            updated_repositories: updated,
        })
    }

    pub(crate) fn enqueue(&mut self, action: NewAction, now: DateTime<Utc>) -> Uuid {
        let id = Uuid::new_v4();
        let created_at = action.created_at.unwrap_or(now);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.sequence.insert(id, sequence);
        self.pending.insert((created_at, sequence, id));
        self.actions.insert(
            id,
            ActionRecord {
                id,
                action_type: action.action_type,
                installation_id: action.installation_id,
                github_repo_id: action.github_repo_id,
                repo_full_name: action.repo_full_name,
                github_pr_number: action.github_pr_number,
                challenge_id: action.challenge_id,
                payload: action.payload,
                status: ActionStatus::Pending,
                attempts: 0,
                claimed_by: None,
                created_at,
                claims: Vec::new(),
                results: Vec::new(),
            },
        );
        id
    }

    /// Claims the oldest PENDING actions for `worker_id`; `limit` is clamped to 1..=100.
    /// The returned order is reversed on purpose: the contract guarantees none.
    pub(crate) fn claim(
        &mut self,
        worker_id: &str,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Vec<ClaimedAction> {
        let limit = clamp_claim_limit(limit);
        let chosen: Vec<_> = self.pending.iter().take(limit).copied().collect();
        let mut claimed = Vec::with_capacity(chosen.len());
        for entry in chosen {
            self.pending.remove(&entry);
            let Some(action) = self.actions.get_mut(&entry.2) else {
                continue;
            };
            action.status = ActionStatus::Claimed;
            action.attempts += 1;
            action.claimed_by = Some(worker_id.to_owned());
            action.claims.push(ClaimRecord {
                worker_id: worker_id.to_owned(),
                at: now,
            });
            claimed.push(action.to_claimed());
        }
        claimed.reverse();
        claimed
    }

    pub(crate) fn report(
        &mut self,
        id: Uuid,
        worker_id: &str,
        outcome: Outcome,
        failure_code: Option<String>,
        failure_message: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<ActionStatus, ResultRefusal> {
        let action = self.actions.get_mut(&id).ok_or(ResultRefusal::NotFound)?;
        if action.status != ActionStatus::Claimed || action.claimed_by.as_deref() != Some(worker_id)
        {
            return Err(ResultRefusal::NotClaimedByWorker);
        }
        action.status = match outcome {
            Outcome::Succeeded => ActionStatus::Done,
            // No backoff, no not-before, no attempt cap: the real backend's behaviour.
            Outcome::RetryableFailure => ActionStatus::Pending,
            Outcome::Failed => ActionStatus::Failed,
        };
        action.claimed_by = None;
        action.results.push(ResultRecord {
            worker_id: worker_id.to_owned(),
            outcome,
            failure_code,
            failure_message,
            at: now,
        });
        if action.status == ActionStatus::Pending {
            let sequence = self.sequence.get(&id).copied().unwrap_or_default();
            self.pending.insert((action.created_at, sequence, id));
        }
        Ok(action.status)
    }

    pub(crate) fn action(&self, id: Uuid) -> Option<ActionRecord> {
        self.actions.get(&id).cloned()
    }

    /// All actions, oldest first.
    pub(crate) fn actions(&self) -> Vec<ActionRecord> {
        let mut all: Vec<_> = self.actions.values().cloned().collect();
        all.sort_by_key(|a| (a.created_at, self.sequence.get(&a.id).copied()));
        all
    }

    pub(crate) fn count_with_status(&self, status: ActionStatus) -> usize {
        match status {
            ActionStatus::Pending => self.pending.len(),
            _ => self.actions.values().filter(|a| a.status == status).count(),
        }
    }

    /// Ingest requests per delivery id of `event_name` (`pull_request`, `installation`,
    /// ...), duplicates included, not bounded like [`Store::events`].
    pub(crate) fn ingest_requests(&self, event_name: &str) -> BTreeMap<String, u64> {
        self.ingest_requests
            .iter()
            .filter(|((_, event), _)| event == event_name)
            .map(|((delivery, _), n)| (delivery.clone(), *n))
            .collect()
    }

    pub(crate) fn events(&self) -> Vec<IngestRecord> {
        self.events.iter().cloned().collect()
    }

    pub(crate) fn installations(&self) -> Vec<InstallationRecord> {
        self.installations.values().cloned().collect()
    }
}

/// Clamps a requested claim limit to the backend's 1..=100.
pub fn clamp_claim_limit(limit: i64) -> usize {
    let (low, high) = CLAIM_LIMIT_RANGE;
    // Both bounds are small positive numbers, so the cast is lossless.
    limit.clamp(low, high) as usize
}

/// Values the backend cannot store: the first one found, as an error message. The real
/// backend is only known to overflow on `head_sha`; the simulator treats every value the
/// contract tells the worker to reject (§1.6) the same way, so forwarding one is visible.
fn unstorable_pull_request(event: &PullRequestIngest) -> Option<&'static str> {
    let pr = &event.pull_request;
    if pr.head_sha.chars().count() > HEAD_SHA_COLUMN_CHARS {
        return Some("value too long for type character varying(40)");
    }
    if event.installation_id <= 0 || pr.number <= 0 || pr.id <= 0 || pr.user.id <= 0 {
        return Some("violates check constraint: ids must be positive");
    }
    if pr.user.login.is_empty() {
        return Some("violates check constraint: empty login");
    }
    unstorable_repository(&event.repository)
}

fn unstorable_installation_sync(event: &InstallationSyncIngest) -> Option<&'static str> {
    if event.installation.id <= 0 {
        return Some("violates check constraint: ids must be positive");
    }
    if event.installation.account_login.is_empty() {
        return Some("violates check constraint: empty account login");
    }
    event
        .repositories
        .iter()
        .chain(&event.repositories_added)
        .chain(&event.repositories_removed)
        .find_map(unstorable_repository)
}

fn unstorable_repository(repo: &RepositoryRef) -> Option<&'static str> {
    if repo.id <= 0 {
        return Some("violates check constraint: ids must be positive");
    }
    if repo.full_name.is_empty() {
        return Some("violates check constraint: empty repository name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::wire::{PullRequestRef, UserRef};
    use super::*;

    fn pr_event(delivery: &str, action: &str, draft: bool, login: &str) -> PullRequestIngest {
        PullRequestIngest {
            delivery_id: delivery.to_owned(),
            event_time: Utc::now(),
            installation_id: 7,
            action: action.to_owned(),
            repository: RepositoryRef {
                id: 99,
                full_name: "org/repo".to_owned(),
            },
            pull_request: PullRequestRef {
                number: 42,
                id: 1001,
                html_url: "https://github.com/org/repo/pull/42".to_owned(),
                is_draft: draft,
                user: UserRef {
                    id: 5,
                    login: login.to_owned(),
                },
                head_sha: "a".repeat(40),
            },
        }
    }

    fn store() -> Store {
        let mut policy = GatePolicy::default();
        policy.close_pr_authors.insert("spammer".to_owned());
        Store::new(policy, 100)
    }

    fn status(reply: IngestReply<PullRequestIngestResponse>) -> PullRequestIngestResponse {
        match reply {
            IngestReply::Ok(r) => r,
            IngestReply::ProcessingFailed(m) => panic!("processing failed: {m}"),
        }
    }

    #[test]
    fn one_challenge_per_pull_request_and_one_action_per_accepted_event() {
        let mut s = store();
        let now = Utc::now();
        let a =
            status(s.ingest_pull_request(&pr_event("d1", "opened", false, "c"), Value::Null, now));
        let b = status(s.ingest_pull_request(
            &pr_event("d2", "synchronize", false, "c"),
            Value::Null,
            now,
        ));
        assert_eq!(a.ingest_status, IngestStatus::Accepted);
        assert_eq!(a.enqueued_actions, 1);
        assert_eq!(a.challenge_id, b.challenge_id);
        let actions = s.actions();
        assert_eq!(actions.len(), 2);
        let marker = gate_marker(a.challenge_id.unwrap());
        assert_eq!(actions[0].action_type, UPSERT_PR_COMMENT);
        assert_eq!(actions[0].payload["comment_marker"], marker.as_str());
    }

    #[test]
    fn blocked_authors_get_a_close_action() {
        let mut s = store();
        let r = status(s.ingest_pull_request(
            &pr_event("d1", "opened", false, "spammer"),
            Value::Null,
            Utc::now(),
        ));
        assert_eq!(r.enqueued_actions, 1);
        let action = &s.actions()[0];
        assert_eq!(action.action_type, CLOSE_PR_WITH_COMMENT);
        assert_eq!(action.payload["reason"], "AUTHOR_BLOCKED");
    }

    #[test]
    fn drafts_and_other_actions_are_ignored_but_spent() {
        let mut s = store();
        let now = Utc::now();
        let draft = pr_event("d1", "opened", true, "c");
        assert_eq!(
            status(s.ingest_pull_request(&draft, Value::Null, now)).ingest_status,
            IngestStatus::Ignored
        );
        assert_eq!(
            status(s.ingest_pull_request(&draft, Value::Null, now)).ingest_status,
            IngestStatus::Duplicate
        );
        let closed = pr_event("d2", "closed", false, "c");
        assert_eq!(
            status(s.ingest_pull_request(&closed, Value::Null, now)).ingest_status,
            IngestStatus::Ignored
        );
        assert!(s.actions().is_empty());
    }

    #[test]
    fn claim_takes_the_oldest_and_a_retryable_failure_requeues_at_the_head() {
        let mut s = store();
        let t0 = Utc::now();
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut a = NewAction::upsert_comment(1, 2, "o/r", 3, "m", "k");
            a.created_at = Some(t0 + chrono::Duration::seconds(i));
            ids.push(s.enqueue(a, t0));
        }
        let mut first: Vec<_> = s.claim("w1", 2, t0).into_iter().map(|a| a.id).collect();
        first.sort_by_key(|id| ids.iter().position(|x| x == id));
        assert_eq!(first, ids[..2]);

        assert_eq!(
            s.report(ids[0], "w1", Outcome::RetryableFailure, None, None, t0),
            Ok(ActionStatus::Pending)
        );
        let again = s.claim("w2", 1, t0);
        assert_eq!(again[0].id, ids[0]);
        assert_eq!(again[0].attempts, 2);
    }

    #[test]
    fn only_the_holder_may_report_and_only_once() {
        let mut s = store();
        let now = Utc::now();
        let id = s.enqueue(NewAction::upsert_comment(1, 2, "o/r", 3, "m", "k"), now);
        assert_eq!(
            s.report(id, "w1", Outcome::Succeeded, None, None, now),
            Err(ResultRefusal::NotClaimedByWorker)
        );
        s.claim("w1", 10, now);
        assert_eq!(
            s.report(id, "w2", Outcome::Succeeded, None, None, now),
            Err(ResultRefusal::NotClaimedByWorker)
        );
        assert_eq!(
            s.report(id, "w1", Outcome::Failed, Some("X".into()), None, now),
            Ok(ActionStatus::Failed)
        );
        assert_eq!(
            s.report(id, "w1", Outcome::Failed, None, None, now),
            Err(ResultRefusal::NotClaimedByWorker)
        );
        assert_eq!(
            s.report(Uuid::new_v4(), "w1", Outcome::Failed, None, None, now),
            Err(ResultRefusal::NotFound)
        );
        assert_eq!(s.action(id).unwrap().last_failure_code(), Some("X"));
    }

    #[test]
    fn claim_limit_is_clamped() {
        assert_eq!(clamp_claim_limit(-3), 1);
        assert_eq!(clamp_claim_limit(0), 1);
        assert_eq!(clamp_claim_limit(25), 25);
        assert_eq!(clamp_claim_limit(1000), 100);
    }

    #[test]
    fn recorded_events_are_bounded() {
        let mut s = Store::new(GatePolicy::default(), 2);
        for d in ["a", "b", "c"] {
            s.ingest_pull_request(&pr_event(d, "closed", false, "x"), Value::Null, Utc::now());
        }
        let ids: Vec<_> = s.events().into_iter().map(|e| e.delivery_id).collect();
        assert_eq!(ids, ["b", "c"]);
    }
}
