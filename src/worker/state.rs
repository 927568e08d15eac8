//! State shared by the worker's request handlers and background tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::BackendClient;
use crate::github::GitHubClient;
use crate::metrics::WorkerMetrics;
use crate::webhook::WebhookVerifier;

/// Everything a handler needs; cloned per request (all fields are cheap handles).
#[derive(Clone)]
pub struct AppState {
    pub verifier: WebhookVerifier,
    pub backend: BackendClient,
    pub github: GitHubClient,
    pub metrics: WorkerMetrics,
    pub lifecycle: Arc<Lifecycle>,
    /// Memory for webhook bodies, shared by every request (`WEBHOOK_BUFFER_LIMIT_MB`).
    pub body_budget: BodyBudget,
    /// The outbox's claim journal, when a state directory is configured.
    pub journal: Option<Arc<crate::outbox::ClaimJournal>>,
    /// Asks the outbox to claim at once after a forwarded event enqueued actions.
    pub claim_wake: Arc<crate::outbox::ClaimWake>,
}

/// Whether the worker should receive traffic.
#[derive(Debug, Default)]
pub struct Lifecycle {
    shutting_down: AtomicBool,
}

impl Lifecycle {
    /// Marks the worker as stopping: `/readyz` answers 503 from now on, so load
    /// balancers stop sending deliveries while in-flight ones finish.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// True once a shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// Bytes per permit of [`BodyBudget`]: permits are counted in KiB so that any budget up
/// to 4 TiB fits in the `u32` a semaphore acquires at once.
const BYTES_PER_PERMIT: u64 = 1024;

/// The bytes of webhook bodies the worker may hold at once over all requests
/// (`WEBHOOK_BUFFER_LIMIT_MB`). Bodies are buffered whole before their signature can be
/// checked, so without a shared bound a burst of large unsigned uploads could exhaust the
/// pod's memory. Cloning shares the budget.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    capacity_kib: usize,
    /// Mirrors the KiB held, in bytes (`sitg_bot_webhook_reserved_body_bytes`).
    reserved_gauge: IntGauge,
}

/// The budget cannot cover the bytes asked for right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the webhook body budget is exhausted: {wanted_bytes} bytes wanted, {available_bytes} free"
)]
pub struct BudgetExhausted {
    /// Bytes the request needed in addition to what it held.
    pub wanted_bytes: u64,
    /// Bytes free in the budget when it asked.
    pub available_bytes: u64,
}

impl BodyBudget {
    /// A budget of `limit_bytes` (rounded down to whole KiB), reporting what is held
    /// through `reserved_gauge`.
    pub fn new(limit_bytes: usize, reserved_gauge: IntGauge) -> Self {
        let capacity_kib = (limit_bytes / BYTES_PER_PERMIT as usize).min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(capacity_kib)),
            capacity_kib,
            reserved_gauge,
        }
    }

    /// The whole budget, in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_kib as u64 * BYTES_PER_PERMIT
    }

    /// Bytes not reserved by any request.
    pub fn available_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * BYTES_PER_PERMIT
    }

    /// Reserves room for `bytes` without waiting (a full budget means the worker is
    /// overloaded; waiting would only hold the connection longer).
    ///
    /// # Errors
    /// [`BudgetExhausted`] when fewer than `bytes` are free.
    pub fn reserve(&self, bytes: u64) -> Result<BodyReservation, BudgetExhausted> {
        let mut reservation = BodyReservation {
            budget: self.clone(),
            permit: None,
            kib: 0,
        };
        reservation.cover(bytes)?;
        Ok(reservation)
    }
}

/// Room reserved in a [`BodyBudget`]; given back when dropped, so a request that ends
/// in any way (answer, error, timeout, client gone) releases it.
#[derive(Debug)]
pub struct BodyReservation {
    budget: BodyBudget,
    permit: Option<OwnedSemaphorePermit>,
    kib: u64,
}

