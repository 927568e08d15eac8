//! The `BotFleet` operator: a kube-rs controller that turns a `BotFleet` custom
//! resource (`sitg.io/v1alpha1`) into a production fleet of `sitg-bot worker` pods.
//!
//! A reconcile pass is a pipeline of small stages, each in its own module:
//!
//! 1. [`dereference`]: read the Secrets the fleet references;
//! 2. [`validate`]: build a checked, typed view ([`validate::ValidFleet`]);
//! 3. [`build`]: pure builders, one per child kind (Secret, Service, Deployment,
//!    PodDisruptionBudget, HorizontalPodAutoscaler);
//! 4. [`apply`]: server-side apply with one field manager, in a fixed order, and
//!    removal of the autoscaler when autoscaling is off;
//! 5. [`status`]: the fleet's status, written by server-side apply of the status
//!    subresource, with `Ready`/`Progressing`/`Degraded` conditions.
//!
//! [`controller`] wires the pass to watches and retries, [`leader`] makes sure one
//! replica reconciles, [`run`] is the `sitg-bot operator` process and [`crd`] the
//! resource definition (`sitg-bot crd`).
//!
//! # API access the operator needs (for RBAC)
//!
//! In the watched namespace(s), or cluster-wide without `--namespace`:
//!
//! | API group | resources | verbs |
//! | --- | --- | --- |
//! | `sitg.io` | `botfleets` | get, list, watch |
//! | `sitg.io` | `botfleets/status` | get, patch |
//! | `""` | `secrets` | get, list, watch, create, patch (list/watch use metadata only) |
//! | `""` | `services` | get, list, watch, create, patch |
//! | `apps` | `deployments` | get, list, watch, create, patch |
//! | `policy` | `poddisruptionbudgets` | get, list, watch, create, patch |
//! | `autoscaling` | `horizontalpodautoscalers` | get, list, watch, create, patch, delete |
//! | `events.k8s.io` | `events` | create, patch |
//!
//! In the Lease namespace: `coordination.k8s.io` `leases`: get, create, patch.
//! With `--apply-crd` only, cluster-wide: `apiextensions.k8s.io`
//! `customresourcedefinitions` named `botfleets.sitg.io`: get, list, watch, patch
//! (the Helm chart grants these; create is needed only when the CRD does not exist yet).

pub mod apply;
pub mod build;
pub mod controller;
pub mod crd;
pub mod dereference;
mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod redelivery;
pub mod run;
pub mod status;
pub mod validate;

#[cfg(test)]
pub(crate) mod testing;

pub use controller::{Context, Scope, run_controller};
pub use crd::{BotFleet, BotFleetSpec, BotFleetStatus, crd_yaml};
pub use error::Error;
pub use reconcile::{PassReport, reconcile_fleet};
pub use run::{OperatorOptions, RunError, apply_crd, run};
