//! The outbox loop: claim, execute concurrently (bounded), report each action once.
//!
//! Nothing claimed may stay claimed (contract §1.4, §1.6): every claimed id is logged,
//! each action has exactly one task that ends in one report, and on shutdown the loop
//! stops claiming, releases what has not started and waits for the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::action::{self, age_seconds};
use super::executor::{Executor, Report};
use crate::backend::types::{ClaimedAction, Outcome};
use crate::backend::{BackendClient, CallPolicy};
use crate::metrics::WorkerMetrics;

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
}

/// Time kept at the end of the shutdown budget for the release reports themselves.
const REPORT_RESERVE: Duration = Duration::from_secs(5);

/// Claims are kept short so a shutdown never waits long on one.
const CLAIM_POLICY: CallPolicy = CallPolicy {
    attempt_timeout: Duration::from_secs(5),
    deadline: Duration::from_secs(10),
    max_attempts: 3,
};

/// Result reports during shutdown must fit in what is left of the grace period.
const SHUTDOWN_REPORT_POLICY: CallPolicy = CallPolicy {
    attempt_timeout: Duration::from_secs(2),
    deadline: Duration::from_secs(4),
    max_attempts: 3,
};

struct Shared {
    backend: BackendClient,
    executor: Executor,
    metrics: WorkerMetrics,
    worker_id: String,
    permits: Semaphore,
    /// Soft stop: interrupts waits (hold, backoff, rate limit) → release.
    stop: CancellationToken,
    /// Hard stop: abandons GitHub calls still running when the budget ends → release.
    abort: CancellationToken,
}

/// Runs the loop until `shutdown` fires, then drains. Returns once every claimed action
/// has been reported (or, if the backend cannot be reached, logged as left claimed).
pub async fn run(
    backend: BackendClient,
    executor: Executor,
    metrics: WorkerMetrics,
    settings: OutboxSettings,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        backend,
        executor,
        metrics,
        worker_id: settings.worker_id.clone(),
        permits: Semaphore::new(settings.concurrency.max(1)),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
    });
    // Claimed-but-unreported actions are bounded so a slow GitHub cannot make the worker
    // hoard the queue: at most two claims' worth.
    let max_held = settings.claim_limit as usize * 2;
    let mut tasks: JoinSet<()> = JoinSet::new();
    tracing::info!(
        event = "outbox_started",
        worker_id = %settings.worker_id,
        poll_interval_ms = settings.poll_interval.as_millis() as u64,
        claim_limit = settings.claim_limit,
    );

    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let room = max_held.saturating_sub(tasks.len());
        if room == 0 {
            tokio::select! {
                _ = tasks.join_next() => {}
                () = shutdown.cancelled() => break,
            }
            continue;
        }
        let limit = settings.claim_limit.min(room as u32);
        let full_batch = match claim(&shared, limit, &mut tasks).await {
            Some(n) => n as u32 >= limit,
            None => false,
        };
        if full_batch {
            // More is waiting: claim again at once (the signer moves to the next second).
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = shutdown.cancelled() => {}
        }
    }

    drain(&shared, tasks, settings.shutdown_timeout).await;
}

/// One claim; spawns a task per action. Returns how many were claimed, `None` on error.
async fn claim(shared: &Arc<Shared>, limit: u32, tasks: &mut JoinSet<()>) -> Option<usize> {
    // Not abandoned on shutdown: a claim cut off after sending could still land and
    // leave its actions claimed with nobody to report them. Its short policy bounds the
    // wait instead; actions it returns during shutdown are released at once.
    let claimed = shared
        .backend
        .claim(&shared.worker_id, limit, CLAIM_POLICY)
        .await;
    let actions = match claimed {
        Ok(actions) => actions,
        Err(err) => {
            shared.metrics.errors.inc();
            tracing::error!(event = "outbox_claim_failed", error = %err);
            return None;
        }
    };
    shared.metrics.outbox_claims.inc();
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
        );
    }
    for action in actions {
        shared.metrics.actions_claimed.inc();
        shared.metrics.actions_in_flight.inc();
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            handle(&shared, action).await;
            shared.metrics.actions_in_flight.dec();
        });
    }
    Some(count)
}

