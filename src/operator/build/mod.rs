//! Build: pure functions from a [`ValidFleet`] to the child objects, one builder per
//! kind. No client, no clock; unit tests assert on the returned objects field by field.
//!
//! Children are named after the fleet (`<fleet>` for the Deployment, Service,
//! PodDisruptionBudget and HorizontalPodAutoscaler, `<fleet>-worker-env` for the
//! Secret), carry the labels of [`labels`] and a controller owner reference to the
//! fleet, so deleting the fleet lets the garbage collector remove them.

mod deployment;
mod hpa;
mod pdb;
mod secret;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

pub use deployment::{CHECKSUM_ANNOTATION, METRICS_PORT, WEBHOOK_PORT, deployment};
pub use hpa::{LAG_METRIC, horizontal_pod_autoscaler};
pub use pdb::pod_disruption_budget;
pub use secret::{worker_env_checksum, worker_env_secret};
pub use service::service;

use super::validate::ValidFleet;

/// `app.kubernetes.io/name` of every child.
pub const APP_NAME: &str = "sitg-bot";
/// `app.kubernetes.io/managed-by` of every child; the controller watches children
/// through this label.
pub const MANAGED_BY: &str = "sitg-bot-operator";
/// Label selector (string form) matching every child the operator manages.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=sitg-bot-operator";

/// Name of the Secret holding a fleet's worker secrets.
pub fn worker_env_secret_name(fleet: &str) -> String {
    format!("{fleet}-worker-env")
}

/// Labels selecting a fleet's worker pods (Deployment selector, Service, PDB).
pub fn selector_labels(fleet: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), fleet.to_owned()),
    ])
}

/// The selector labels in string form, as `status.selector` reports them for the
/// scale subresource.
pub fn selector_string(fleet: &str) -> String {
    selector_labels(fleet)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every child object and on the worker pods.
pub fn labels(fleet: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(fleet);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "worker".to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    labels
}

/// Metadata of a child: name, namespace, labels, controller owner reference.
fn child_meta(fleet: &ValidFleet, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(fleet.namespace.clone()),
        labels: Some(labels(&fleet.name)),
        owner_references: Some(vec![fleet.owner.clone()]),
        ..Default::default()
    }
}

fn pod_selector(fleet: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(fleet)),
        ..Default::default()
    }
}

/// Every child of a fleet, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The worker secrets, referenced by the pod template's `secretKeyRef`s.
    pub secret: Secret,
    /// Webhook and metrics ports.
    pub service: Service,
    /// The worker pods. `spec.replicas` is `None` while autoscaling is on.
    pub deployment: Deployment,
    /// At most one worker pod voluntarily disrupted at a time.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// Present while autoscaling is on; absent means "delete it".
    pub horizontal_pod_autoscaler: Option<HorizontalPodAutoscaler>,
}

/// Builds every child of a fleet.
pub fn children(fleet: &ValidFleet) -> Children {
    let secret = worker_env_secret(fleet);
    let checksum = worker_env_checksum(&secret);
    Children {
        service: service(fleet),
        deployment: deployment(fleet, &checksum),
        pod_disruption_budget: pod_disruption_budget(fleet),
        horizontal_pod_autoscaler: horizontal_pod_autoscaler(fleet),
        secret,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::sample_view;

    #[test]
    fn labels_and_selector() {
        assert_eq!(
            selector_string("bots"),
            "app.kubernetes.io/instance=bots,app.kubernetes.io/name=sitg-bot"
        );
        let l = labels("bots");
        assert_eq!(l["app.kubernetes.io/managed-by"], "sitg-bot-operator");
        assert_eq!(l["app.kubernetes.io/component"], "worker");
        assert_eq!(
            MANAGED_BY_SELECTOR,
            format!("app.kubernetes.io/managed-by={MANAGED_BY}")
        );
    }

    #[test]
    fn every_child_is_owned_and_labelled() {
        let view = sample_view();
        let c = children(&view);
        let metas = [
            &c.secret.metadata,
            &c.service.metadata,
            &c.deployment.metadata,
            &c.pod_disruption_budget.metadata,
        ];
        for meta in metas {
            assert_eq!(meta.namespace.as_deref(), Some("sitg"));
            assert_eq!(
                meta.owner_references.as_deref(),
                Some(&[view.owner.clone()][..])
            );
            assert_eq!(meta.labels.as_ref(), Some(&labels("bots")));
        }
        assert_eq!(c.secret.metadata.name.as_deref(), Some("bots-worker-env"));
        assert_eq!(c.deployment.metadata.name.as_deref(), Some("bots"));
        assert!(c.horizontal_pod_autoscaler.is_none());
    }
}
