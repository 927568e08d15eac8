//! The Service in front of the worker pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{METRICS_PORT, child_meta, selector_labels};
use crate::operator::validate::ValidFleet;

/// Service port receiving GitHub's `POST /webhooks/github` (point an Ingress here).
pub const SERVICE_HTTP_PORT: i32 = 80;

/// Builds a ClusterIP Service: port 80 `http` → the webhook listener, port 9090
/// `metrics` → `/metrics` (for a ServiceMonitor or the Prometheus adapter).
pub fn service(fleet: &ValidFleet) -> Service {
    Service {
        metadata: child_meta(fleet, fleet.name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(&fleet.name)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".to_owned()),
                    port: SERVICE_HTTP_PORT,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("metrics".to_owned()),
                    port: METRICS_PORT,
                    target_port: Some(IntOrString::String("metrics".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::sample_view;

    #[test]
    fn routes_webhooks_and_metrics_to_named_ports() {
        let s = service(&sample_view());
        assert_eq!(s.metadata.name.as_deref(), Some("bots"));
        let spec = s.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector, Some(selector_labels("bots")));
        let ports: Vec<_> = spec
            .ports
            .expect("ports")
            .into_iter()
            .map(|p| (p.name, p.port, p.target_port))
            .collect();
        assert_eq!(
            ports,
            [
                (
                    Some("http".to_owned()),
                    80,
                    Some(IntOrString::String("http".to_owned()))
                ),
                (
                    Some("metrics".to_owned()),
                    9090,
                    Some(IntOrString::String("metrics".to_owned()))
                ),
            ]
        );
    }
}