/// Validate → execute → report, exactly once. A panic while executing is caught and
/// reported as a retryable failure: an unreported action would stay claimed for ever.
async fn handle(shared: &Shared, claimed: ClaimedAction) {
    let started = Instant::now();
    let (report, kind) = match action::validate(&claimed) {
        Err(invalid) => (Report::failed(invalid.code, invalid.message), None),
        Ok(valid) => {
            let work = std::panic::AssertUnwindSafe(execute(shared, &valid)).catch_unwind();
            let report = tokio::select! {
                r = work => r.unwrap_or_else(|_| {
                    tracing::error!(event = "action_execution_panicked", action_id = %valid.id);
                    Report::retryable("EXECUTION_ERROR", "the worker failed internally while executing the action")
                }),
                () = shared.abort.cancelled() => Report::retryable(
                    super::executor::WORKER_SHUTDOWN,
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

/// Waits for a concurrency permit (or releases on shutdown), then executes.
async fn execute(shared: &Shared, valid: &action::ValidAction) -> Report {
    let permit = tokio::select! {
        p = shared.permits.acquire() => p.ok(),
        () = shared.stop.cancelled() => None,
    };
    match permit {
        Some(_permit) => shared.executor.run(valid, &shared.stop).await,
        None => Report::released(),
    }
}

/// Pause between report rounds while the backend cannot take results.
const REPORT_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How long a result is kept trying before it is given up (and logged as stuck).
const REPORT_GIVE_UP_AFTER: Duration = Duration::from_secs(600);

async fn report_once(shared: &Shared, action_id: &str, report: Report) {
    let m = &shared.metrics;
    match report.outcome {
        Outcome::Succeeded => m.actions_success.inc(),
        Outcome::RetryableFailure => m.actions_retryable_failure.inc(),
        Outcome::Failed => m.actions_failed.inc(),
    }
    if let Some(code) = &report.failure_code {
        m.action_failures_by_code.with_label_values(&[code]).inc();
    }
    let request = BackendClient::result_request(
        &shared.worker_id,
        report.outcome,
        report.failure_code.as_deref(),
        report.failure_message.as_deref(),
    );
    let started = Instant::now();
    loop {
        let stopping = shared.stop.is_cancelled();
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
                    failure_code = report.failure_code.as_deref(),
                    failure_message = report.failure_message.as_deref(),
                    status = status.map(|s| s.status),
                );
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
            tracing::warn!(event = "action_report_delayed", action_id, error = %err);
            tokio::select! {
                () = tokio::time::sleep(REPORT_RETRY_PAUSE) => continue,
                () = shared.stop.cancelled() => continue,
            }
        }
        // The backend has no lease expiry: say loudly which action is stuck so an
        // operator can release it with this worker id.
        tracing::error!(
            event = "action_left_claimed",
            action_id,
            worker_id = %shared.worker_id,
            outcome = report.outcome.as_str(),
            error = %err,
        );
        return;
    }
}

/// Stops claiming is done by the caller; here: release waiting actions at once, give
/// running ones the budget minus a reserve for reporting, then abandon them.
async fn drain(shared: &Arc<Shared>, mut tasks: JoinSet<()>, budget: Duration) {
    let pending = tasks.len();
    tracing::info!(event = "outbox_draining", in_flight = pending);
    shared.stop.cancel();
    let soft_deadline = budget.saturating_sub(REPORT_RESERVE);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    tokio::pin!(all_done);
    if tokio::time::timeout(soft_deadline, &mut all_done)
        .await
        .is_err()
    {
        tracing::warn!(event = "outbox_abandoning_running_actions");
        shared.abort.cancel();
        if tokio::time::timeout(REPORT_RESERVE, &mut all_done)
            .await
            .is_err()
        {
            tracing::error!(event = "outbox_drain_incomplete");
        }
    }
    shared.metrics.actions_in_flight.set(0);
    tracing::info!(event = "outbox_stopped", drained = pending);
}
