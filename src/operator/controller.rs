//! The kube-runtime controller: what triggers a reconcile, the thin `reconcile`
//! wrapper (times, counts, delegates to [`reconcile_fleet`]) and the `error_policy`
//! (counts by error variant, retries with exponential backoff).
//!
//! Triggers:
//! - `BotFleet` changes of `metadata.generation` only, so the operator's own status
//!   writes never cause another pass of the same generation;
//! - any change to an owned Deployment, Service, PodDisruptionBudget or
//!   HorizontalPodAutoscaler (hand edits are put back; Deployment progress updates the
//!   status);
//! - any change to a Secret the fleet owns or references (metadata-only watch, so
//!   Secret values are never cached), which rolls the fleet on rotation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::build::MANAGED_BY_SELECTOR;
use super::crd::{BotFleet, DefaultImage};
use super::dereference::referenced_secret_names;
use super::error::Error;
use super::metrics::Metrics;
use super::reconcile::reconcile_fleet;
use super::redelivery::Sweepers;

/// Name the operator reports as `reportingController` on its events.
pub const CONTROLLER_NAME: &str = "sitg.io/botfleet-operator";
/// Interval of the periodic re-check of a healthy fleet (a safety net for missed
/// watch events; a pass over an unchanged fleet writes nothing).
const RESYNC: Duration = Duration::from_secs(600);
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Which namespaces the controller watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (needs cluster-wide RBAC).
    AllNamespaces,
    /// One namespace (a namespaced Role is enough).
    Namespace(String),
}

impl Scope {
    /// `all_namespaces` or `namespace`, as logged.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::AllNamespaces => "all_namespaces",
            Self::Namespace(_) => "namespace",
        }
    }

    /// The one namespace watched; `None` for every namespace.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Self::AllNamespaces => None,
            Self::Namespace(ns) => Some(ns),
        }
    }

    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Self::AllNamespaces => Api::all(client.clone()),
            Self::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// State shared by every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder (one per process, so its event series cache is shared).
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// The redelivery sweepers of the fleets that enable them.
    pub sweepers: Sweepers,
    /// The worker image of fleets that pin none: the operator's own.
    pub default_image: DefaultImage,
    failures: Mutex<HashMap<ObjectRef<BotFleet>, u32>>,
}

impl Context {
    /// Creates the context; `instance` names this operator process in events. Fleets
    /// without a pinned image get the compiled-in default ([`DefaultImage::default`])
    /// until [`Context::with_default_image`] says otherwise.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: &str) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            sweepers: Sweepers::default(),
            default_image: DefaultImage::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The same context with `image` as the worker image of fleets that pin none.
    pub fn with_default_image(self, image: DefaultImage) -> Self {
        Self {
            default_image: image,
            ..self
        }
    }

    /// Counts one more consecutive failure of a fleet and returns the count.
    fn record_failure(&self, fleet: ObjectRef<BotFleet>) -> u32 {
        let mut failures = self.failures.lock();
        let n = failures.entry(fleet).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn clear_failures(&self, fleet: &ObjectRef<BotFleet>) {
        let mut failures = self.failures.lock();
        failures.remove(fleet);
    }
}

/// Delay before retry number `attempt` (1-based): 2 s doubling per attempt, capped
/// at 5 minutes.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX)
}

async fn reconcile(fleet: Arc<BotFleet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let timer = ctx.metrics.reconcile_duration.start_timer();
    let result = reconcile_fleet(&ctx.client, &ctx.recorder, &fleet, &ctx.default_image).await;
    timer.observe_duration();
    let report = result?;
    ctx.sweepers.ensure(
        &ctx.client,
        &fleet,
        report.redelivery.as_deref(),
        &ctx.metrics.redelivery,
    );
    debug!(
        event = "reconciled",
        fleet = %fleet.name_any(),
        changed = %report.changed.join(","),
        status_written = report.status_written,
        "reconciled"
    );
    ctx.clear_failures(&ObjectRef::from_obj(&*fleet));
    Ok(Action::requeue(RESYNC))
}

