//! The HorizontalPodAutoscaler scaling the workers on outbox lag.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::child_meta;
use crate::operator::validate::{Scaling, ValidFleet};

/// The per-pod gauge the workers export and the autoscaler averages: seconds the
/// oldest pending outbox action has waited, as seen by that pod.
pub const LAG_METRIC: &str = crate::contract::metrics::OUTBOX_LAG_SECONDS;

/// Builds an `autoscaling/v2` HorizontalPodAutoscaler for an autoscaled fleet:
/// target the fleet's Deployment, metric `type: Pods` on [`LAG_METRIC`] with an
/// `AverageValue` target of `targetOutboxLagSeconds`. `None` for a fixed fleet.
///
/// The metric reaches the autoscaler through the custom metrics API (for example
/// the Prometheus adapter rule the Helm chart ships).
pub fn horizontal_pod_autoscaler(fleet: &ValidFleet) -> Option<HorizontalPodAutoscaler> {
    let Scaling::Autoscaled {
        min_replicas,
        max_replicas,
        target_outbox_lag_seconds,
    } = fleet.scaling
    else {
        return None;
    };
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(fleet, fleet.name.clone()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: fleet.name.clone(),
            },
            behavior: fleet.hpa_behavior.clone(),
            min_replicas: Some(min_replicas),
            max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Pods".to_owned(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier {
                        name: LAG_METRIC.to_owned(),
                        selector: None,
                    },
                    target: MetricTarget {
                        type_: "AverageValue".to_owned(),
                        average_value: Some(Quantity(target_outbox_lag_seconds.to_string())),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::sample_view;

    #[test]
    fn fixed_fleet_has_no_autoscaler() {
        assert!(horizontal_pod_autoscaler(&sample_view()).is_none());
    }

    #[test]
    fn scales_the_deployment_on_average_pod_lag() {
        let mut view = sample_view();
        view.scaling = Scaling::Autoscaled {
            min_replicas: 2,
            max_replicas: 12,
            target_outbox_lag_seconds: 45,
        };
        let hpa = horizontal_pod_autoscaler(&view).expect("hpa");
        assert_eq!(hpa.metadata.name.as_deref(), Some("bots"));
        let spec = hpa.spec.expect("spec");
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!(spec.scale_target_ref.name, "bots");
        assert_eq!(
            spec.scale_target_ref.api_version.as_deref(),
            Some("apps/v1")
        );
        assert_eq!(spec.min_replicas, Some(2));
        assert_eq!(spec.max_replicas, 12);
        let metrics = spec.metrics.expect("metrics");
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].type_, "Pods");
        let pods = metrics[0].pods.as_ref().expect("pods metric");
        assert_eq!(pods.metric.name, "sitg_bot_outbox_lag_seconds");
        assert_eq!(pods.target.type_, "AverageValue");
        assert_eq!(pods.target.average_value, Some(Quantity("45".to_owned())));
    }
}
