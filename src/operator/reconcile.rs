//! One reconcile pass of a `BotFleet`, as a pipeline:
//! dereference → validate → build → apply (fixed order) → status.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::apply::{self, FIELD_MANAGER};
use super::build::{self, Children};
use super::crd::{BotFleet, DefaultImage};
use super::dereference::fetch_referenced_secrets;
use super::error::Error;
use super::redelivery::{SweepTarget, sweep_target};
use super::status::{self, desired_status};
use super::validate::{Scaling, ValidFleet, validate};

/// What a pass wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Kinds of the children this pass created, changed or deleted, in apply order
    /// (`Secret`, `Service`, `Deployment`, `PodDisruptionBudget`,
    /// `HorizontalPodAutoscaler`).
    pub changed: Vec<&'static str>,
    /// Whether the fleet's status was written.
    pub status_written: bool,
    /// The fleet's redelivery sweep, when `spec.redelivery.enabled`; the controller
    /// hands it to its [`super::redelivery::Sweepers`].
    pub redelivery: Option<Arc<SweepTarget>>,
}

impl PassReport {
    /// True when the pass wrote nothing at all.
    pub fn wrote_nothing(&self) -> bool {
        self.changed.is_empty() && !self.status_written
    }
}

/// Reconciles one fleet; `default_image` (the operator's own image) fills what
/// `spec.image` does not pin.
///
/// On a missing or unusable Secret or an invalid spec, writes a `Degraded` status and
/// a Warning event, leaves the existing children running, and returns the error so
/// the controller retries with backoff.
///
/// # Errors
/// The pipeline's [`Error`]s; client errors of the status write or of the children.
pub async fn reconcile_fleet(
    client: &Client,
    recorder: &Recorder,
    fleet: &BotFleet,
    default_image: &DefaultImage,
) -> Result<PassReport, Error> {
    let namespace = fleet
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a BotFleet must be namespaced".into()))?;
    let name = fleet.name_any();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);

    let outcome = async {
        let values = fetch_referenced_secrets(&secrets, &fleet.spec).await?;
        let view = validate(fleet, values, default_image)?;
        let redelivery = sweep_target(fleet.spec.redelivery.as_ref(), &view)
            .map_err(|e| Error::InvalidSpec(format!("spec.redelivery: {e}")))?;
        let children = build::children(&view);
        let (changed, deployment) = apply_children(client, &view, children).await?;
        Ok::<_, Error>((changed, deployment, redelivery))
    }
    .await;

    match outcome {
        Ok((changed, deployment, redelivery)) => {
            let status_written =
                write_status(client, &namespace, fleet, Some(&deployment), None).await?;
            if !changed.is_empty() {
                info!(
                    event = "applied_children",
                    fleet = %name,
                    namespace = %namespace,
                    changed = %changed.join(","),
                    "applied children"
                );
                publish(
                    recorder,
                    fleet,
                    EventType::Normal,
                    "Applied",
                    format!("applied {}", changed.join(", ")),
                )
                .await;
            }
            Ok(PassReport {
                changed,
                status_written,
                redelivery: redelivery.map(Arc::new),
            })
        }
        Err(error) => {
            let Some(reason) = error.degraded_reason() else {
                return Err(error);
            };
            let deployment = deployments
                .get_opt(&name)
                .await
                .map_err(|e| Error::kube(format!("reading Deployment {name}"), e))?;
            write_status(client, &namespace, fleet, deployment.as_ref(), Some(&error)).await?;
            publish(
                recorder,
                fleet,
                EventType::Warning,
                reason,
                error.to_string(),
            )
            .await;
            Err(error)
        }
    }
}

/// Applies the children in a fixed order (Secret, Service, Deployment, PDB, then the
/// HPA or its removal) and returns the kinds that changed and the applied Deployment.
async fn apply_children(
    client: &Client,
    view: &ValidFleet,
    children: Children,
) -> Result<(Vec<&'static str>, Deployment), Error> {
    let ns = view.namespace.as_str();
    let mut changed = Vec::new();

    let secret = apply::apply(
        &Api::<Secret>::namespaced(client.clone(), ns),
        &children.secret,
    )
    .await?;
    if secret.changed {
        changed.push("Secret");
    }
    let service = apply::apply(
        &Api::<Service>::namespaced(client.clone(), ns),
        &children.service,
    )
    .await?;
    if service.changed {
        changed.push("Service");
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = apply_deployment(&deployments, view, &children.deployment).await?;
    if deployment.changed {
        changed.push("Deployment");
    }

    let pdb = apply::apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        &children.pod_disruption_budget,
    )
    .await?;
    if pdb.changed {
        changed.push("PodDisruptionBudget");
    }

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    match &children.horizontal_pod_autoscaler {
        Some(hpa) => {
            if apply::apply(&hpas, hpa).await?.changed {
                changed.push("HorizontalPodAutoscaler");
            }
        }
        None => {
            if apply::delete_owned(&hpas, &view.name, &view.owner.uid).await? {
                changed.push("HorizontalPodAutoscaler");
            }
        }
    }
    Ok((changed, deployment.object))
}

/// Applies the Deployment; while autoscaling is on, makes sure the operator does not
/// own `spec.replicas` (the HPA does) and that a new Deployment starts at
/// `minReplicas` rather than the API default of 1.
async fn apply_deployment(
    api: &Api<Deployment>,
    view: &ValidFleet,
    desired: &Deployment,
) -> Result<apply::Applied<Deployment>, Error> {
    let Scaling::Autoscaled { min_replicas, .. } = view.scaling else {
        return apply::apply(api, desired).await;
    };
    let existing = api
        .get_opt(&view.name)
        .await
        .map_err(|e| Error::kube(format!("reading Deployment {}", view.name), e))?;
    let mut created = false;
    let live = match existing {
        Some(live) => live,
        None => {
            let mut first = desired.clone();
            if let Some(spec) = first.spec.as_mut() {
                spec.replicas = Some(min_replicas);
            }
            created = true;
            apply::apply(api, &first).await?.object
        }
    };
    if !apply::owns_replicas(&live) {
        let mut applied = apply::apply(api, desired).await?;
        applied.changed |= created;
        return Ok(applied);
    }
    let replicas = live
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(min_replicas);
    apply::hand_over_replicas(api, &view.name, replicas).await?;
    let mut applied = apply::apply(api, desired).await?;
    applied.changed = true;
    Ok(applied)
}

/// Writes the computed status by server-side apply of the status subresource, unless
/// it equals the stored one. Returns whether it wrote.
async fn write_status(
    client: &Client,
    namespace: &str,
    fleet: &BotFleet,
    deployment: Option<&Deployment>,
    failure: Option<&Error>,
) -> Result<bool, Error> {
    let desired = desired_status(fleet, deployment, failure, &status::now());
    if fleet.status.as_ref() == Some(&desired) {
        return Ok(false);
    }
    let name = fleet.name_any();
    let api: Api<BotFleet> = Api::namespaced(client.clone(), namespace);
    // The API server rejects an apply body without apiVersion and kind.
    let body = json!({
        "apiVersion": BotFleet::api_version(&()),
        "kind": BotFleet::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube(format!("writing status of BotFleet {name}"), e))?;
    Ok(true)
}

/// Publishes an event about the fleet; a failure to publish is logged, not fatal.
async fn publish(
    recorder: &Recorder,
    fleet: &BotFleet,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &fleet.object_ref(&())).await {
        warn!(
            event = "could_not_publish_event",
            fleet = %fleet.name_any(),
            error = %e,
            "could not publish event"
        );
    }
}
