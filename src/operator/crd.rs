//! The `BotFleet` custom resource (`sitg.io/v1alpha1`): its Rust types, the OpenAPI
//! schema and CEL rules the API server enforces, and the CRD document `sitg-bot crd`
//! prints.
//!
//! A `BotFleet` carries the non-secret settings of the deployment guide and *references*
//! (`name` + `key`) to Secrets for every secret value; no secret value is ever written
//! into a `BotFleet`.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the `BotFleet` resource.
pub const GROUP: &str = "sitg.io";
/// API version of the `BotFleet` resource.
pub const VERSION: &str = "v1alpha1";
/// Container image repository used when `spec.image.repository` is not set and the
/// operator was not told its own image (`SITG_OPERATOR_IMAGE_REPOSITORY`); the
/// project's `Dockerfile` publishes the `sitg-bot` binary under this name.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/sitg/sitg-bot";
/// Image tag used when `spec.image.tag` is not set and the operator was not told its
/// own image (`SITG_OPERATOR_IMAGE_TAG`): the operator's version, so an operator and
/// the workers it deploys come from the same release. Resolved at each reconcile
/// ([`ImageSpec::reference`]), never stored by the schema: a fleet without a tag
/// follows the operator through upgrades.
pub const DEFAULT_IMAGE_TAG: &str = env!("CARGO_PKG_VERSION");

/// The worker image of fleets that do not pin one: the operator's own image as the
/// chart tells it (`SITG_OPERATOR_IMAGE_REPOSITORY`, `SITG_OPERATOR_IMAGE_TAG`), each
/// part falling back to the compiled-in [`DEFAULT_IMAGE_REPOSITORY`] and
/// [`DEFAULT_IMAGE_TAG`]. A `helm upgrade` to another image therefore moves every
/// fleet that pins neither, even to a tag of the same version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultImage {
    /// Repository of fleets without `spec.image.repository`, e.g. `ghcr.io/sitg/sitg-bot`.
    pub repository: String,
    /// Tag of fleets without `spec.image.tag`, e.g. `0.1.0`.
    pub tag: String,
}

