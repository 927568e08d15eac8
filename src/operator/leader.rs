//! Leader election on a `coordination.k8s.io/v1` Lease (through `kube-lease-manager`),
//! so that of several operator replicas exactly one reconciles.
//!
//! The leader renews the Lease `grace` seconds before it expires; a replica that
//! loses it stops its controller at once; a killed leader's Lease expires after
//! `duration` seconds and another replica takes over. On shutdown the Lease is
//! released so a rolling update of the operator hands over without waiting.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::{info, warn};

use super::metrics::Metrics;
use crate::shutdown::{Phase, Shutdown};

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

/// How long a shutdown waits for the controller to finish its reconciles in flight.
/// A reconcile stuck on a hung API call must not keep the Lease until the kubelet's
/// SIGKILL: past this the controller is dropped and the Lease released anyway.
pub const CONTROLLER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for the API server to take the Lease release; past it
/// the process exits and the Lease expires after its duration instead.
pub const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `lead()` while this process holds the Lease, until `shutdown` enters
/// [`Phase::StopAccepting`].
///
/// `lead` is called each time leadership is (re)acquired and its future is dropped
/// when leadership is lost. On shutdown its future is awaited for at most
/// [`CONTROLLER_DRAIN_TIMEOUT`], so it must itself watch the same phase and stop
/// gracefully. Shutdown wins over every leadership change: once `shutdown` has entered
/// the phase `lead` is never called again, whatever the Lease does meanwhile.
///
/// # Errors
/// [`LeaderError`] when the Lease cannot be set up or the lease manager stops.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    settings: &LeaseSettings,
    metrics: Arc<Metrics>,
    mut lead: F,
    shutdown: Shutdown,
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
    let build = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_seconds)
        .with_grace(settings.grace_seconds)
        .build();
    let manager = tokio::select! {
        biased;
        () = shutdown.entered(Phase::StopAccepting) => return Ok(()),
        manager = build => manager.map_err(lease_error)?,
    };
    let (mut is_leader, task) = manager.watch().await;

    let outcome = loop {
        info!(event = "waiting_for_leadership", lease = %settings.name, identity = %settings.identity, "waiting for leadership");
        tokio::select! {
            biased;
            () = shutdown.entered(Phase::StopAccepting) => break Ok(()),
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
            biased;
            () = shutdown.entered(Phase::StopAccepting) => None,
            () = &mut controller => Some(Ok(())),
            changed = wait_lost(&mut is_leader) => Some(changed),
        };
        if shutdown.has_entered(Phase::StopAccepting) {
            // The controller may have stopped on the shutdown already; if not, let it
            // finish the reconciles in flight, within the drain budget.
            if lost.is_none()
                && tokio::time::timeout(CONTROLLER_DRAIN_TIMEOUT, controller)
                    .await
                    .is_err()
            {
                warn!(
                    event = "controller_drain_timed_out",
                    timeout_seconds = CONTROLLER_DRAIN_TIMEOUT.as_secs(),
                    "the controller did not stop in time; releasing the Lease anyway"
                );
            }
            metrics.leader.set(0);
            break Ok(());
        }
        metrics.leader.set(0);
        match lost {
            None | Some(Ok(())) => {
                warn!(event = "leadership_lost", lease = %settings.name, "leadership lost; controller stopped");
            }
            Some(Err(e)) => break Err(e),
        }
    };

    // Closing the channel makes the lease manager release the Lease and stop.
    drop(is_leader);
    match tokio::time::timeout(LEASE_RELEASE_TIMEOUT, task).await {
        Ok(Ok(Ok(_))) => {
            info!(event = "lease_released", lease = %settings.name, "released the Lease")
        }
        Ok(Ok(Err(e))) => {
            warn!(event = "lease_release_failed", error = %e, "releasing the Lease failed")
        }
        Ok(Err(e)) => {
            warn!(event = "lease_release_failed", error = %e, "lease manager task failed")
        }
        Err(_) => warn!(
            event = "lease_release_failed",
            timeout_seconds = LEASE_RELEASE_TIMEOUT.as_secs(),
            "the API server did not take the Lease release in time; it expires instead"
        ),
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
