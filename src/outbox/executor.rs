//! Executing one valid action on GitHub, with bounded retries inside the worker.
//!
//! The backend requeues a `RETRYABLE_FAILURE` at once and with no attempt cap (contract
//! §1.6), so the worker itself spaces attempts: a few quick retries with jittered
//! backoff before reporting, a bounded hold of an action whose installation is rate
//! limited, and a hold before re-executing an action the backend hands out again
//! (growing with its `attempts`). Waits hold no execution slot ([`Slots`]); every wait
//! ends early on shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::action::{ActionKind, ValidAction};
use crate::backend::types::Outcome;
use crate::contract::FailureCode;
use crate::github::{GitHubClient, GitHubError};

/// How hard the executor tries before giving an action back.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// GitHub attempts per claim, the first included.
    pub max_attempts: usize,
    /// First delay between attempts (then doubling, with jitter).
    pub first_delay: Duration,
    /// Longest hold of an action whose installation is rate limited before it is
    /// given back (`RETRYABLE_FAILURE` / `GITHUB_RATE_LIMITED`).
    pub max_rate_limit_wait: Duration,
    /// Longest hold of a re-claimed action before executing it.
    pub max_hold: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            first_delay: Duration::from_secs(1),
            max_rate_limit_wait: Duration::from_secs(60),
            max_hold: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Wait before executing an action handed out for the `attempts`-th time: none the
    /// first time, then 1 s, 2 s, 4 s … up to `max_hold`. Stateless, so it holds across
    /// replicas: the backend counts the attempts.
    pub fn hold_for(&self, attempts: u32) -> Duration {
        if attempts <= 1 {
            return Duration::ZERO;
        }
        let exp = (attempts - 2).min(16);
        Duration::from_secs(1u64 << exp).min(self.max_hold)
    }
}

/// The result of an action, as reported to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub failure_code: Option<FailureCode>,
    pub failure_message: Option<String>,
}

impl Report {
    /// `SUCCEEDED`.
    pub fn succeeded() -> Self {
        Self {
            outcome: Outcome::Succeeded,
            failure_code: None,
            failure_message: None,
        }
    }

    /// `FAILED` with `code`.
    pub fn failed(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Failed,
            failure_code: Some(code),
            failure_message: Some(message.into()),
        }
    }

    /// `RETRYABLE_FAILURE` with `code`.
    pub fn retryable(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::RetryableFailure,
            failure_code: Some(code),
            failure_message: Some(message.into()),
        }
    }

    /// A shutdown release.
    pub fn released() -> Self {
        Self::retryable(
            FailureCode::WorkerShutdown,
            "worker stopped before executing the action",
        )
    }

    fn from_error(err: &GitHubError) -> Self {
        let code = err.failure_code();
        if err.is_retryable() {
            Self::retryable(code, err.to_string())
        } else {
            Self::failed(code, err.to_string())
        }
    }
}

/// Execution slots (`OUTBOX_CONCURRENCY`): how many actions call GitHub at once. An
/// action takes one for each attempt and gives it back before any wait.
#[derive(Debug)]
pub struct Slots {
    permits: Semaphore,
    /// Actions calling GitHub or waiting for a slot.
    busy: AtomicUsize,
}

/// One execution slot, given back on drop.
#[derive(Debug)]
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    _busy: Busy<'a>,
}

/// Counts an action in [`Slots::busy`] for as long as it lives.
#[derive(Debug)]
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slots {
    /// `slots` slots (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            permits: Semaphore::new(slots.max(1)),
            busy: AtomicUsize::new(0),
        }
    }

    /// Waits for a free slot; `None` when `stop` fires first.
    pub async fn acquire(&self, stop: &CancellationToken) -> Option<Slot<'_>> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let busy = Busy(&self.busy);
        let permit = tokio::select! {
            permit = self.permits.acquire() => permit.ok()?,
            () = stop.cancelled() => return None,
        };
        Some(Slot {
            _permit: permit,
            _busy: busy,
        })
    }

    /// Actions calling GitHub or waiting for a slot now (not those waiting out a
    /// backoff or a rate limit).
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }
}

