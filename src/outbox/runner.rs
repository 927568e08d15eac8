//! The outbox loop: claim, execute concurrently (bounded), report each action once.
//!
//! Nothing claimed may stay claimed (contract §1.4, §1.6): every claimed id is logged,
//! each action has exactly one task that ends in one report, and on shutdown the loop
//! stops claiming, releases what has not started and waits for the rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use futures::future::Shared;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::action::{self, age_seconds};
use super::executor::{Executor, Report, Slots};
use super::journal::ClaimJournal;
use super::metrics::OutboxMetrics;
use super::wake::ClaimWake;
use crate::backend::types::{ClaimedAction, Outcome};
use crate::backend::{BackendClient, CallPolicy};
use crate::contract::FailureCode;
use crate::shutdown::{Phase, Shutdown};

/// Settings of the loop (from `OUTBOX_*` and `SHUTDOWN_TIMEOUT_SECONDS`).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub worker_id: String,
    pub poll_interval: Duration,
    pub claim_limit: u32,
    /// Actions executed at once.
    pub concurrency: usize,
    /// Total time a shutdown may take before unfinished actions are released.
    pub shutdown_timeout: Duration,
    /// Where claimed actions are recorded before they run; `None` runs without one.
    pub journal: Option<Arc<ClaimJournal>>,
    /// Claim at once when the webhook ingress asks (`OUTBOX_CLAIM_ON_EVENT`); `None`
    /// claims only on the poll interval.
    pub wake: Option<Arc<ClaimWake>>,
}

/// Time kept at the end of the shutdown budget for the release reports themselves.
const REPORT_RESERVE: Duration = Duration::from_secs(5);

/// One attempt per claim, never retried within the poll cycle: the backend marks the
/// actions `CLAIMED` before it answers, so a claim whose answer is lost (timeout,
/// reset) may already hold a batch, and each resend could strand one more.
const CLAIM_POLICY: CallPolicy = CallPolicy {
    attempt_timeout: Duration::from_secs(8),
    deadline: Duration::from_secs(9),
    max_attempts: 1,
};

/// Result reports during shutdown must fit in what is left of the grace period.
const SHUTDOWN_REPORT_POLICY: CallPolicy = CallPolicy {
    attempt_timeout: Duration::from_secs(2),
    deadline: Duration::from_secs(4),
    max_attempts: 3,
};

/// Actions of one pull request and marker run one after another, in `created_at`
/// order: run together, each would find no comment and create its own, and an older
/// text could land last. Each action waits for the one claimed before it.
/// Completes when an action has finished (or its task is gone).
type Finished = Shared<oneshot::Receiver<()>>;

#[derive(Default)]
struct MarkerQueue {
    /// Per key: the generation and completion of the last action queued.
    tails: parking_lot::Mutex<HashMap<String, (u64, Finished)>>,
    next: std::sync::atomic::AtomicU64,
}

impl MarkerQueue {
    /// Puts an action at the tail of its key's queue: returns what to wait for (the
    /// previous action's completion) and a ticket to release when done.
    fn enqueue(&self, key: String) -> (Option<Finished>, QueueTicket) {
        let (done, finished) = oneshot::channel();
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let previous = self
            .tails
            .lock()
            .insert(key.clone(), (generation, finished.shared()))
            .map(|(_, rx)| rx);
        (
            previous,
            QueueTicket {
                key,
                generation,
                _done: done,
            },
        )
    }

    /// Forgets a key whose last action has finished.
    fn finish(&self, ticket: QueueTicket) {
        let mut tails = self.tails.lock();
        if tails
            .get(&ticket.key)
            .is_some_and(|(g, _)| *g == ticket.generation)
        {
            tails.remove(&ticket.key);
        }
        // Dropping the ticket completes the successor's wait.
    }
}

struct QueueTicket {
    key: String,
    generation: u64,
    _done: oneshot::Sender<()>,
}