fn error_policy(fleet: Arc<BotFleet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.metric_label()])
        .inc();
    let attempt = ctx.record_failure(ObjectRef::from_obj(&*fleet));
    let delay = backoff_delay(attempt);
    warn!(
        event = "reconcile_failed",
        fleet = %fleet.name_any(),
        namespace = fleet.namespace().unwrap_or_default(),
        error = %error,
        attempt,
        retry_in_seconds = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Fleets to reconcile when a Secret changes: the fleet that owns it (the worker env
/// Secret) and every fleet of its namespace that references it.
pub fn fleets_for_secret(
    fleets: &[Arc<BotFleet>],
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<BotFleet>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    let mut refs: Vec<ObjectRef<BotFleet>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == BotFleet::kind(&()) && o.api_version == BotFleet::api_version(&()))
        .map(|o| {
            let r = ObjectRef::new(&o.name);
            match &namespace {
                Some(ns) => r.within(ns),
                None => r,
            }
        })
        .collect();
    refs.extend(
        fleets
            .iter()
            .filter(|f| f.namespace() == namespace)
            .filter(|f| referenced_secret_names(&f.spec).contains(&name.as_str()))
            .map(|f| ObjectRef::from_obj(&**f)),
    );
    refs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    refs.dedup();
    refs
}

/// Runs the controller until `shutdown` completes.
///
/// A shutdown before the first list of BotFleets has filled the store ends it at
/// once: the controller's own graceful stop would wait for that list for ever (the
/// shutdown also stops the watch that would deliver it), and no reconcile can have
/// started yet.
pub async fn run_controller(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let owned = || watcher::Config::default().labels(MANAGED_BY_SELECTOR);
    let shutdown = shutdown.shared();

    let (reader, writer) = reflector::store::<BotFleet>();
    let fleets = watcher(scope.api::<BotFleet>(&client), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    let secret_reader = reader.clone();
    let store = reader.clone();
    let stopped_before_first_list = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            if store.wait_until_ready().now_or_never().is_none() {
                return;
            }
            futures::future::pending::<()>().await;
        }
    };

    let controller = Controller::for_stream(fleets, reader)
        .owns(scope.api::<Deployment>(&client), owned())
        .owns(scope.api::<Service>(&client), owned())
        .owns(scope.api::<PodDisruptionBudget>(&client), owned())
        .owns(scope.api::<HorizontalPodAutoscaler>(&client), owned())
        // `PartialObjectMeta` makes this a metadata-only watch: Secret values are
        // never cached by the operator.
        .watches(
            scope.api::<PartialObjectMeta<Secret>>(&client),
            watcher::Config::default(),
            move |secret| fleets_for_secret(&secret_reader.state(), &secret),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(event = "controller_event", error = %e, "controller event");
            }
        });
    tokio::select! {
        () = controller => {}
        () = stopped_before_first_list => {
            debug!(
                event = "controller_stopped_before_first_list",
                "controller stopped before its first list"
            );
        }
    }
    // Only the leader sweeps: a stopped controller (leadership lost, or shutdown) takes
    // its fleets' sweepers with it.
    ctx.sweepers.stop_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::SecretKeyRef;
    use crate::operator::testing::sample_fleet;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    fn secret(ns: &str, name: &str, owners: Vec<OwnerReference>) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                owner_references: Some(owners),
                ..Default::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_secs(2));
        assert_eq!(backoff_delay(2), Duration::from_secs(4));
        assert_eq!(backoff_delay(5), Duration::from_secs(32));
        assert_eq!(backoff_delay(9), Duration::from_secs(300));
        assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn referenced_secret_maps_to_fleets_of_its_namespace() {
        let a = Arc::new(sample_fleet());
        let mut b = sample_fleet();
        b.metadata.name = Some("other".into());
        b.spec.backend.hmac_secret_ref = SecretKeyRef {
            name: "backend".into(),
            key: "hmac".into(),
        };
        let b = Arc::new(b);
        let mut elsewhere = sample_fleet();
        elsewhere.metadata.namespace = Some("elsewhere".into());
        let fleets = vec![a, b, Arc::new(elsewhere)];

        let names = |refs: Vec<ObjectRef<BotFleet>>| {
            refs.into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(fleets_for_secret(&fleets, &secret("sitg", "bot", vec![]))),
            ["sitg/bots", "sitg/other"]
        );
        assert_eq!(
            names(fleets_for_secret(
                &fleets,
                &secret("sitg", "backend", vec![])
            )),
            ["sitg/other"]
        );
        assert!(fleets_for_secret(&fleets, &secret("sitg", "unrelated", vec![])).is_empty());
    }

    #[test]
    fn owned_secret_maps_to_its_owner() {
        let fleet = sample_fleet();
        let owner = fleet.controller_owner_ref(&()).expect("owner ref");
        let refs = fleets_for_secret(&[], &secret("sitg", "bots-worker-env", vec![owner]));
        assert_eq!(refs, [ObjectRef::<BotFleet>::new("bots").within("sitg")]);
        let foreign = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "bots".into(),
            uid: "x".into(),
            ..Default::default()
        };
        assert!(fleets_for_secret(&[], &secret("sitg", "s", vec![foreign])).is_empty());
    }
}
