//! The redelivery sweep of each `BotFleet` with `spec.redelivery.enabled`, run by the
//! operator's leader (the controller only runs while this process holds the Lease, so
//! a fleet has exactly one sweeper across operator replicas).
//!
//! A reconcile pass hands the fleet's [`SweepTarget`] to [`Sweepers::ensure`], which
//! starts a task sweeping every `intervalSeconds` (the first sweep at once) and
//! restarts it when the settings, the App key or the fleet's uid change. The task
//! re-reads the fleet before each sweep and ends by itself once the fleet is deleted or
//! its redelivery turned off (no reconcile runs for a deleted object). Losing the
//! leadership or shutting down stops every task ([`Sweepers::stop_all`]).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use url::Url;

use super::crd::{BotFleet, RedeliverySpec};
use super::validate::ValidFleet;
use crate::contract::env;
use crate::github::{GitHubClient, GitHubConfig};
use crate::redelivery::{RedeliveryMetrics, SweepPolicy, Sweeper};
use crate::secret::SecretString;

/// What a fleet's sweeper acts as and how often it sweeps.
#[derive(Clone)]
pub struct SweepTarget {
    /// The App the sweeper acts as: the fleet's `github.appId`, `github.apiBaseUrl`
    /// and the PEM key of `github.privateKeyRef`.
    pub github: GitHubConfig,
    /// Bounds of one sweep.
    pub policy: SweepPolicy,
    /// Time between sweeps.
    pub interval: Duration,
    /// The fleet's uid: a fleet deleted and created again gets a new sweeper.
    pub fleet_uid: String,
    /// SHA-256 over everything above (key included), hex: a change restarts the task.
    fingerprint: String,
}

impl fmt::Debug for SweepTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SweepTarget")
            .field("app_id", &self.github.app_id)
            .field("api_base_url", &self.github.api_base_url.as_str())
            .field("interval", &self.interval)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SweepTarget {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for SweepTarget {}

/// Why a fleet's redelivery settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// `github.apiBaseUrl` does not parse (the CRD's CEL rule normally refuses it).
    #[error("github.apiBaseUrl is not a URL: {0}")]
    BaseUrl(String),
    /// The validated fleet carries no App key (never happens for a valid fleet).
    #[error("the fleet's Secret values hold no GITHUB_APP_PRIVATE_KEY")]
    NoKey,
}

