//! Status: the `BotFleet` status computed from the fleet, its Deployment and the
//! outcome of the pass. Pure apart from the clock value passed in.
//!
//! A condition keeps its `lastTransitionTime` while its `status` stays the same, so a
//! pass over an unchanged fleet computes exactly the stored status and writes nothing.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::build::selector_string;
use super::crd::{BotFleet, BotFleetStatus};
use super::error::Error;

/// Condition type: every wanted worker pod is ready.
pub const READY: &str = "Ready";
/// Condition type: the Deployment is rolling out a new pod template or count.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: the fleet cannot be reconciled as written (missing Secret or key,
/// unusable value, invalid combination).
pub const DEGRADED: &str = "Degraded";

/// Replica counts read from a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Rollout {
    desired: i32,
    current: i32,
    ready: i32,
    updated: i32,
    available: i32,
    observed: bool,
}

impl Rollout {
    fn of(deployment: &Deployment) -> Self {
        let desired = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        let status = deployment.status.clone().unwrap_or_default();
        let observed = match (status.observed_generation, deployment.metadata.generation) {
            (Some(seen), Some(generation)) => seen >= generation,
            _ => false,
        };
        Self {
            desired,
            current: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            observed,
        }
    }

    /// The Deployment controller has seen the latest template and every pod runs it.
    fn complete(&self) -> bool {
        self.observed
            && self.updated >= self.desired
            && self.current == self.updated
            && self.available >= self.desired
    }
}

/// Computes the status a fleet should have.
///
/// - `deployment`: the fleet's Deployment as last read or applied (`None` when it
///   does not exist yet);
/// - `failure`: the error of this pass when it is the fleet's own fault;
/// - `now`: the time stamped on conditions whose status changes.
pub fn desired_status(
    fleet: &BotFleet,
    deployment: Option<&Deployment>,
    failure: Option<&Error>,
    now: &Time,
) -> BotFleetStatus {
    let generation = fleet.metadata.generation;
    let rollout = deployment.map(Rollout::of);
    let r = rollout.unwrap_or_default();

    let ready = match rollout {
        None => (
            false,
            "DeploymentMissing",
            "the worker Deployment does not exist yet".to_owned(),
        ),
        Some(r) if r.desired == 0 => (false, "ScaledToZero", "no worker pod is wanted".to_owned()),
        Some(r) if r.ready >= r.desired => (
            true,
            "ReplicasReady",
            format!("{}/{} worker pods ready", r.ready, r.desired),
        ),
        Some(r) => (
            false,
            "ReplicasNotReady",
            format!("{}/{} worker pods ready", r.ready, r.desired),
        ),
    };
    let progressing = match rollout {
        None => (
            false,
            "DeploymentMissing",
            "the worker Deployment does not exist yet".to_owned(),
        ),
        Some(r) if r.complete() => (
            false,
            "RolloutComplete",
            "every worker pod runs the current template".to_owned(),
        ),
        Some(r) => (
            true,
            "RollingOut",
            format!("{}/{} worker pods updated", r.updated, r.desired),
        ),
    };
    let degraded = match failure.and_then(|e| e.degraded_reason().map(|reason| (reason, e))) {
        Some((reason, e)) => (true, reason, e.to_string()),
        None => (
            false,
            "ReconcileSucceeded",
            "every child object is applied".to_owned(),
        ),
    };

    let (reason, message) = summary(&ready, &progressing, &degraded);

    let previous = fleet
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        (READY, ready),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        condition(previous, type_, status, reason, message, generation, now)
    })
    .collect();

    BotFleetStatus {
        observed_generation: generation,
        replicas: r.current,
        ready_replicas: r.ready,
        desired_replicas: r.desired,
        selector: selector_string(&fleet.name_any()),
        reason,
        message,
        conditions,
    }
}