impl Default for DefaultImage {
    /// The compiled-in default: [`DEFAULT_IMAGE_REPOSITORY`] at [`DEFAULT_IMAGE_TAG`].
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl DefaultImage {
    /// The operator's own image; `None` or an empty string leaves that part at the
    /// compiled-in default (an empty chart value means "unset").
    pub fn new(repository: Option<&str>, tag: Option<&str>) -> Self {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        Self {
            repository: given(repository)
                .unwrap_or(DEFAULT_IMAGE_REPOSITORY)
                .to_owned(),
            tag: given(tag).unwrap_or(DEFAULT_IMAGE_TAG).to_owned(),
        }
    }
}

/// GitHub REST API base URL used when `spec.github.apiBaseUrl` is not set.
pub const DEFAULT_GITHUB_API_BASE_URL: &str = crate::contract::env::DEFAULT_GITHUB_API_BASE_URL;

/// CEL rule for URL fields: an absolute `http`/`https` URL with a host.
///
/// `isURL` alone accepts relative references such as `/x`, so the scheme and host are
/// checked through the `url()` library as well.
const URL_RULE: &str =
    "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''";
const URL_MESSAGE: &str = "must be an absolute http or https URL, such as https://sitg.io";

/// Desired state of a fleet of `sitg-bot worker` pods.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sitg.io",
    version = "v1alpha1",
    kind = "BotFleet",
    plural = "botfleets",
    namespaced,
    shortname = "bf",
    category = "sitg",
    status = "BotFleetStatus",
    derive = "PartialEq",
    doc = "A fleet of SITG GitHub App bot workers: webhook ingress and outbox execution.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        description = "Worker pods ready",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        description = "Worker pods wanted by the Deployment (fixed or set by the autoscaler)",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(
        name = "Lag-Target",
        type_ = "integer",
        description = "Average outbox lag per pod, in seconds, the autoscaler aims for",
        json_path = ".spec.autoscaling.targetOutboxLagSeconds"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        description = "What to look at first: Degraded's reason while degraded, else Ready's while not ready, else RollingOut or ReplicasReady",
        json_path = ".status.reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        description = "The message of the condition the Status column names",
        json_path = ".status.message"
    ),
    validation = Rule::new("self.metadata.name.size() <= 52").message(
        "metadata.name must be at most 52 characters: it names the fleet's Deployment, Service and pods"
    ),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.autoscaling) || !self.autoscaling.enabled || !has(self.outbox) || self.outbox.pollingEnabled"
).message("autoscaling scales on outbox lag, so it needs outbox.pollingEnabled: true"))]
pub struct BotFleetSpec {
    /// Container image of the workers.
    #[serde(default)]
    pub image: ImageSpec,
    /// GitHub App settings.
    pub github: GitHubSpec,
    /// SITG backend settings.
    pub backend: BackendSpec,
    /// Outbox polling settings.
    #[serde(default)]
    pub outbox: OutboxSpec,
    /// Number of worker pods when autoscaling is off; ignored while autoscaling is on
    /// (the HorizontalPodAutoscaler owns the Deployment's replica count then).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Horizontal autoscaling on the per-pod outbox lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Compute resources of the worker container; modest defaults apply when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Extra annotations on the worker pods (for example for a service mesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    /// Extra labels on the worker pods (for example a cost centre or a mesh opt-in). The
    /// `app.kubernetes.io/` labels the operator selects and watches pods by are its own
    /// and cannot be set here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(POD_LABELS_RULE).message(POD_LABELS_MESSAGE))]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Secrets in the fleet's namespace holding credentials for the registry of
    /// `image` (`imagePullSecrets` of the worker pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(s, has(s.name) && s.name != '')")
        .message("every imagePullSecrets entry needs a name"))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// How the worker pods spread over the cluster. Unset: over nodes
    /// (`kubernetes.io/hostname`) and zones (`topology.kubernetes.io/zone`) with
    /// `maxSkew: 1` and `whenUnsatisfiable: ScheduleAnyway`, counted per rollout
    /// revision, so losing one node or zone never takes the whole fleet while a cluster
    /// too small to spread still schedules every pod. An empty list turns spreading
    /// off. A constraint without `labelSelector` gets the fleet's pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new(SPREAD_RULE).message(SPREAD_MESSAGE))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Node and pod (anti-)affinity of the worker pods, as in a Pod's `affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the worker pods; the class must exist, or the ReplicaSet
    /// cannot create pods (the fleet then reports the Deployment's failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Log level of the workers (`RUST_LOG`); unset means `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// Redelivery of webhook deliveries that failed (GitHub never redelivers by
    /// itself): the operator's leader sweeps the App's delivery log for this fleet.
    /// Off unless `enabled: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redelivery: Option<RedeliverySpec>,
}

/// The redelivery sweep the operator's leader runs for a fleet: list the App's recent
/// deliveries (`GET /app/hook/deliveries`, App JWT from `github.privateKeyRef`) and ask
/// GitHub to redeliver each event whose latest attempt failed, as `sitg-bot redeliver`
/// does on systemd hosts. One fleet per GitHub App should enable it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedeliverySpec {
    /// Whether the operator sweeps for this fleet.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between sweeps; the first runs when the fleet is reconciled.
    #[serde(default = "default_sweep_interval")]
    #[schemars(range(min = 10, max = 3600))]
    pub interval_seconds: i32,
    /// Only deliveries attempted within this many seconds are considered (GitHub keeps
    /// three days).
    #[serde(default = "default_look_back")]
    #[schemars(range(min = 60, max = 259_200))]
    pub look_back_seconds: i32,
    /// Most redeliveries one sweep requests; the oldest failures go first.
    #[serde(default = "default_max_per_sweep")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_per_sweep: i32,
    /// Failed attempts after which an event is given up.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: i32,
}

fn default_sweep_interval() -> i32 {
    60
}

fn default_look_back() -> i32 {
    86_400
}

fn default_max_per_sweep() -> i32 {
    100
}

fn default_max_attempts() -> i32 {
    5
}

/// CEL rule for `podLabels`: none of the labels the operator owns on worker pods.
const POD_LABELS_RULE: &str = "self.all(k, !(k in ['app.kubernetes.io/name', \
    'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/managed-by']))";