struct SharedState {
    backend: BackendClient,
    executor: Executor,
    metrics: OutboxMetrics,
    worker_id: String,
    /// Execution slots; their [`Slots::busy`] (actions calling GitHub or waiting for a
    /// slot) bounds the claiming. Held, queued and rate-limited actions do not count:
    /// they must not stop the claiming of others.
    slots: Slots,
    queue: MarkerQueue,
    /// The outbox's own drain (the worker's [`Phase::StopAccepting`] only ends its
    /// claims): [`Phase::Drain`] interrupts waits (hold, backoff, rate limit) →
    /// release; [`Phase::Abort`] abandons GitHub calls still running when the budget
    /// ends → release.
    phases: Shutdown,
    journal: Option<Arc<ClaimJournal>>,
    /// Actions this worker holds (claimed, or listed by the journal at start) and has
    /// not reported yet, by id with how many tasks hold it; what is left here when the
    /// shutdown budget ends is logged as left claimed.
    held: parking_lot::Mutex<HashMap<String, usize>>,
}

impl SharedState {
    fn hold(&self, action_id: &str) {
        *self.held.lock().entry(action_id.to_owned()).or_default() += 1;
    }

    fn unhold(&self, action_id: &str) {
        let mut held = self.held.lock();
        if let Some(n) = held.get_mut(action_id) {
            *n -= 1;
            if *n == 0 {
                held.remove(action_id);
            }
        }
    }
}

/// Runs the loop until `shutdown` enters [`Phase::StopAccepting`], then drains. Returns
/// once every claimed action has been reported (or, if the backend cannot be reached,
/// logged as left claimed).
pub async fn run(
    backend: BackendClient,
    executor: Executor,
    metrics: OutboxMetrics,
    settings: OutboxSettings,
    shutdown: Shutdown,
) {
    let shared = Arc::new(SharedState {
        backend,
        executor,
        metrics,
        worker_id: settings.worker_id.clone(),
        slots: Slots::new(settings.concurrency),
        queue: MarkerQueue::default(),
        phases: Shutdown::new(),
        journal: settings.journal.clone(),
        held: parking_lot::Mutex::new(HashMap::new()),
    });
    // The shutdown budget runs from the signal, not from the end of a claim that was
    // under way then. Held actions are released only once no claim is in flight, or
    // that claim could take them straight back; a claim still unanswered when the
    // releases need the rest of the budget is abandoned.
    let signalled_at = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    {
        let (shutdown, at) = (shutdown.clone(), Arc::clone(&signalled_at));
        tokio::spawn(async move {
            shutdown.entered(Phase::StopAccepting).await;
            at.lock().get_or_insert_with(Instant::now);
        });
    }
    let budget = settings.shutdown_timeout;
    let claim_cutoff = budget.saturating_sub(report_reserve(budget));
    // Bounds: actions executing or about to (two claims' worth), and all actions held
    // by this worker (a ceiling on memory and on how much of the queue one replica takes).
    let claim_limit = settings.claim_limit as usize;
    let max_active = claim_limit * 2;
    let max_held = claim_limit * 20;
    let mut tasks: JoinSet<()> = JoinSet::new();
    tracing::info!(
        event = "outbox_started",
        worker_id = %settings.worker_id,
        poll_interval_ms = settings.poll_interval.as_millis() as u64,
        claim_limit = settings.claim_limit,
        claim_journal = shared.journal.as_ref().map(|j| j.dir().display().to_string()),
        "outbox started"
    );
    if shared.journal.is_none() {
        tracing::warn!(
            event = "claim_journal_disabled",
            "no WORKER_STATE_DIR or STATE_DIRECTORY: actions held by a killed worker stay claimed"
        );
    }
    tokio::select! {
        () = release_journalled(&shared) => {}
        () = shutdown.entered(Phase::StopAccepting) => {}
    }

    while !shutdown.has_entered(Phase::StopAccepting) {
        while let Some(done) = tasks.try_join_next() {
            log_task_end(done);
        }
        let room = max_active
            .saturating_sub(shared.slots.busy())
            .min(max_held.saturating_sub(tasks.len()));
        if room == 0 {
            tokio::select! {
                done = tasks.join_next() => { if let Some(done) = done { log_task_end(done); } }
                () = tokio::time::sleep(settings.poll_interval) => {}
                () = shutdown.entered(Phase::StopAccepting) => break,
            }
            continue;
        }
        let limit = settings.claim_limit.min(room as u32);
        let sent_at = Utc::now();
        let claimed = tokio::select! {
            claimed = claim(&shared, limit, &mut tasks) => claimed,
            () = after_signal(&shutdown, &signalled_at, claim_cutoff) => {
                shared.metrics.errors.inc();
                claim_answer_lost(
                    &shared,
                    limit,
                    sent_at,
                    "abandoned unanswered: the shutdown budget needs the rest of its time",
                );
                Claimed::AnswerLost
            }
        };
        if matches!(claimed, Claimed::Some { count, executable } if count as u32 >= limit && executable > 0)
        {
            // More is waiting: claim again at once (the signer moves to the next second).
            // Not when the whole batch is held for rate limits: the next claim would
            // find only more of the same, so it waits for the poll.
            continue;
        }
        if matches!(claimed, Claimed::AnswerLost) {
            // Not even a webhook's wake-up resends it within this cycle.
            tokio::select! {
                () = tokio::time::sleep(settings.poll_interval) => {}
                () = shutdown.entered(Phase::StopAccepting) => {}
            }
            continue;
        }
        let woken = async {
            match &settings.wake {
                Some(wake) => wake.requested().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = woken => {}
            () = shutdown.entered(Phase::StopAccepting) => {}
        }
    }

    let signal = *signalled_at.lock().get_or_insert_with(Instant::now);
    drain(&shared, tasks, signal, budget).await;
}

/// The end of the shutdown budget kept for result reports: [`REPORT_RESERVE`], at most
/// half the budget.
fn report_reserve(budget: Duration) -> Duration {
    REPORT_RESERVE.min(budget / 2)
}

/// Completes `offset` after the shutdown signal ([`Phase::StopAccepting`]; pending until
/// it comes).
async fn after_signal(
    shutdown: &Shutdown,
    signalled_at: &parking_lot::Mutex<Option<Instant>>,
    offset: Duration,
) {
    shutdown.entered(Phase::StopAccepting).await;
    let at = *signalled_at.lock().get_or_insert_with(Instant::now);
    tokio::time::sleep_until((at + offset).into()).await;
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        tracing::error!(event = "outbox_task_failed", error = %err, "outbox task failed");
    }
}

