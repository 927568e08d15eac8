//! Shared set-up for the operator tests that run against a real API server.
//!
//! The control plane is started outside the tests (`scripts/control-plane.sh up DIR`)
//! and its kubeconfig passed in `SITG_TEST_KUBECONFIG`. Each test works in a
//! namespace of its own so the tests run in parallel.

pub mod env;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Api, Client, Config};
use serde_json::json;
use sitg_bot::operator::metrics::Metrics;
use sitg_bot::operator::{BotFleet, Context, Scope, run_controller};
use tokio_util::sync::CancellationToken;

/// How long a test waits for the control plane to reach an expected state.
pub const WAIT: Duration = Duration::from_secs(60);

/// A PEM-shaped private key; the operator checks the shape, never parses it.
pub const PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

/// Path of the kubeconfig of the test control plane.
///
/// # Panics
/// When `SITG_TEST_KUBECONFIG` is unset: these tests need a real API server and must
/// fail, not pass vacuously, without one.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("SITG_TEST_KUBECONFIG") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "SITG_TEST_KUBECONFIG is not set. The operator tests need a real API server: run \
             `scripts/control-plane.sh up DIR` and export SITG_TEST_KUBECONFIG=DIR/kubeconfig \
             (the project's test command does both)."
        ),
    }
}

/// The kubectl binary: `SITG_KUBECTL`, else `$SITG_KUBE_BIN_DIR/kubectl`, else `kubectl`
/// on the PATH.
pub fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SITG_KUBECTL") {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("SITG_KUBE_BIN_DIR") {
        return PathBuf::from(dir).join("kubectl");
    }
    PathBuf::from("kubectl")
}

/// A client for the test control plane.
pub async fn client() -> Client {
    sitg_bot::tls::install_crypto_provider();
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig usable");
    Client::try_from(config).expect("client")
}

/// Server-side-applies `crds/botfleet.yaml` (the file, as a user would install it)
/// and waits until it is established.
pub async fn install_crd(client: &Client) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/botfleet.yaml");
    let text = std::fs::read_to_string(path).expect("crds/botfleet.yaml readable");
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("CRD parses");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "botfleets.sitg.io",
        &PatchParams::apply("sitg-bot-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    tokio::time::timeout(
        WAIT,
        await_condition(api, "botfleets.sitg.io", conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("CRD watch");
}

/// A client, the CRD installed, and a fresh namespace named `<prefix>-<random>`.
pub async fn setup(prefix: &str) -> (Client, String) {
    let client = client().await;
    install_crd(&client).await;
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    (client, name)
}

/// Creates or replaces Secret `name` with string values.
pub async fn put_secret(client: &Client, ns: &str, name: &str, pairs: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("sitg-bot-tests").force(),
            &Patch::Apply(&json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": secret.metadata,
                "data": secret.data,
            })),
        )
        .await
        .expect("secret applied");
}

/// The Secret every sample fleet references, with the keys `webhook`,
/// `private-key` and `hmac`.
pub async fn put_bot_secret(client: &Client, ns: &str, webhook: &str) {
    put_secret(
        client,
        ns,
        "bot",
        &[
            ("webhook", webhook),
            ("private-key", PEM),
            ("hmac", "hmac-secret"),
        ],
    )
    .await;
}

/// A fleet referencing Secret `bot`, with fixed replicas, written as a user writes it
/// (the resource's camelCase wire form).
pub fn sample_fleet(name: &str) -> BotFleet {
    serde_json::from_value(json!({
        "apiVersion": "sitg.io/v1alpha1",
        "kind": "BotFleet",
        "metadata": { "name": name },
        "spec": {
            "image": { "repository": "ghcr.io/sitg/sitg-bot", "tag": "0.0.0-test" },
            "github": {
                "appId": 4242,
                "webhookSecretRef": { "name": "bot", "key": "webhook" },
                "privateKeyRef": { "name": "bot", "key": "private-key" },
            },
            "backend": {
                "baseUrl": "https://sitg.example",
                "botKeyId": "bck_test_1",
                "hmacSecretRef": { "name": "bot", "key": "hmac" },
            },
            "replicas": 2,
        },
    }))
    .expect("the sample is a valid BotFleet")
}

/// Creates a fleet and returns it as stored (with uid and generation).
pub async fn create_fleet(client: &Client, ns: &str, fleet: &BotFleet) -> BotFleet {
    Api::<BotFleet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), fleet)
        .await
        .expect("fleet created")
}

/// Polls `probe` every 200 ms until it yields a value.
///
/// # Panics
/// After [`WAIT`] without a value, naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An in-process controller watching one namespace; stopped on drop.
pub struct RunningController {
    /// The controller's metrics.
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the controller for namespace `ns` (no leader election: one per test).
pub fn start_controller(client: &Client, ns: &str) -> RunningController {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), "test"));
    let stop = CancellationToken::new();
    tokio::spawn(run_controller(
        ctx,
        Scope::Namespace(ns.to_owned()),
        stop.clone().cancelled_owned(),
    ));
    RunningController { metrics, stop }
}