const POD_LABELS_MESSAGE: &str = "podLabels cannot set app.kubernetes.io/name, instance, \
    component or managed-by: the operator selects and watches the worker pods by them";
/// CEL rule for `topologySpreadConstraints`, checked at `kubectl apply` rather than by
/// the ReplicaSet controller after the fact: the Pod API's own rules for the fields
/// that interact.
const SPREAD_RULE: &str = "self.all(c, c.maxSkew >= 1 && c.topologyKey != '' && \
    (!has(c.minDomains) || (c.minDomains >= 1 && c.whenUnsatisfiable == 'DoNotSchedule')))";
const SPREAD_MESSAGE: &str = "each topology spread constraint needs maxSkew >= 1 and a \
    topologyKey; minDomains (>= 1) only goes with whenUnsatisfiable: DoNotSchedule";

/// `logLevel` values: the `RUST_LOG` level of the workers.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default: one line per delivery, claim and result, plus warnings and errors.
    #[default]
    Info,
    /// Also the steps inside each request.
    Debug,
    /// Everything, including the libraries' traces.
    Trace,
}

impl LogLevel {
    /// The value given to `RUST_LOG`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

fn default_replicas() -> i32 {
    2
}

/// Container image coordinates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository, e.g. `ghcr.io/sitg/sitg-bot`. When unset, the repository of
    /// the operator's own image, resolved at each reconcile (the chart's `image.repository`;
    /// `ghcr.io/sitg/sitg-bot` for an operator not told its image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub repository: Option<String>,
    /// Image tag, e.g. `0.1.0`. When unset, the tag of the operator's own image, resolved
    /// at each reconcile (the chart's `image.tag`, else its appVersion; the operator's
    /// own version for an operator not told its image): upgrading the operator then
    /// rolls the workers to the same release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: Option<String>,
    /// Kubernetes image pull policy.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

impl ImageSpec {
    /// `repository:tag` of the worker image, each part the fleet does not pin taken
    /// from `default` (the operator's own image, [`DefaultImage`]).
    pub fn reference(&self, default: &DefaultImage) -> String {
        format!(
            "{}:{}",
            self.repository.as_deref().unwrap_or(&default.repository),
            self.tag.as_deref().unwrap_or(&default.tag)
        )
    }
}

/// `autoscaling.mode` values.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingMode {
    /// The operator's HorizontalPodAutoscaler.
    #[default]
    Hpa,
    /// An autoscaler outside the operator (e.g. KEDA) owns `replicas`.
    External,
}

/// Kubernetes `imagePullPolicy` values.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// GitHub App settings (deployment guide, section 2).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitHubSpec {
    /// The GitHub App's numeric App ID (`GITHUB_APP_ID`).
    #[schemars(range(min = 1))]
    pub app_id: i64,
    /// GitHub REST API base URL (`GITHUB_API_BASE_URL`).
    #[serde(default = "default_github_api_base_url")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(URL_RULE).message(URL_MESSAGE))]
    pub api_base_url: String,
    /// Secret key holding the webhook secret (`GITHUB_WEBHOOK_SECRET`).
    pub webhook_secret_ref: SecretKeyRef,
    /// Secret key holding the previous webhook secret, accepted during a rotation
    /// (`GITHUB_WEBHOOK_SECRET_PREVIOUS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_webhook_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the App's PEM private key (`GITHUB_APP_PRIVATE_KEY`).
    pub private_key_ref: SecretKeyRef,
}

fn default_github_api_base_url() -> String {
    DEFAULT_GITHUB_API_BASE_URL.to_owned()
}

/// SITG backend settings (deployment guide, section 2).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendSpec {
    /// Base URL serving the backend's `/internal/v2` routes (`BACKEND_BASE_URL`).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(URL_RULE).message(URL_MESSAGE))]
    pub base_url: String,
    /// The service bot key id (`BACKEND_BOT_KEY_ID`).
    #[schemars(length(min = 1, max = 256))]
    pub bot_key_id: String,
    /// Secret key holding the HMAC secret paired with the bot key id
    /// (`BACKEND_INTERNAL_HMAC_SECRET`).
    pub hmac_secret_ref: SecretKeyRef,
    /// Secret key holding the optional backend service token (`BACKEND_SERVICE_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token_ref: Option<SecretKeyRef>,
}