/// Reports every action the journal lists (a previous run with this `WORKER_ID` was
/// killed holding them) as `RETRYABLE_FAILURE` / `WORKER_RESTARTED`, all at once.
async fn release_journalled(shared: &Arc<SharedState>) {
    let Some(journal) = &shared.journal else {
        return;
    };
    let entries = match journal.entries() {
        Ok(entries) => entries,
        Err(err) => {
            // Claiming stays stopped until the directory can be written (claim()).
            tracing::error!(
                event = "claim_journal_unreadable",
                error = %err,
                "the claim journal cannot be read"
            );
            return;
        }
    };
    if entries.is_empty() {
        return;
    }
    tracing::info!(
        event = "claim_journal_releasing",
        count = entries.len(),
        action_ids = %entries.join(","),
        "releasing the actions a previous run of this worker held"
    );
    for id in &entries {
        shared.hold(id);
    }
    futures::future::join_all(entries.iter().map(|id| async move {
        journal.count_released();
        let report = Report::retryable(
            FailureCode::WorkerRestarted,
            "the worker restarted while holding the action",
        );
        report_once(shared, id, report).await;
    }))
    .await;
}

/// What one claim gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claimed {
    /// `count` actions, each given to a task; `executable` of them are not held for a
    /// rate-limited installation.
    Some { count: usize, executable: usize },
    /// Nothing: the claim failed before the backend could carry it out, or was
    /// refused, or the claim journal is unwritable.
    Failed,
    /// The backend may have carried the claim out but its answer was lost.
    AnswerLost,
}

