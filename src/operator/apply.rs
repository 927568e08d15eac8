//! Apply: server-side apply of built children with one field manager, the
//! replicas hand-over to the HorizontalPodAutoscaler, and removal of a child that is
//! no longer wanted.
//!
//! Server-side apply of an unchanged configuration is a no-op on the API server (no
//! new resourceVersion), which is what makes a pass over an unchanged fleet write
//! nothing. `force` takes back fields someone edited by hand, which is drift repair.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::Error;

/// Field manager of every write the operator makes to children and to fleet status.
pub const FIELD_MANAGER: &str = "sitg-bot-operator";
/// Field manager that holds a Deployment's `spec.replicas` while the operator lets go
/// of it for the HorizontalPodAutoscaler (see [`hand_over_replicas`]).
pub const REPLICAS_HANDOVER_MANAGER: &str = "sitg-bot-operator-replicas-handover";

/// Server-side-apply parameters of the operator's field manager, forcing conflicts.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A child after apply.
#[derive(Debug, Clone)]
pub struct Applied<K> {
    /// The object as the API server returned it.
    pub object: K,
    /// Whether this apply changed what the operator manages (created the object or
    /// changed one of its fields).
    pub changed: bool,
}

/// The operator's `Apply` entry of an object's `managedFields`: which fields it owns
/// and when it last changed one. Unchanged by a no-op apply.
pub fn own_entry(entries: &[ManagedFieldsEntry]) -> Option<&ManagedFieldsEntry> {
    entries.iter().find(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().is_none_or(str::is_empty)
    })
}

/// Whether the operator's apply owns a Deployment's `spec.replicas`.
pub fn owns_replicas(deployment: &Deployment) -> bool {
    own_entry(deployment.managed_fields())
        .and_then(|e| e.fields_v1.as_ref())
        .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
}

/// Server-side-applies `object` (its name must be set).
///
/// # Errors
/// [`Error::Kube`] when the read or the apply fails.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<Applied<K>, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let name = object.name_any();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let before = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(format!("reading {kind} {name}"), e))?;
    let after = api
        .patch(&name, &apply_params(), &Patch::Apply(object))
        .await
        .map_err(|e| Error::kube(format!("applying {kind} {name}"), e))?;
    let changed = match &before {
        None => true,
        Some(before) => own_entry(before.managed_fields()) != own_entry(after.managed_fields()),
    };
    Ok(Applied {
        object: after,
        changed,
    })
}

/// Lets the operator's field manager give up `spec.replicas` of a live Deployment
/// without the count dropping to the default of 1.
///
/// When an applier stops sending a field it alone owns, the API server removes the
/// field. So a second manager first applies the current count, becoming co-owner;
/// the operator's next apply (without `replicas`) then leaves the field with that
/// manager, and the HorizontalPodAutoscaler takes it from there.
///
/// # Errors
/// [`Error::Kube`] when the apply fails.
pub async fn hand_over_replicas(
    api: &Api<Deployment>,
    name: &str,
    replicas: i32,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    });
    api.patch(
        name,
        &PatchParams::apply(REPLICAS_HANDOVER_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube(format!("handing over replicas of Deployment {name}"), e))?;
    Ok(())
}

/// Deletes the named child if it exists and is controlled by the owner with uid
/// `owner_uid`; an object of the same name that someone else owns is left alone.
/// Returns whether a delete was sent.
///
/// # Errors
/// [`Error::Kube`] when the read or the delete fails (a concurrent delete is fine).
pub async fn delete_owned<K>(api: &Api<K>, name: &str, owner_uid: &str) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading {kind} {name}"), e))?
    else {
        return Ok(false);
    };
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    if !ours {
        return Ok(false);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(Error::kube(format!("deleting {kind} {name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;

    fn entry(manager: &str, operation: &str, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some(operation.to_owned()),
            fields_v1: Some(FieldsV1(fields)),
            fields_type: Some("FieldsV1".to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn finds_only_the_operators_apply_entry() {
        let entries = vec![
            entry("kubectl-edit", "Update", json!({"f:spec": {}})),
            entry(FIELD_MANAGER, "Update", json!({"f:status": {}})),
            entry(
                FIELD_MANAGER,
                "Apply",
                json!({"f:spec": {"f:template": {}}}),
            ),
        ];
        let own = own_entry(&entries).expect("entry");
        assert_eq!(own.operation.as_deref(), Some("Apply"));
        assert!(own_entry(&entries[..2]).is_none());
        let mut status = entry(FIELD_MANAGER, "Apply", json!({"f:status": {}}));
        status.subresource = Some("status".to_owned());
        assert!(own_entry(&[status]).is_none());
    }

    #[test]
    fn detects_replicas_ownership() {
        let mut d = Deployment::default();
        d.metadata.managed_fields = Some(vec![
            entry(
                FIELD_MANAGER,
                "Apply",
                json!({"f:spec": {"f:replicas": {}, "f:template": {}}}),
            ),
            entry(
                "kube-controller-manager",
                "Update",
                json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert!(owns_replicas(&d));
        d.metadata.managed_fields = Some(vec![
            entry(
                FIELD_MANAGER,
                "Apply",
                json!({"f:spec": {"f:template": {}}}),
            ),
            entry(
                REPLICAS_HANDOVER_MANAGER,
                "Apply",
                json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert!(!owns_replicas(&d));
    }
}