/// Outbox polling settings, with the guide's defaults and bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxSpec {
    /// Whether workers claim outbox actions (`OUTBOX_POLLING_ENABLED`).
    #[serde(default = "default_true")]
    pub polling_enabled: bool,
    /// Milliseconds between claims (`OUTBOX_POLL_INTERVAL_MS`), at least 500.
    #[serde(default = "default_poll_interval_ms")]
    #[schemars(range(min = 500, max = 3_600_000))]
    pub poll_interval_ms: i32,
    /// Actions claimed per poll (`OUTBOX_CLAIM_LIMIT`), 1 to 100.
    #[serde(default = "default_claim_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub claim_limit: i32,
}

impl Default for OutboxSpec {
    fn default() -> Self {
        Self {
            polling_enabled: true,
            poll_interval_ms: default_poll_interval_ms(),
            claim_limit: default_claim_limit(),
        }
    }
}

fn default_true() -> bool {
    true
}

// The schema's `range` bounds above are literals (the derive needs them); the test
// `outbox_bounds_follow_the_contract` keeps them equal to `crate::contract::env`.
fn default_poll_interval_ms() -> i32 {
    crate::contract::env::DEFAULT_POLL_INTERVAL_MS as i32
}

fn default_claim_limit() -> i32 {
    crate::contract::env::DEFAULT_CLAIM_LIMIT as i32
}

