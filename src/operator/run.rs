//! `sitg-bot operator`: options, CRD installation, and the process that ties the
//! controller, leader election and the metrics endpoint together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Api, Client, Config, CustomResourceExt, ResourceExt};
use tracing::info;

use super::apply::FIELD_MANAGER;
use super::controller::{Context, Scope, run_controller};
use super::crd::{BotFleet, DefaultImage};
use super::http;
use super::leader::{LeaderError, LeaseSettings, run_as_leader};
use super::metrics::Metrics;
use crate::contract::operator_env;
use crate::shutdown::{Phase, Shutdown};

/// Command-line options of `sitg-bot operator`; each also reads an environment
/// variable so a Deployment can configure it without args.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorOptions {
    /// Watch only this namespace (a namespaced Role suffices); all namespaces when unset.
    #[arg(long, env = "SITG_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the coordination.k8s.io/v1 Lease used for leader election.
    #[arg(
        long,
        env = "SITG_OPERATOR_LEASE_NAME",
        default_value = "sitg-bot-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; defaults to --namespace, else the namespace of the
    /// kubeconfig context or of the pod's service account.
    #[arg(long, env = "SITG_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds the Lease stays valid without renewal (takeover time after a crash).
    #[arg(long, env = "SITG_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_duration_seconds: u64,
    /// Seconds before expiry at which the leader renews the Lease.
    #[arg(long, env = "SITG_OPERATOR_LEASE_GRACE_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=299))]
    pub lease_grace_seconds: u64,
    /// Leader identity of this process; in a cluster set it to the pod name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Listen address of /metrics and /healthz.
    #[arg(
        long,
        env = "SITG_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: SocketAddr,
    /// Server-side-apply the BotFleet CRD of this release at start and wait until it
    /// is established: the upgrade path for the CRD (Helm never upgrades `crds/`).
    /// Needs get, list, watch and patch on customresourcedefinitions/botfleets.sitg.io
    /// (and create if the CRD does not exist yet).
    #[arg(long, env = "SITG_OPERATOR_APPLY_CRD", default_value_t = false)]
    pub apply_crd: bool,
    /// Repository of the operator's own image: the worker image repository of fleets
    /// without `spec.image.repository` (the chart sets it from `image.repository`).
    /// Unset or empty: `ghcr.io/sitg/sitg-bot`.
    #[arg(long, env = operator_env::OPERATOR_IMAGE_REPOSITORY)]
    pub image_repository: Option<String>,
    /// Tag of the operator's own image: the worker image tag of fleets without
    /// `spec.image.tag` (the chart sets it from `image.tag`, else its appVersion).
    /// Unset or empty: this operator's version.
    #[arg(long, env = operator_env::OPERATOR_IMAGE_TAG)]
    pub image_tag: Option<String>,
}

impl OperatorOptions {
    /// The worker image of fleets that pin none ([`DefaultImage`]): the operator's
    /// own, else the compiled-in default.
    pub fn default_image(&self) -> DefaultImage {
        DefaultImage::new(self.image_repository.as_deref(), self.image_tag.as_deref())
    }
}

/// Errors that stop the operator process.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No kubeconfig and not in a cluster, or an unusable configuration.
    #[error("loading the Kubernetes client configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The client could not be built or a startup API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The CRD did not become established in time.
    #[error("the BotFleet CRD was not established within {0:?}")]
    CrdNotEstablished(Duration),
    /// The metrics listener could not be bound or failed.
    #[error("metrics listener on {addr}: {source}")]
    Listen {
        /// Listen address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A metric definition was refused (a programming error).
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Leader election failed.
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Server-side-applies the `BotFleet` CRD generated from this build and waits until
/// the API server serves it.
///
/// # Errors
/// [`RunError::Kube`] when the apply fails; [`RunError::CrdNotEstablished`] after
/// a minute without the `Established` condition.
pub async fn apply_crd(client: &Client) -> Result<(), RunError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = BotFleet::crd();
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|source| RunError::Kube {
        action: "applying the BotFleet CRD",
        source,
    })?;
    let established = await_condition(api, &name, conditions::is_crd_established());
    match tokio::time::timeout(CRD_ESTABLISH_TIMEOUT, established).await {
        Ok(Ok(_)) => {
            info!(
                event = "crd_applied_and_established",
                crd = %name,
                "CRD applied and established"
            );
            Ok(())
        }
        Ok(Err(_)) | Err(_) => Err(RunError::CrdNotEstablished(CRD_ESTABLISH_TIMEOUT)),
    }
}

