//! The PodDisruptionBudget of the worker pods.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, pod_selector};
use crate::operator::validate::ValidFleet;

/// Builds a `policy/v1` PodDisruptionBudget allowing one voluntary disruption at a
/// time, whatever the pod count (a fixed `minAvailable` would block node drains of a
/// fleet scaled down to it).
///
/// `unhealthyPodEvictionPolicy: AlwaysAllow` lets a drain evict pods that are not
/// ready anyway, so a broken rollout never blocks node maintenance.
pub fn pod_disruption_budget(fleet: &ValidFleet) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(fleet, fleet.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(pod_selector(&fleet.name)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::build::selector_labels;
    use crate::operator::testing::sample_view;

    #[test]
    fn one_pod_at_a_time() {
        let pdb = pod_disruption_budget(&sample_view());
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(selector_labels("bots"))
        );
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }
}