/// The sweep target of a validated fleet, `None` when its redelivery is off.
///
/// # Errors
/// [`TargetError`] for a base URL that does not parse or a missing key.
pub fn sweep_target(
    spec: Option<&RedeliverySpec>,
    fleet: &ValidFleet,
) -> Result<Option<SweepTarget>, TargetError> {
    let Some(spec) = spec.filter(|s| s.enabled) else {
        return Ok(None);
    };
    let api_base_url = Url::parse(&fleet.settings.github_api_base_url)
        .map_err(|e| TargetError::BaseUrl(e.to_string()))?;
    let key = fleet
        .secrets
        .get(env::GITHUB_APP_PRIVATE_KEY)
        .ok_or(TargetError::NoKey)?;
    let pem = String::from_utf8_lossy(&key.0).into_owned();
    let to_u64 = |v: i32| u64::try_from(v).unwrap_or(1);
    let policy = SweepPolicy {
        look_back: Duration::from_secs(to_u64(spec.look_back_seconds)),
        max_redeliveries: usize::try_from(spec.max_per_sweep).unwrap_or(1),
        max_attempts_per_event: usize::try_from(spec.max_attempts).unwrap_or(1),
    };
    let interval = Duration::from_secs(to_u64(spec.interval_seconds));
    let app_id = u64::try_from(fleet.settings.github_app_id).unwrap_or_default();
    let fleet_uid = fleet.owner.uid.clone();
    let mut hash = Sha256::new();
    for part in [
        fleet_uid.as_str(),
        &app_id.to_string(),
        api_base_url.as_str(),
        &pem,
        &format!("{policy:?}"),
        &interval.as_secs().to_string(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let fingerprint = hex::encode(hash.finalize());
    Ok(Some(SweepTarget {
        github: GitHubConfig {
            api_base_url,
            app_id,
            private_key_pem: SecretString::new(pem),
            user_agent: crate::worker::USER_AGENT.to_owned(),
            request_timeout: Duration::from_secs(10),
        },
        policy,
        interval,
        fleet_uid,
        fingerprint,
    }))
}

struct Running {
    fingerprint: String,
    stop: CancellationToken,
}

/// The running sweepers, one per fleet.
#[derive(Default)]
pub struct Sweepers {
    running: Mutex<HashMap<ObjectRef<BotFleet>, Running>>,
}

impl Sweepers {
    /// Makes the sweeper of `fleet` match `target`: stops it for `None`, starts it when
    /// missing, restarts it when the target changed, else leaves it alone. Sweeps are
    /// counted in `metrics` (shared by every fleet of this operator).
    pub fn ensure(
        &self,
        client: &Client,
        fleet: &BotFleet,
        target: Option<&SweepTarget>,
        metrics: &RedeliveryMetrics,
    ) {
        let key = ObjectRef::from_obj(fleet);
        let mut running = self.running.lock();
        let Some(target) = target else {
            if let Some(old) = running.remove(&key) {
                old.stop.cancel();
                info!(event = "redelivery_sweeper_stopped", fleet = %key, "redelivery turned off for this fleet; its sweeper stopped");
            }
            return;
        };
        if running
            .get(&key)
            .is_some_and(|r| r.fingerprint == target.fingerprint && !r.stop.is_cancelled())
        {
            return;
        }
        if let Some(old) = running.remove(&key) {
            old.stop.cancel();
        }
        // The sweeper's GitHub request metrics stay out of the operator's registry:
        // several fleets would register the same names.
        let github = match GitHubClient::new(target.github.clone(), &prometheus::Registry::new()) {
            Ok(github) => github,
            Err(error) => {
                warn!(event = "redelivery_sweeper_not_started", fleet = %key, error = %error, "the fleet's App settings cannot make a GitHub client; no redelivery sweeps");
                return;
            }
        };
        let stop = CancellationToken::new();
        let sweeper = Sweeper::new(github, target.policy, metrics.clone());
        let Some(namespace) = fleet.namespace() else {
            return;
        };
        let api: Api<BotFleet> = Api::namespaced(client.clone(), &namespace);
        info!(
            event = "redelivery_sweeper_started",
            fleet = %key,
            interval_seconds = target.interval.as_secs(),
            "sweeping this fleet's App deliveries for failed ones"
        );
        tokio::spawn(sweep_loop(
            api,
            fleet.name_any(),
            target.fleet_uid.clone(),
            sweeper,
            target.interval,
            stop.clone(),
        ));
        running.insert(
            key,
            Running {
                fingerprint: target.fingerprint.clone(),
                stop,
            },
        );
    }

    /// Stops every sweeper (leadership lost, or shutdown).
    pub fn stop_all(&self) {
        let mut running = self.running.lock();
        for (_, r) in running.drain() {
            r.stop.cancel();
        }
    }

    /// Fleets with a sweeper started and not stopped by [`Self::ensure`] or
    /// [`Self::stop_all`].
    pub fn len(&self) -> usize {
        let running = self.running.lock();
        running.values().filter(|r| !r.stop.is_cancelled()).count()
    }

    /// True when no sweeper runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Sweepers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Sweeps every `interval` until `stop`, or until the fleet is gone, has another uid,
/// or turned its redelivery off.
async fn sweep_loop(
    api: Api<BotFleet>,
    name: String,
    uid: String,
    sweeper: Sweeper,
    interval: Duration,
    stop: CancellationToken,
) {
    let pass = async {
        loop {
            match api.get_opt(&name).await {
                Ok(Some(f))
                    if f.uid().as_deref() == Some(uid.as_str())
                        && f.spec.redelivery.as_ref().is_some_and(|r| r.enabled) => {}
                Ok(_) => {
                    info!(event = "redelivery_sweeper_stopped", fleet = %name, "the fleet is gone or its redelivery is off; its sweeper stopped");
                    return;
                }
                Err(error) => {
                    warn!(event = "redelivery_fleet_unreadable", fleet = %name, error = %error, "could not read the fleet before a sweep; trying again next interval");
                    tokio::time::sleep(interval).await;
                    continue;
                }
            }
            // The sweep logs and counts its own failures.
            let _ = sweeper.sweep().await;
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = pass => {}
    }
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::sample_view;

    fn spec() -> RedeliverySpec {
        RedeliverySpec {
            enabled: true,
            interval_seconds: 60,
            look_back_seconds: 3600,
            max_per_sweep: 10,
            max_attempts: 3,
        }
    }

    #[test]
    fn no_target_unless_enabled() {
        let view = sample_view();
        assert_eq!(sweep_target(None, &view), Ok(None));
        let off = RedeliverySpec {
            enabled: false,
            ..spec()
        };
        assert_eq!(sweep_target(Some(&off), &view), Ok(None));
    }

    #[test]
    fn the_target_carries_the_fleets_app_and_bounds() {
        let view = sample_view();
        let target = sweep_target(Some(&spec()), &view)
            .expect("valid")
            .expect("enabled");
        assert_eq!(target.github.app_id, 4242);
        assert_eq!(
            target.github.api_base_url.as_str(),
            "https://api.github.com/"
        );
        assert!(
            target
                .github
                .private_key_pem
                .expose()
                .contains("-----BEGIN")
        );
        assert_eq!(target.interval, Duration::from_secs(60));
        assert_eq!(target.policy.look_back, Duration::from_secs(3600));
        assert_eq!(target.policy.max_redeliveries, 10);
        assert_eq!(target.policy.max_attempts_per_event, 3);
        assert_eq!(target.fleet_uid, view.owner.uid);
        let debug = format!("{target:?}");
        assert!(!debug.contains("BEGIN"), "{debug}");
    }

    #[test]
    fn a_change_of_settings_key_or_uid_changes_the_target() {
        let view = sample_view();
        let base = sweep_target(Some(&spec()), &view).expect("valid");
        let slower = RedeliverySpec {
            interval_seconds: 120,
            ..spec()
        };
        assert_ne!(base, sweep_target(Some(&slower), &view).expect("valid"));
        let mut other_uid = view.clone();
        other_uid.owner.uid = "another".to_owned();
        assert_ne!(
            base,
            sweep_target(Some(&spec()), &other_uid).expect("valid")
        );
        assert_eq!(base, sweep_target(Some(&spec()), &view).expect("valid"));
    }
}