/// One claim; spawns a task per action.
async fn claim(shared: &Arc<SharedState>, limit: u32, tasks: &mut JoinSet<()>) -> Claimed {
    if let Some(journal) = &shared.journal {
        let writable = {
            let journal = Arc::clone(journal);
            tokio::task::spawn_blocking(move || journal.recheck())
                .await
                .unwrap_or(false)
        };
        if !writable {
            tracing::error!(
                event = "outbox_claiming_paused",
                error = %journal.problem().map(|p| p.to_string()).unwrap_or_default(),
                "the claim journal cannot be written; not claiming"
            );
            return Claimed::Failed;
        }
    }
    let sent_at = Utc::now();
    let claimed = shared
        .backend
        .claim(&shared.worker_id, limit, CLAIM_POLICY)
        .await;
    let mut actions = match claimed {
        Ok(actions) => actions,
        Err(err) if err.answer_lost => {
            shared.metrics.errors.inc();
            claim_answer_lost(shared, limit, sent_at, &err.error.to_string());
            return Claimed::AnswerLost;
        }
        Err(err) => {
            shared.metrics.errors.inc();
            tracing::error!(event = "outbox_claim_failed", error = %err, "outbox claim failed");
            return Claimed::Failed;
        }
    };
    shared.metrics.outbox_claims.inc();
    // One claim holding an id twice is still one action, reported once.
    let listed = actions.len();
    let mut unique = std::collections::HashSet::new();
    actions.retain(|a| unique.insert(a.id.clone()));
    if actions.len() < listed {
        tracing::warn!(
            event = "outbox_claim_duplicate_ids",
            listed,
            unique = actions.len(),
            "the claim listed an action more than once; each runs and is reported once"
        );
    }
    for action in &actions {
        shared.hold(&action.id);
    }
    let now = Utc::now();
    let lag = actions
        .iter()
        .filter_map(|a| age_seconds(a, now))
        .fold(0.0_f64, f64::max);
    shared.metrics.outbox_lag.set(lag);
    let count = actions.len();
    if count > 0 {
        tracing::info!(
            event = "outbox_claimed",
            count,
            lag_seconds = lag,
            action_ids = %actions.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(","),
            "outbox actions claimed"
        );
    }
    if let Some(journal) = &shared.journal
        && !actions.is_empty()
    {
        let ids: Vec<String> = actions.iter().map(|a| a.id.clone()).collect();
        let recorded = {
            let journal = Arc::clone(journal);
            tokio::task::spawn_blocking(move || journal.record(&ids)).await
        };
        let failure = match recorded {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(err.to_string()),
        };
        if let Some(error) = failure {
            // Never execute what a crash could leave claimed: give them back now.
            shared.metrics.errors.inc();
            tracing::error!(
                event = "claim_journal_write_failed",
                error = %error,
                count,
                "the claim journal cannot be written"
            );
            for claimed in actions {
                let shared = Arc::clone(shared);
                tasks.spawn(async move {
                    let report = Report::retryable(
                        FailureCode::ClaimJournalUnwritable,
                        "the worker could not record the claim; not executed",
                    );
                    report_once(&shared, &claimed.id, report).await;
                });
            }
            return Claimed::Failed;
        }
    }
    // The backend does not guarantee the order of a claim; queue by creation time so
    // that actions on one comment apply oldest first.
    actions.sort_by_key(|a| a.created_at.clone().unwrap_or_default());
    let mut executable = 0;
    for claimed in actions {
        shared.metrics.actions_claimed.inc();
        shared.metrics.actions_in_flight.inc();
        let valid = action::validate(&claimed);
        if valid
            .as_ref()
            .is_ok_and(|v| !shared.executor.is_rate_limited(v.installation_id))
        {
            executable += 1;
        }
        let queued = valid.as_ref().ok().map(|v| {
            shared.queue.enqueue(format!(
                "{}/{}#{}/{}",
                v.installation_id, v.repo, v.pr_number, v.marker
            ))
        });
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            let (previous, ticket) = match queued {
                Some((previous, ticket)) => (previous, Some(ticket)),
                None => (None, None),
            };
            handle(&shared, claimed, valid, previous).await;
            if let Some(ticket) = ticket {
                shared.queue.finish(ticket);
            }
            shared.metrics.actions_in_flight.dec();
        });
    }
    Claimed::Some { count, executable }
}

/// Counts and logs a claim the backend may have carried out without the worker seeing
/// its answer: up to `limit` actions may now be `CLAIMED` by this worker id, and only
/// the backend knows which (claimed around `sent_at`; release them with
/// `sitg-bot release --worker-id`).
fn claim_answer_lost(
    shared: &SharedState,
    limit: u32,
    sent_at: chrono::DateTime<Utc>,
    error: &str,
) {
    shared.metrics.claim_answers_lost.inc();
    tracing::error!(
        event = "outbox_claim_answer_lost",
        worker_id = %shared.worker_id,
        limit,
        sent_at = %sent_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        error,
        "the backend may have claimed up to `limit` actions for this worker whose ids never \
         arrived; they stay CLAIMED until released (sitg-bot release --worker-id); not \
         claiming again before the next poll"
    );
}