/// Horizontal autoscaling of the fleet on `sitg_bot_outbox_lag_seconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message(
    "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"
))]
pub struct AutoscalingSpec {
    /// Whether the fleet is autoscaled; `false` keeps the bounds but runs
    /// `spec.replicas` pods.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who scales: `hpa` (default), the operator's HorizontalPodAutoscaler on the
    /// custom metrics API (prometheus-adapter); `external`, an autoscaler of your own
    /// (KEDA's ScaledObject from the Helm chart) owns the Deployment's replicas, and
    /// the operator creates no HorizontalPodAutoscaler (deleting its own) and leaves
    /// `replicas` alone. The bounds and target below then only document intent.
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Lower bound of the pod count.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Upper bound of the pod count.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average outbox lag per pod, in seconds, the autoscaler aims for.
    #[serde(default = "default_target_lag")]
    #[schemars(range(min = 1, max = 86_400))]
    pub target_outbox_lag_seconds: i32,
    /// Scaling behavior of the operator's HorizontalPodAutoscaler (`autoscaling/v2`
    /// `behavior`: stabilization windows and rate policies per direction); unset means
    /// Kubernetes' defaults (scale down after a 300 s stabilization window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

fn default_min_replicas() -> i32 {
    2
}

fn default_target_lag() -> i32 {
    30
}

/// A key of a Secret in the fleet's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
pub struct SecretKeyRef {
    /// Secret name (a DNS subdomain).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Observed state of a fleet, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotFleetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Worker pods that exist (the Deployment's `status.replicas`).
    #[serde(default)]
    pub replicas: i32,
    /// Worker pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Worker pods the Deployment wants (fixed, or set by the autoscaler).
    #[serde(default)]
    pub desired_replicas: i32,
    /// Label selector of the worker pods, in string form, for the scale subresource.
    #[serde(default)]
    pub selector: String,
    /// The one reason an SRE needs first (the `kubectl get` STATUS column): the
    /// `Degraded` reason while the fleet is degraded (`SecretNotFound`, …), else the
    /// `Ready` reason while not ready (`DeploymentMissing`, `ReplicasNotReady`,
    /// `ScaledToZero`), else `RollingOut` during a rollout, else `ReplicasReady`.
    #[serde(default)]
    pub reason: String,
    /// The message of the condition `reason` comes from.
    #[serde(default)]
    pub message: String,
    /// `Ready`, `Progressing` and `Degraded`, at most one of each type (a list map
    /// keyed by `type`, so server-side apply merges them by type).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl BotFleetSpec {
    /// True when the HorizontalPodAutoscaler owns the replica count.
    pub fn autoscaling_enabled(&self) -> bool {
        self.autoscaling.as_ref().is_some_and(|a| a.enabled)
    }
}

/// Errors of CRD document generation.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The CRD could not be serialised as YAML.
    #[error("serialising the BotFleet CRD as YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// The `BotFleet` CustomResourceDefinition as the YAML document that `sitg-bot crd`
/// prints and `crds/botfleet.yaml` holds.
pub fn crd_yaml() -> Result<String, CrdError> {
    let body = serde_saphyr::to_string(&BotFleet::crd())?;
    Ok(format!(
        "# Generated by `sitg-bot crd` from src/operator/crd.rs; do not edit by hand.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn schema() -> Value {
        let crd = serde_json::to_value(BotFleet::crd()).expect("crd serialises");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn outbox_bounds_follow_the_contract() {
        use crate::contract::env;
        let outbox = &schema()["properties"]["spec"]["properties"]["outbox"]["properties"];
        let bounds = |field: &str| {
            (
                outbox[field]["minimum"].as_f64().expect("minimum"),
                outbox[field]["maximum"].as_f64().expect("maximum"),
            )
        };
        let poll = &env::POLL_INTERVAL_MS_RANGE;
        assert_eq!(
            bounds("pollIntervalMs"),
            (*poll.start() as f64, *poll.end() as f64)
        );
        let claim = &env::CLAIM_LIMIT_RANGE;
        assert_eq!(
            bounds("claimLimit"),
            (f64::from(*claim.start()), f64::from(*claim.end()))
        );
        let defaults = OutboxSpec::default();
        assert_eq!(
            i64::from(defaults.poll_interval_ms),
            env::DEFAULT_POLL_INTERVAL_MS as i64
        );
        assert_eq!(
            i64::from(defaults.claim_limit),
            i64::from(env::DEFAULT_CLAIM_LIMIT)
        );
    }

    #[test]
    fn names_scope_and_subresources() {
        let crd = BotFleet::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("botfleets.sitg.io"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["bf".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .expect("printer columns")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Ready", "Desired", "Lag-Target", "Status", "Age", "Message"]
        );
        let status = &version
            .schema
            .as_ref()
            .expect("schema")
            .open_api_v3_schema
            .as_ref()
            .expect("v3")
            .properties
            .as_ref()
            .expect("properties")["status"];
        let conditions = serde_json::to_value(
            &status.properties.as_ref().expect("status properties")["conditions"],
        )
        .expect("json");
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
        assert!(
            conditions["items"]["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("type"))),
            "a list-map key must be required: {conditions}"
        );
    }

    #[test]
    fn schema_carries_the_guide_bounds() {
        let s = schema();
        let spec = &s["properties"]["spec"];
        let outbox = &spec["properties"]["outbox"]["properties"];
        assert_eq!(outbox["pollIntervalMs"]["minimum"].as_f64(), Some(500.0));
        assert_eq!(outbox["claimLimit"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(outbox["claimLimit"]["maximum"].as_f64(), Some(100.0));
        let required = spec["required"].as_array().expect("required list");
        assert!(required.contains(&json!("github")));
        assert!(required.contains(&json!("backend")));
    }

    #[test]
    fn schema_carries_the_cel_rules() {
        let s = schema();
        let spec = &s["properties"]["spec"]["properties"];
        let autoscaling_rules = &spec["autoscaling"]["x-kubernetes-validations"];
        assert_eq!(
            autoscaling_rules[0]["rule"],
            json!("self.minReplicas <= self.maxReplicas")
        );
        let url_rules = &spec["backend"]["properties"]["baseUrl"]["x-kubernetes-validations"];
        assert_eq!(url_rules[0]["rule"], json!(URL_RULE));
        assert_eq!(
            s["x-kubernetes-validations"][0]["rule"],
            json!("self.metadata.name.size() <= 52")
        );
    }

    #[test]
    fn no_secret_value_fields_in_the_spec() {
        // Every secret is a {name, key} reference; a string field named like a secret
        // value would be a design error.
        let text = serde_json::to_string(&schema()).expect("json");
        for forbidden in ["\"webhookSecret\"", "\"privateKey\"", "\"hmacSecret\""] {
            assert!(!text.contains(forbidden), "{forbidden} in schema");
        }
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec: BotFleetSpec = serde_json::from_value(json!({
            "github": {
                "appId": 1,
                "webhookSecretRef": {"name": "s", "key": "w"},
                "privateKeyRef": {"name": "s", "key": "p"}
            },
            "backend": {
                "baseUrl": "https://sitg.io",
                "botKeyId": "bck_1",
                "hmacSecretRef": {"name": "s", "key": "h"}
            }
        }))
        .expect("minimal spec parses");
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.outbox, OutboxSpec::default());
        assert_eq!(spec.outbox.poll_interval_ms, 5000);
        assert_eq!(spec.outbox.claim_limit, 25);
        assert_eq!(spec.github.api_base_url, "https://api.github.com");
        assert_eq!(spec.image.repository, None, "resolved at reconcile");
        assert_eq!(spec.image.pull_policy, PullPolicy::IfNotPresent);
        assert!(!spec.autoscaling_enabled());
    }

    #[test]
    fn the_schema_stores_no_image_and_the_reconcile_resolves_it() {
        // A default repository or tag in the schema would be written into every BotFleet
        // at creation and pin its workers to that image for ever.
        let crd = serde_json::to_value(BotFleet::crd()).expect("json");
        let image = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["image"];
        assert!(image.is_object(), "image schema present");
        for part in ["tag", "repository"] {
            assert!(image["default"].get(part).is_none(), "{image}");
            assert!(
                image["properties"][part].get("default").is_none(),
                "{image}"
            );
            let description = image["properties"][part]["description"]
                .as_str()
                .unwrap_or_default();
            assert!(
                description.contains("the operator's own image"),
                "kubectl explain says what an unset {part} means: {description}"
            );
        }

        let compiled_in = DefaultImage::default();
        let unset = ImageSpec::default();
        assert_eq!(
            unset.reference(&compiled_in),
            format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
        );
        let pinned = ImageSpec {
            tag: Some("9.9.9".to_owned()),
            ..ImageSpec::default()
        };
        assert_eq!(
            pinned.reference(&compiled_in),
            format!("{DEFAULT_IMAGE_REPOSITORY}:9.9.9")
        );
    }

    #[test]
    fn an_unpinned_fleet_follows_the_operators_own_image() {
        let operator = DefaultImage::new(Some("registry.example/sitg-bot"), Some("0.1.0-next"));
        assert_eq!(
            ImageSpec::default().reference(&operator),
            "registry.example/sitg-bot:0.1.0-next"
        );
        // Each pinned part wins over the operator's.
        let tag_pinned = ImageSpec {
            tag: Some("1.2.3".to_owned()),
            ..ImageSpec::default()
        };
        assert_eq!(
            tag_pinned.reference(&operator),
            "registry.example/sitg-bot:1.2.3"
        );
        let repository_pinned = ImageSpec {
            repository: Some("mirror.example/bot".to_owned()),
            ..ImageSpec::default()
        };
        assert_eq!(
            repository_pinned.reference(&operator),
            "mirror.example/bot:0.1.0-next"
        );
    }

    #[test]
    fn an_operator_not_told_its_image_uses_the_compiled_in_one() {
        let compiled_in = DefaultImage {
            repository: DEFAULT_IMAGE_REPOSITORY.to_owned(),
            tag: env!("CARGO_PKG_VERSION").to_owned(),
        };
        assert_eq!(DefaultImage::new(None, None), compiled_in);
        // The chart's empty values are "unset".
        assert_eq!(DefaultImage::new(Some(""), Some(" ")), compiled_in);
        assert_eq!(
            DefaultImage::new(None, Some("2.0.0")),
            DefaultImage {
                tag: "2.0.0".to_owned(),
                ..compiled_in.clone()
            }
        );
        assert_eq!(
            DefaultImage::new(Some("r.example/b"), None),
            DefaultImage {
                repository: "r.example/b".to_owned(),
                ..compiled_in
            }
        );
    }

    #[test]
    fn crd_yaml_round_trips() {
        let text = crd_yaml().expect("yaml");
        let back: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&text).expect("parses back");
        assert_eq!(back, BotFleet::crd());
    }
}
