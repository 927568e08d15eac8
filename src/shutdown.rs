//! [`Shutdown`]: the one shutdown vocabulary of the worker, the outbox, the HTTP server
//! and the operator.
//!
//! A shutdown goes through named [`Phase`]s, in order. `main` enters
//! [`Phase::Requested`] on SIGTERM or SIGINT; each component then moves through the
//! rest at its own pace:
//!
//! - the worker ([`crate::worker::run`]): at `Requested` readiness turns 503 and
//!   `worker_stopping` is logged, then `StopAccepting` (the outbox claims nothing more,
//!   the backend watcher ends); after `SHUTDOWN_DRAIN_SECONDS` `Drain` (the listeners
//!   close, in-flight requests get `SHUTDOWN_TIMEOUT_SECONDS`);
//! - the outbox ([`crate::outbox::run`]) stops claiming at the worker's
//!   `StopAccepting` and keeps a `Shutdown` of its own for the rest: `Drain` once no
//!   claim is in flight (waiting actions are released, running ones finish), `Abort`
//!   when its budget is spent (running GitHub calls are abandoned and released);
//! - the HTTP server ([`crate::worker::serve::serve`]) closes its listener at `Drain`;
//! - the operator ([`crate::operator::run`]): at `Requested` `shutdown_requested` is
//!   logged, then `StopAccepting` ends the controller, the Lease and `/metrics`.
//!
//! Entering a phase enters every earlier one first. Clones share the phases. Built on
//! [`CancellationToken`]s (one per phase), so waiting is cheap and cancel-safe.

use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};

/// A phase of a shutdown, in the order they are entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// A shutdown was asked for (a signal); nothing has stopped yet.
    Requested,
    /// No new work is taken: readiness is 503, the outbox claims nothing more, the
    /// operator's controller ends. The worker's listeners still serve.
    StopAccepting,
    /// What is under way finishes: the listeners close and in-flight requests are
    /// answered; the outbox releases the actions that wait and lets running ones end.
    Drain,
    /// The budget is spent: what still runs is abandoned.
    Abort,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Self; 4] = [
        Self::Requested,
        Self::StopAccepting,
        Self::Drain,
        Self::Abort,
    ];

    fn index(self) -> usize {
        match self {
            Self::Requested => 0,
            Self::StopAccepting => 1,
            Self::Drain => 2,
            Self::Abort => 3,
        }
    }
}

/// A shutdown's phases, shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// One token per [`Phase`], by [`Phase::index`]; cancelled once it is entered.
    phases: [CancellationToken; 4],
}

impl Shutdown {
    /// A shutdown in no phase yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters `phase`, and every earlier phase not entered yet, in order. Entering a
    /// phase again does nothing.
    pub fn enter(&self, phase: Phase) {
        for earlier in Phase::ALL.into_iter().take_while(|p| *p <= phase) {
            self.token(earlier).cancel();
        }
    }

    /// True once `phase` was entered.
    pub fn has_entered(&self, phase: Phase) -> bool {
        self.token(phase).is_cancelled()
    }

    /// Completes once `phase` is entered (at once if it already was).
    pub fn entered(&self, phase: Phase) -> WaitForCancellationFuture<'_> {
        self.token(phase).cancelled()
    }

    /// [`Self::entered`] as a `'static` future, for APIs that take one.
    pub fn entered_owned(&self, phase: Phase) -> WaitForCancellationFutureOwned {
        self.token(phase).clone().cancelled_owned()
    }

    /// The token cancelled when `phase` is entered, for code that takes a
    /// [`CancellationToken`] (the outbox executor's waits).
    pub fn token(&self, phase: Phase) -> &CancellationToken {
        &self.phases[phase.index()]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn all_lists_every_phase_in_order() {
        for (i, phase) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(phase.index(), i, "{phase:?}");
        }
        assert!(Phase::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn entering_a_phase_enters_the_earlier_ones_only() {
        let shutdown = Shutdown::new();
        assert!(Phase::ALL.iter().all(|p| !shutdown.has_entered(*p)));
        let clone = shutdown.clone();
        clone.enter(Phase::Drain);
        assert!(shutdown.has_entered(Phase::Requested));
        assert!(shutdown.has_entered(Phase::StopAccepting));
        assert!(shutdown.has_entered(Phase::Drain));
        assert!(!shutdown.has_entered(Phase::Abort));
        // Entering an earlier phase again changes nothing.
        shutdown.enter(Phase::Requested);
        assert!(!shutdown.has_entered(Phase::Abort));
    }

    #[tokio::test]
    async fn waiters_of_a_phase_wake_when_it_is_entered() {
        let shutdown = Shutdown::new();
        let waiter = tokio::spawn(shutdown.entered_owned(Phase::StopAccepting));
        shutdown.enter(Phase::Requested);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        shutdown.enter(Phase::StopAccepting);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .expect("task");
        // A phase already entered completes at once.
        shutdown.entered(Phase::Requested).await;
    }
}