/// Validate → execute → report, exactly once. A panic while executing is caught and
/// reported as a retryable failure: an unreported action would stay claimed for ever.
async fn handle(
    shared: &SharedState,
    claimed: ClaimedAction,
    valid: Result<action::ValidAction, action::InvalidAction>,
    previous: Option<Finished>,
) {
    let started = Instant::now();
    let (report, kind) = match valid {
        Err(invalid) => (Report::failed(invalid.code, invalid.message), None),
        Ok(valid) => {
            let work =
                std::panic::AssertUnwindSafe(execute(shared, &valid, previous)).catch_unwind();
            let report = tokio::select! {
                r = work => r.unwrap_or_else(|_| {
                    tracing::error!(
                        event = "action_execution_panicked",
                        action_id = %valid.id,
                        "action execution panicked"
                    );
                    Report::retryable(FailureCode::ExecutionError, "the worker failed internally while executing the action")
                }),
                () = shared.phases.entered(Phase::Abort) => Report::retryable(
                    FailureCode::WorkerShutdown,
                    "worker stopped while the action was executing",
                ),
            };
            (report, Some(valid.kind))
        }
    };
    if let Some(kind) = kind {
        shared
            .metrics
            .action_duration
            .with_label_values(&[kind.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    report_once(shared, &claimed.id, report).await;
}

/// Waits for the previous action on the same comment, holds a re-claimed action, then
/// executes (taking an execution slot per GitHub attempt, none while waiting). Every
/// wait ends on shutdown with a release.
async fn execute(
    shared: &SharedState,
    valid: &action::ValidAction,
    previous: Option<Finished>,
) -> Report {
    if let Some(previous) = previous {
        tokio::select! {
            // Completed or dropped: either way the predecessor is done.
            _ = previous => {}
            () = shared.phases.entered(Phase::Drain) => return Report::released(),
        }
    }
    let hold = shared.executor.policy().hold_for(valid.attempts);
    if !Executor::pause(hold, shared.phases.token(Phase::Drain)).await {
        return Report::released();
    }
    shared
        .executor
        .run(valid, shared.phases.token(Phase::Drain), &shared.slots)
        .await
}

/// Pause between report rounds while the backend cannot take results.
const REPORT_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How long a result is kept trying before it is given up (and logged as stuck).
const REPORT_GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Reports `report` for `action_id` (retrying while the backend cannot be reached) and
/// stops holding it.
async fn report_once(shared: &SharedState, action_id: &str, report: Report) {
    report_result(shared, action_id, report).await;
    shared.unhold(action_id);
}

async fn report_result(shared: &SharedState, action_id: &str, report: Report) {
    let m = &shared.metrics;
    match report.outcome {
        Outcome::Succeeded => m.actions_success.inc(),
        Outcome::RetryableFailure => m.actions_retryable_failure.inc(),
        Outcome::Failed => m.actions_failed.inc(),
    }
    if let Some(code) = report.failure_code {
        m.action_failures_by_code
            .with_label_values(&[code.as_str()])
            .inc();
    }
    let request = BackendClient::result_request(
        &shared.worker_id,
        report.outcome,
        report.failure_code.map(FailureCode::as_str),
        report.failure_message.as_deref(),
    );
    let started = Instant::now();
    loop {
        let stopping = shared.phases.has_entered(Phase::Drain);
        let policy = if stopping {
            SHUTDOWN_REPORT_POLICY
        } else {
            CallPolicy::OUTBOX
        };
        let err = match shared
            .backend
            .report_result(action_id, &request, policy)
            .await
        {
            Ok(status) => {
                tracing::info!(
                    event = "action_reported",
                    action_id,
                    outcome = report.outcome.as_str(),
                    failure_code = report.failure_code.map(FailureCode::as_str),
                    failure_message = report.failure_message.as_deref(),
                    status = status.map(|s| s.status),
                    "action result reported"
                );
                forget(shared, action_id);
                return;
            }
            Err(err) => err,
        };
        m.errors.inc();
        // An outage of the backend must not lose the result: keep trying while the
        // worker runs (the action stays claimed meanwhile, which is what the backend
        // would show anyway). Refusals (403, 409…) will not change; stop at once.
        let keep_trying = !stopping
            && (err.is_retryable()
                || matches!(err, crate::backend::BackendError::DeadlineExceeded { .. }))
            && started.elapsed() < REPORT_GIVE_UP_AFTER;
        if keep_trying {
            tracing::warn!(
                event = "action_report_delayed",
                action_id,
                error = %err,
                "action result not reported yet; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(REPORT_RETRY_PAUSE) => continue,
                () = shared.phases.entered(Phase::Drain) => continue,
            }
        }
        if !err.is_retryable()
            && !matches!(err, crate::backend::BackendError::DeadlineExceeded { .. })
        {
            forget(shared, action_id);
        }
        if matches!(err.status(), Some(404 | 409)) {
            // Not claimed by this worker (already reported, or another's) or unknown:
            // nothing is left to release.
            tracing::warn!(
                event = "action_report_refused",
                action_id,
                worker_id = %shared.worker_id,
                outcome = report.outcome.as_str(),
                error = %err,
                "the backend says this worker does not hold the action"
            );
            return;
        }
        // The backend has no lease expiry: say loudly which action is stuck so an
        // operator can release it with this worker id.
        tracing::error!(
            event = "action_left_claimed",
            action_id,
            worker_id = %shared.worker_id,
            outcome = report.outcome.as_str(),
            error = %err,
            "action result not accepted; the action stays claimed"
        );
        return;
    }
}

/// Drops a reported action from the journal.
fn forget(shared: &SharedState, action_id: &str) {
    if let Some(journal) = &shared.journal
        && let Err(err) = journal.remove(action_id)
    {
        tracing::warn!(
            event = "claim_journal_remove_failed",
            action_id,
            error = %err,
            "could not remove an action from the claim journal"
        );
    }
}

/// Stopping the claims is done by the caller; here: release waiting actions at once,
/// give running ones the budget (from `signal`) minus a reserve for reporting, then
/// abandon them; at the end of the budget, stop waiting for reports and log every
/// action still held as left claimed.
async fn drain(
    shared: &Arc<SharedState>,
    mut tasks: JoinSet<()>,
    signal: Instant,
    budget: Duration,
) {
    let pending = tasks.len();
    tracing::info!(
        event = "outbox_draining",
        in_flight = pending,
        "outbox draining in-flight actions"
    );
    shared.phases.enter(Phase::Drain);
    let hard_deadline = signal + budget;
    let soft_deadline = hard_deadline - report_reserve(budget);
    let complete = {
        let all_done = async { while tasks.join_next().await.is_some() {} };
        tokio::pin!(all_done);
        if tokio::time::timeout_at(soft_deadline.into(), &mut all_done)
            .await
            .is_ok()
        {
            true
        } else {
            tracing::warn!(
                event = "outbox_abandoning_running_actions",
                "shutdown budget spent; abandoning running actions"
            );
            shared.phases.enter(Phase::Abort);
            tokio::time::timeout_at(hard_deadline.into(), &mut all_done)
                .await
                .is_ok()
        }
    };
    // Past the budget: reports still under way are dropped with their tasks.
    tasks.abort_all();
    let mut left: Vec<String> = shared.held.lock().keys().cloned().collect();
    left.sort();
    for action_id in &left {
        tracing::error!(
            event = "action_left_claimed",
            action_id,
            worker_id = %shared.worker_id,
            reason = "shutdown_budget_spent",
            "no result was accepted for this action within SHUTDOWN_TIMEOUT_SECONDS; it may \
             stay CLAIMED (release it with sitg-bot release --worker-id)"
        );
    }
    if !complete || !left.is_empty() {
        tracing::error!(
            event = "outbox_drain_incomplete",
            left_claimed = left.len(),
            action_ids = %left.join(","),
            "outbox stopped with actions still claimed"
        );
    }
    shared.metrics.actions_in_flight.set(0);
    tracing::info!(
        event = "outbox_stopped",
        drained = pending,
        "outbox stopped"
    );
}