impl BodyReservation {
    /// Bytes this reservation covers (a multiple of 1 KiB).
    pub fn covered_bytes(&self) -> u64 {
        self.kib * BYTES_PER_PERMIT
    }

    /// Grows the reservation so that it covers `total_bytes`; does nothing when it
    /// already does. Called as a body's frames arrive, with the bytes received so far.
    ///
    /// # Errors
    /// [`BudgetExhausted`] when the growth does not fit; what was held stays held.
    pub fn cover(&mut self, total_bytes: u64) -> Result<(), BudgetExhausted> {
        let needed_kib = total_bytes.div_ceil(BYTES_PER_PERMIT);
        let Some(more) = needed_kib.checked_sub(self.kib).filter(|&m| m > 0) else {
            return Ok(());
        };
        let exhausted = || BudgetExhausted {
            wanted_bytes: more.saturating_mul(BYTES_PER_PERMIT),
            available_bytes: self.budget.available_bytes(),
        };
        let count = u32::try_from(more).map_err(|_| exhausted())?;
        let permit = Arc::clone(&self.budget.permits)
            .try_acquire_many_owned(count)
            .map_err(|_| exhausted())?;
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.kib = needed_kib;
        self.budget
            .reserved_gauge
            .add(i64::try_from(more * BYTES_PER_PERMIT).unwrap_or(i64::MAX));
        Ok(())
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        // The permit itself returns to the semaphore when dropped right after this.
        self.budget
            .reserved_gauge
            .sub(i64::try_from(self.covered_bytes()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(kib: usize) -> BodyBudget {
        BodyBudget::new(kib * 1024, IntGauge::new("reserved", "test").unwrap())
    }

    #[test]
    fn reservations_are_bounded_and_given_back_on_drop() {
        let b = budget(100);
        assert_eq!(b.capacity_bytes(), 100 * 1024);
        let first = b.reserve(60 * 1024).unwrap();
        assert_eq!(first.covered_bytes(), 60 * 1024);
        assert_eq!(b.available_bytes(), 40 * 1024);
        assert_eq!(b.reserved_gauge.get(), 60 * 1024);
        let refused = b.reserve(41 * 1024).unwrap_err();
        assert_eq!(refused.available_bytes, 40 * 1024);
        // What does fit still goes through.
        let second = b.reserve(40 * 1024).unwrap();
        assert_eq!(b.available_bytes(), 0);
        drop(first);
        drop(second);
        assert_eq!(b.available_bytes(), 100 * 1024);
        assert_eq!(b.reserved_gauge.get(), 0);
    }

    #[test]
    fn a_reservation_grows_frame_by_frame_in_whole_kib() {
        let b = budget(10);
        let mut r = b.reserve(0).unwrap();
        assert_eq!(b.available_bytes(), 10 * 1024);
        r.cover(1).unwrap();
        assert_eq!(r.covered_bytes(), 1024);
        r.cover(1024).unwrap();
        assert_eq!(b.available_bytes(), 9 * 1024);
        r.cover(5000).unwrap();
        assert_eq!(r.covered_bytes(), 5 * 1024);
        // Covering less than held changes nothing.
        r.cover(10).unwrap();
        assert_eq!(r.covered_bytes(), 5 * 1024);
        let err = r.cover(11 * 1024).unwrap_err();
        assert_eq!(err.wanted_bytes, 6 * 1024);
        assert_eq!(
            r.covered_bytes(),
            5 * 1024,
            "a failed growth keeps what was held"
        );
        drop(r);
        assert_eq!(b.available_bytes(), 10 * 1024);
        assert_eq!(b.reserved_gauge.get(), 0);
    }

    #[test]
    fn sizes_beyond_a_single_acquisition_are_refused_not_wrapped() {
        let b = budget(10);
        assert!(b.reserve(u64::MAX).is_err());
        assert!(b.reserve((u64::from(u32::MAX) + 2) * 1024).is_err());
        assert_eq!(b.available_bytes(), 10 * 1024);
    }
}
