//! Claiming at once when the backend says a forwarded event enqueued actions, instead
//! of waiting for the next poll: the gate comment of a new pull request then usually
//! appears within a second, posted by the replica that took the webhook.

use prometheus::{IntCounter, Registry};
use tokio::sync::Notify;

/// A request to claim now, from the webhook ingress to the outbox loop. Requests made
/// while a claim is under way coalesce into one more claim after it; the backend
/// client's signer keeps two claims of one `WORKER_ID` out of the same second.
#[derive(Debug)]
pub struct ClaimWake {
    notify: Notify,
    requested: IntCounter,
}

impl ClaimWake {
    /// Registers `sitg_bot_outbox_claim_wakeups_total`: forwarded events whose answer
    /// had `enqueued_actions > 0`, each asking the outbox to claim at once.
    ///
    /// # Errors
    /// The metric is already registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requested = IntCounter::new(
            "sitg_bot_outbox_claim_wakeups_total",
            "Forwarded events the backend answered with enqueued_actions > 0, each waking the outbox to claim at once",
        )?;
        registry.register(Box::new(requested.clone()))?;
        Ok(Self {
            notify: Notify::new(),
            requested,
        })
    }

    /// Asks the outbox loop to claim now.
    pub fn request(&self) {
        self.requested.inc();
        self.notify.notify_one();
    }

    /// Completes at the next request (at once when one came since the last wait).
    pub async fn requested(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn requests_coalesce_and_are_kept_until_waited_for() {
        let wake = ClaimWake::register(&Registry::new()).unwrap();
        wake.request();
        wake.request();
        tokio::time::timeout(Duration::from_millis(100), wake.requested())
            .await
            .expect("a request made before the wait is kept");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), wake.requested())
                .await
                .is_err(),
            "two requests before one wait make one wake-up"
        );
        assert_eq!(wake.requested.get(), 2);
    }
}