/// A condition as computed: status, reason, message.
type Computed = (bool, &'static str, String);

/// `status.reason` and `status.message`: what an SRE needs first. A fleet that cannot
/// be reconciled says why (its Ready condition only says the Deployment is missing);
/// then an unready fleet; then a rollout; then all is well.
fn summary(ready: &Computed, progressing: &Computed, degraded: &Computed) -> (String, String) {
    let chosen = if degraded.0 {
        degraded
    } else if !ready.0 {
        ready
    } else if progressing.0 {
        progressing
    } else {
        ready
    };
    (chosen.1.to_owned(), chosen.2.clone())
}

fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The current time truncated to whole seconds, the precision the API server keeps;
/// a stamp with sub-second digits would differ from its stored copy.
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::sample_fleet;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).expect("valid second"))
    }

    fn deployment(
        desired: i32,
        ready: i32,
        updated: i32,
        current: i32,
        observed: bool,
    ) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(current),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                updated_replicas: Some(updated),
                observed_generation: Some(if observed { 4 } else { 3 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        d.metadata.generation = Some(4);
        d
    }

    fn get<'a>(s: &'a BotFleetStatus, type_: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    #[test]
    fn healthy_fleet() {
        let fleet = sample_fleet();
        let d = deployment(2, 2, 2, 2, true);
        let s = desired_status(&fleet, Some(&d), None, &at(100));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            (s.replicas, s.ready_replicas, s.desired_replicas),
            (2, 2, 2)
        );
        assert_eq!(
            s.selector,
            "app.kubernetes.io/instance=bots,app.kubernetes.io/name=sitg-bot"
        );
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, READY).reason, "ReplicasReady");
        assert_eq!(
            (s.reason.as_str(), s.message.as_str()),
            ("ReplicasReady", "2/2 worker pods ready")
        );
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert!(
            s.conditions
                .iter()
                .all(|c| c.last_transition_time == at(100))
        );
    }

    #[test]
    fn rolling_fleet() {
        let fleet = sample_fleet();
        let s = desired_status(&fleet, Some(&deployment(2, 0, 1, 3, true)), None, &at(1));
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).message, "0/2 worker pods ready");
        assert_eq!(get(&s, PROGRESSING).status, "True");
        assert_eq!(get(&s, PROGRESSING).reason, "RollingOut");
        assert_eq!(
            (s.reason.as_str(), s.message.as_str()),
            ("ReplicasNotReady", "0/2 worker pods ready"),
            "not ready comes before rolling"
        );
        let ready_rolling =
            desired_status(&fleet, Some(&deployment(2, 2, 1, 3, true)), None, &at(1));
        assert_eq!(ready_rolling.reason, "RollingOut");
        let unobserved = desired_status(&fleet, Some(&deployment(2, 2, 2, 2, false)), None, &at(1));
        assert_eq!(get(&unobserved, PROGRESSING).status, "True");
    }

    #[test]
    fn degraded_fleet_names_the_reason() {
        let fleet = sample_fleet();
        let err = Error::SecretNotFound {
            name: "bot".into(),
            field: "spec.github.webhookSecretRef",
        };
        let s = desired_status(&fleet, None, Some(&err), &at(5));
        let d = get(&s, DEGRADED);
        assert_eq!(d.status, "True");
        assert_eq!(d.reason, "SecretNotFound");
        assert!(d.message.contains("\"bot\""));
        assert_eq!(get(&s, READY).reason, "DeploymentMissing");
        assert_eq!(s.reason, "SecretNotFound", "the STATUS column says why");
        assert_eq!(s.message, d.message);
        // API failures are retried without marking the fleet degraded.
        let internal = Error::kube(
            "applying Deployment sitg/bots",
            kube::Error::Api(Box::new(kube::core::Status {
                code: 500,
                message: "etcdserver: request timed out".into(),
                ..kube::core::Status::default()
            })),
        );
        assert_eq!(
            get(
                &desired_status(&fleet, None, Some(&internal), &at(5)),
                DEGRADED
            )
            .status,
            "False"
        );
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut fleet = sample_fleet();
        let d = deployment(2, 0, 2, 2, true);
        fleet.status = Some(desired_status(&fleet, Some(&d), None, &at(10)));
        let same = desired_status(&fleet, Some(&d), None, &at(20));
        assert_eq!(
            Some(&same),
            fleet.status.as_ref(),
            "an unchanged fleet computes the stored status"
        );

        let ready = deployment(2, 2, 2, 2, true);
        let next = desired_status(&fleet, Some(&ready), None, &at(30));
        assert_eq!(get(&next, READY).last_transition_time, at(30));
        assert_eq!(get(&next, DEGRADED).last_transition_time, at(10));
    }

    #[test]
    fn now_has_whole_seconds() {
        assert_eq!(now().0.subsec_nanosecond(), 0);
    }
}