/// Executes actions with one shared GitHub client.
#[derive(Clone)]
pub struct Executor {
    github: GitHubClient,
    policy: RetryPolicy,
}

impl Executor {
    pub fn new(github: GitHubClient, policy: RetryPolicy) -> Self {
        Self { github, policy }
    }

    /// The executor's retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Waits `delay`, or returns false when `stop` fires first.
    pub async fn pause(delay: Duration, stop: &CancellationToken) -> bool {
        if delay.is_zero() {
            return !stop.is_cancelled();
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = stop.cancelled() => false,
        }
    }

    /// Whether `installation_id` is paused by a rate limit now.
    pub fn is_rate_limited(&self, installation_id: u64) -> bool {
        self.github
            .installation_paused_until(installation_id)
            .is_some()
    }

    /// The release of an action held for a rate limit as long as the policy allows.
    fn rate_limited_report(action: &ValidAction, left: Duration, held: Duration) -> Report {
        Report::retryable(
            FailureCode::GitHubRateLimited,
            format!(
                "installation {} is rate limited for {} s more; held {} s",
                action.installation_id,
                left.as_secs(),
                held.as_secs()
            ),
        )
    }

    /// Executes `action` with retries (the caller holds re-claimed actions first, per
    /// [`RetryPolicy::hold_for`]).
    ///
    /// A slot of `slots` is held only while GitHub is called: the waits between
    /// attempts and for a rate-limited installation happen outside the slots, so one
    /// installation's pause never delays another's actions. An action whose
    /// installation is paused is held until the pause ends, for at most
    /// [`RetryPolicy::max_rate_limit_wait`], then given back as `RETRYABLE_FAILURE` /
    /// `GITHUB_RATE_LIMITED`: once per hold at most, and while held it is not
    /// `PENDING`, so the backend hands out other installations' actions meanwhile.
    ///
    /// `stop` (shutdown) interrupts every wait and turns the action into a
    /// [`Report::released`]; a GitHub call already under way is let finish.
    pub async fn run(
        &self,
        action: &ValidAction,
        stop: &CancellationToken,
        slots: &Slots,
    ) -> Report {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.policy.first_delay)
            .with_max_delay(self.policy.first_delay * 8)
            .with_jitter()
            .build();
        let mut attempt = 0;
        let mut limited_since: Option<Instant> = None;
        loop {
            if let Some(until) = self
                .github
                .installation_paused_until(action.installation_id)
            {
                let since = *limited_since.get_or_insert_with(Instant::now);
                let hold_left = self
                    .policy
                    .max_rate_limit_wait
                    .saturating_sub(since.elapsed());
                let pause_left = until.saturating_duration_since(Instant::now());
                if hold_left.is_zero() {
                    return Self::rate_limited_report(action, pause_left, since.elapsed());
                }
                if !Self::pause(pause_left.min(hold_left), stop).await {
                    return Report::released();
                }
                continue;
            }
            let Some(slot) = slots.acquire(stop).await else {
                return Report::released();
            };
            if self.is_rate_limited(action.installation_id) {
                // Paused while this action waited for its slot: wait outside it.
                continue;
            }
            attempt += 1;
            let result = self.execute_once(action).await;
            drop(slot);
            let err = match result {
                Ok(()) => return Report::succeeded(),
                Err(err) => err,
            };
            if !err.is_retryable() {
                return Report::from_error(&err);
            }
            tracing::warn!(
                event = "action_attempt_failed",
                action_id = %action.id,
                attempt,
                code = err.failure_code().as_str(),
                error = %err,
                "action attempt failed"
            );
            if let GitHubError::RateLimited { .. } = err {
                // The next loop turn holds the action for the pause; not counted as an
                // attempt.
                attempt -= 1;
                if !self.is_rate_limited(action.installation_id) {
                    return Report::from_error(&err);
                }
                continue;
            }
            if attempt >= self.policy.max_attempts {
                return Report::from_error(&err);
            }
            let delay = delays.next().unwrap_or(self.policy.first_delay);
            if !Self::pause(delay, stop).await {
                return Report::released();
            }
        }
    }

    /// One pass over GitHub. Per contract §2: close = PATCH the pull request to
    /// `closed`, then upsert the comment; upsert = find the marked comment on any page,
    /// PATCH it or POST a new one. Both are safe to repeat.
    async fn execute_once(&self, action: &ValidAction) -> Result<(), GitHubError> {
        if action.kind == ActionKind::ClosePrWithComment {
            self.github
                .close_pull_request(action.installation_id, &action.repo, action.pr_number)
                .await?;
        }
        let upsert = self
            .github
            .upsert_marked_comment(
                action.installation_id,
                &action.repo,
                action.pr_number,
                &action.body,
                &action.marker,
            )
            .await?;
        tracing::info!(
            event = "comment_upserted",
            action_id = %action.id,
            repo = %action.repo,
            pr = action.pr_number,
            result = match upsert {
                crate::github::CommentUpsert::Created { .. } => "created",
                crate::github::CommentUpsert::Updated { .. } => "updated",
                crate::github::CommentUpsert::Unchanged { .. } => "unchanged",
            },
            comment_id = upsert.comment_id(),
            "marked comment written"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_grows_with_attempts_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.hold_for(0), Duration::ZERO);
        assert_eq!(p.hold_for(1), Duration::ZERO);
        assert_eq!(p.hold_for(2), Duration::from_secs(1));
        assert_eq!(p.hold_for(3), Duration::from_secs(2));
        assert_eq!(p.hold_for(6), Duration::from_secs(16));
        assert_eq!(p.hold_for(8), Duration::from_secs(60));
        assert_eq!(p.hold_for(u32::MAX), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn slots_count_waiters_and_holders_and_free_on_drop_or_stop() {
        let slots = Slots::new(1);
        let stop = CancellationToken::new();
        let first = slots.acquire(&stop).await.expect("a free slot");
        assert_eq!(slots.busy(), 1);
        let waiting = slots.acquire(&stop);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "the only slot is taken"
        );
        assert_eq!(slots.busy(), 2, "a waiter counts as busy");
        drop(first);
        let second = waiting.await.expect("the freed slot");
        assert_eq!(slots.busy(), 1);
        stop.cancel();
        assert!(slots.acquire(&stop).await.is_none());
        assert_eq!(
            slots.busy(),
            1,
            "a waiter stopped by shutdown no longer counts"
        );
        drop(second);
        assert_eq!(slots.busy(), 0);
    }

    #[test]
    fn reports_follow_the_error_class() {
        let r = Report::from_error(&GitHubError::InstallationNotFound { installation_id: 1 });
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            r.failure_code.map(FailureCode::as_str),
            Some("INSTALLATION_NOT_FOUND")
        );
        let r = Report::from_error(&GitHubError::Server { status: 500 });
        assert_eq!(r.outcome, Outcome::RetryableFailure);
        assert_eq!(
            r.failure_code.map(FailureCode::as_str),
            Some("EXECUTION_ERROR")
        );
        let r = Report::from_error(&GitHubError::PermissionDenied {
            message: "Resource not accessible by integration".into(),
        });
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            r.failure_code.map(FailureCode::as_str),
            Some("GITHUB_PERMISSION_DENIED")
        );
        let r = Report::from_error(&GitHubError::ValidationFailed {
            message: "x".into(),
        });
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            Report::released().failure_code.map(FailureCode::as_str),
            Some("WORKER_SHUTDOWN")
        );
    }
}
