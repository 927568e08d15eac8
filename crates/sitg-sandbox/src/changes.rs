//! A change counter that lets tests wait for a simulator's state to reach a condition
//! without sleeping in a loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Bumped after every state change of a simulator; waiters re-check their condition on
/// each bump.
#[derive(Clone, Debug)]
pub(crate) struct Changes(Arc<watch::Sender<u64>>);

impl Changes {
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    /// Records that the state changed. Works with no waiter subscribed.
    pub(crate) fn bump(&self) {
        self.0
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// A receiver that sees every later bump; the value is a version number.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Waits until `condition` holds, re-checking after every change, for at most
    /// `timeout`. Returns whether it held.
    pub(crate) async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> bool {
        // Subscribe before the first check so no change between check and wait is lost.
        let mut changes = self.0.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if condition() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out (or the sender is gone, which cannot happen while `self` lives).
                _ => return condition(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn wait_for_wakes_on_a_change_and_gives_up_at_the_timeout() {
        let changes = Changes::new();
        let counter = Arc::new(AtomicU32::new(0));

        let (c, n) = (changes.clone(), counter.clone());
        let bumper = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                n.fetch_add(1, Ordering::SeqCst);
                c.bump();
            }
        });
        let reached = changes
            .wait_for(Duration::from_secs(10), || {
                counter.load(Ordering::SeqCst) == 3
            })
            .await;
        assert!(reached);
        bumper.await.unwrap();

        let never = changes
            .wait_for(Duration::from_millis(20), || {
                counter.load(Ordering::SeqCst) == 4
            })
            .await;
        assert!(!never);
    }
}