/// Runs the operator until `shutdown` enters [`Phase::Requested`]: the metrics endpoint
/// always, the controller only while this process is the leader. On the request it
/// logs `shutdown_requested` and enters [`Phase::StopAccepting`], which ends the
/// controller (its reconciles in flight get their drain budget), releases the Lease and
/// stops the metrics endpoint.
///
/// # Errors
/// [`RunError`] for a configuration, startup or leader-election failure.
pub async fn run(options: OperatorOptions, shutdown: Shutdown) -> Result<(), RunError> {
    crate::tls::install_crypto_provider();
    let config = Config::infer().await?;
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|source| RunError::Kube {
        action: "building the Kubernetes client",
        source,
    })?;

    if options.apply_crd {
        apply_crd(&client).await?;
    }

    let metrics = Arc::new(Metrics::new()?);
    let listener = tokio::net::TcpListener::bind(options.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: options.metrics_addr,
            source,
        })?;
    info!(
        event = "operator_http_serving",
        addr = %options.metrics_addr,
        "serving /metrics and /healthz"
    );
    let server = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        shutdown.entered_owned(Phase::StopAccepting),
    ));

    let signal = shutdown.clone();
    let on_request = tokio::spawn(async move {
        signal.entered(Phase::Requested).await;
        info!(event = "shutdown_requested", "shutdown requested");
        signal.enter(Phase::StopAccepting);
    });

    let scope = match &options.namespace {
        Some(ns) => Scope::Namespace(ns.clone()),
        None => Scope::AllNamespaces,
    };
    let identity = options
        .identity
        .clone()
        .unwrap_or_else(|| format!("sitg-bot-operator-{}", uuid::Uuid::new_v4().simple()));
    let lease = LeaseSettings {
        name: options.lease_name.clone(),
        namespace: options
            .lease_namespace
            .clone()
            .or_else(|| options.namespace.clone())
            .unwrap_or(default_namespace),
        identity: identity.clone(),
        duration_seconds: options.lease_duration_seconds,
        grace_seconds: options
            .lease_grace_seconds
            .min(options.lease_duration_seconds.saturating_sub(1)),
    };
    info!(
        event = "operator_starting",
        scope = scope.as_label(),
        watched_namespace = scope.namespace(),
        lease = %lease.name,
        lease_namespace = %lease.namespace,
        %identity,
        "starting operator"
    );

    let default_image = options.default_image();
    info!(
        event = "operator_default_image",
        repository = %default_image.repository,
        tag = %default_image.tag,
        "fleets without a pinned image run the operator's own"
    );
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), &identity).with_default_image(default_image),
    );
    let lead = || {
        run_controller(
            ctx.clone(),
            scope.clone(),
            shutdown.entered_owned(Phase::StopAccepting),
        )
    };
    let result = run_as_leader(client, &lease, metrics, lead, shutdown.clone()).await;

    // Stopping on its own (the leader election failed) is no shutdown request: the
    // task waiting for one ends without a word before the phases are entered.
    on_request.abort();
    shutdown.enter(Phase::StopAccepting);
    if let Ok(Err(source)) = server.await {
        return Err(RunError::Listen {
            addr: options.metrics_addr,
            source,
        });
    }
    result.map_err(RunError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    fn options(args: &[&str]) -> OperatorOptions {
        let command = OperatorOptions::augment_args(clap::Command::new("operator"));
        let matches = command
            .try_get_matches_from(std::iter::once("operator").chain(args.iter().copied()))
            .expect("args parse");
        OperatorOptions::from_arg_matches(&matches).expect("options")
    }

    #[test]
    fn the_default_worker_image_is_the_one_the_operator_is_told() {
        let told = options(&[
            "--image-repository=registry.example/sitg-bot",
            "--image-tag=0.1.0-next",
        ]);
        assert_eq!(
            told.default_image(),
            DefaultImage::new(Some("registry.example/sitg-bot"), Some("0.1.0-next"))
        );
        // Only the tag: the compiled-in repository.
        let tag_only = options(&["--image-tag=0.1.0-next"]).default_image();
        assert_eq!(
            tag_only.repository,
            super::super::crd::DEFAULT_IMAGE_REPOSITORY
        );
        assert_eq!(tag_only.tag, "0.1.0-next");
    }
}
