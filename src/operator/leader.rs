//! Leader election on a `coordination.k8s.io/v1` Lease (through `kube-lease-manager`),
//! so that of several operator replicas exactly one reconciles.
//!
//! The leader renews the Lease `grace` seconds before it expires; a replica that
//! loses it stops its controller at once; a killed leader's Lease expires after
//! `duration` seconds and another replica takes over. On shutdown the Lease is
//! released so a rolling update of the operator hands over without waiting.

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::{info, warn};

use super::metrics::Metrics;

/// Where and how to hold the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Lease name, shared by every replica of one operator deployment.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This process's `holderIdentity` (the pod name in a cluster).
    pub identity: String,
    /// Seconds a Lease stays valid after its last renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_seconds: u64,
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be created or read.
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The lease manager's error.
        #[source]
        source: LeaseManagerError,
    },
    /// The lease manager task stopped while the operator was still running.
    #[error("the leader election task stopped unexpectedly")]
    Stopped,
}

/// Runs `lead()` while this process holds the Lease, until `shutdown` completes.
///
/// `lead` is called each time leadership is (re)acquired and its future is dropped
/// when leadership is lost. On shutdown its future is awaited, so it must itself
/// watch the same shutdown signal and stop gracefully.
///
/// # Errors
/// [`LeaderError`] when the Lease cannot be set up or the lease manager stops.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    settings: &LeaseSettings,
    metrics: Arc<Metrics>,
    mut lead: F,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let lease_error = |source| LeaderError::Lease {
        namespace: settings.namespace.clone(),
        name: settings.name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_seconds)
        .with_grace(settings.grace_seconds)
        .build()
        .await
        .map_err(lease_error)?;
    let (mut is_leader, task) = manager.watch().await;
    tokio::pin!(shutdown);

    let outcome = loop {
        info!(event = "waiting_for_leadership", lease = %settings.name, identity = %settings.identity, "waiting for leadership");
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            acquired = is_leader.wait_for(|leader| *leader) => {
                if acquired.is_err() {
                    break Err(LeaderError::Stopped);
                }
            }
        }
        info!(event = "acquired_leadership", lease = %settings.name, identity = %settings.identity, "acquired leadership");
        metrics.leader.set(1);
        let controller = lead();
        tokio::pin!(controller);
        let lost = tokio::select! {
            () = &mut shutdown => {
                // `lead` watches the same shutdown signal: let it finish its passes.
                controller.await;
                None
            }
            () = &mut controller => Some(Ok(())),
            changed = wait_lost(&mut is_leader) => Some(changed),
        };
        metrics.leader.set(0);
        match lost {
            None => break Ok(()),
            Some(Ok(())) => warn!(lease = %settings.name, "leadership lost; controller stopped"),
            Some(Err(e)) => break Err(e),
        }
    };

    // Closing the channel makes the lease manager release the Lease and stop.
    drop(is_leader);
    match task.await {
        Ok(Ok(_)) => info!(lease = %settings.name, "released the Lease"),
        Ok(Err(e)) => warn!(error = %e, "releasing the Lease failed"),
        Err(e) => warn!(error = %e, "lease manager task failed"),
    }
    outcome
}

async fn wait_lost(is_leader: &mut watch::Receiver<bool>) -> Result<(), LeaderError> {
    is_leader
        .wait_for(|leader| !*leader)
        .await
        .map(|_| ())
        .map_err(|_| LeaderError::Stopped)
}
