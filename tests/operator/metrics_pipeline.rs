//! The autoscaling metrics pipeline, for real: a control plane of its own
//! (`scripts/control-plane.sh`), the operator reconciling an autoscaled BotFleet, a real
//! Prometheus (`scripts/metrics-stack.sh build`) that finds the worker pods through
//! Kubernetes service discovery (role `pod`, relabelled as the chart's PodMonitor
//! does), and prometheus-adapter with the chart's rule, registered as the
//! `v1beta1.custom.metrics.k8s.io` APIService. The custom metrics API then serves
//! `sitg_bot_outbox_lag_seconds` per worker pod, and the real HPA controller reads it.
//!
//! No kubelet runs here, so the test stands in for it: for each pod the controllers
//! made it starts a `sitg-bot worker` on a loopback address of its own, on the pod's
//! `metrics` port 9090, and writes the pod's status (Running, Ready, that address as
//! the pod IP). Everything else (discovery, scrapes, queries, aggregation, the HPA's
//! read) is the real components talking to each other.

#[allow(dead_code)]
#[path = "../deploy/support.rs"]
mod deploy_support;
#[allow(dead_code)]
#[path = "../deploy/metrics_stack.rs"]
mod metrics_stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::{Plane, repo_path, run_ok, wait_crd_established};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use metrics_stack::{LAG_METRIC, MetricsStack, Proc, free_port};
use serde_json::{Value, json};
use sitg_sandbox::peers::Peers;
use sitg_sandbox::standalone::{bench_action, bench_repositories};

const FLEET: &str = "bots";
const METRICS_PORT: u16 = 9090;
const WAIT: Duration = Duration::from_secs(120);

// A control plane of its own (deploy_support::Plane): the APIService registered here is
// cluster-wide and must not leak into other tests' plane.
impl Plane {
    fn kubeconfig(&self) -> &str {
        self.var("KUBECONFIG")
    }

    async fn client(&self) -> Client {
        sitg_bot::tls::install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
        Client::try_from(config).expect("client")
    }
}

/// A loopback address no other run is likely to use: 127.x.y.z, random x and y.
fn loopback_address(n: u8) -> String {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    format!("127.{}.{}.{}", 100 + b[0] % 100, b[1], 10 + n)
}

async fn http_ok(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

async fn wait_until<T, F, Fut>(what: &str, logs: &[&Path], mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() > WAIT {
            let tails: Vec<String> = logs
                .iter()
                .map(|p| {
                    let text = std::fs::read_to_string(p).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    format!(
                        "--- {}\n{}",
                        p.display(),
                        lines[lines.len().saturating_sub(30)..].join("\n")
                    )
                })
                .collect();
            panic!(
                "timed out after {WAIT:?} waiting for {what}\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `sitg-bot worker` standing in for pod `pod`'s container: its env from the
/// simulators, bound to the pod's own loopback address.
fn start_worker(peers: &Peers, pod: &str, ip: &str, log: &Path) -> (Proc, u16) {
    let port = free_port(ip);
    let mut env = peers.worker_env(port, pod);
    env.insert("BIND_ADDRESS".into(), ip.into());
    env.insert("METRICS_PORT".into(), METRICS_PORT.to_string());
    // One action per poll and replica: a backlog the fleet cannot clear, so the lag grows.
    env.insert("OUTBOX_CLAIM_LIMIT".into(), "1".into());
    env.insert("OUTBOX_POLL_INTERVAL_MS".into(), "1000".into());
    let file = std::fs::File::create(log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .arg("worker")
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("worker starts");
    (Proc(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metrics_api_serves_the_lag_of_each_worker_pod() {
    let plane = Plane::up("sitg-metrics-pipeline.");
    let client = plane.client().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");

    // The fleet, reconciled by the operator: Deployment, Service, HPA; pods by the
    // real controller-manager.
    run_ok(
        plane.kubectl().args([
            "apply",
            "--server-side",
            "-f",
            repo_path("crds/botfleet.yaml").to_str().expect("path"),
        ]),
        "BotFleet CRD",
    );
    wait_crd_established(|| plane.kubectl(), "botfleets.sitg.io");
    let ns = "sitg-bots";
    run_ok(
        plane.kubectl().args(["create", "namespace", ns]),
        "namespace",
    );
    crate::support::put_bot_secret(&client, ns, "whsec").await;
    let mut fleet = crate::support::sample_fleet(FLEET);
    fleet.spec.autoscaling = serde_json::from_value(json!({
        "enabled": true, "minReplicas": 2, "maxReplicas": 2, "targetOutboxLagSeconds": 600
    }))
    .expect("autoscaling spec");
    crate::support::create_fleet(&client, ns, &fleet).await;
    let _controller = crate::support::start_controller(&client, ns);

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod_names: Vec<String> = wait_until("the fleet's two pods", &[], || {
        let pods_api = pods_api.clone();
        async move {
            let list = pods_api
                .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={FLEET}")))
                .await
                .ok()?;
            let mut names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            names.sort();
            (names.len() == 2).then_some(names)
        }
    })
    .await;

    // The simulators, with a backlog of actions on installed repositories.
    sitg_bot::tls::install_crypto_provider();
    let peers = Peers::start().await.expect("simulators");
    for (installation, repo_id, name) in bench_repositories() {
        peers
            .github
            .add_installation(
                installation,
                &format!("bench-org-{installation}"),
                "Organization",
                [(repo_id, name.as_str())],
            )
            .ok();
    }
    for n in 0..300 {
        peers.backend.enqueue_action(bench_action(n));
    }

    // The kubelet's part: a worker per pod, then the pod's status.
    let mut workers = Vec::new();
    let mut worker_logs = Vec::new();
    for (i, pod) in pod_names.iter().enumerate() {
        let ip = loopback_address(u8::try_from(i).expect("few pods"));
        let log = plane.path(&format!("{pod}.log"));
        let (proc_, port) = start_worker(&peers, pod, &ip, &log);
        let ready = format!("http://{ip}:{port}/readyz");
        wait_until(&format!("worker of {pod} ready"), &[&log], || {
            http_ok(&http, &ready)
        })
        .await;
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }});
        pods_api
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("pod status");
        workers.push((pod.clone(), ip, proc_));
        worker_logs.push(log);
    }

    // Prometheus, discovering the pods through the API server, and prometheus-adapter
    // with the chart's rule as the custom metrics API.
    let kube_env: BTreeMap<String, String> = ["KUBECONFIG", "SITG_KUBE_BIN_DIR"]
        .into_iter()
        .map(|k| (k.to_owned(), plane.var(k).to_owned()))
        .collect();
    let stack = MetricsStack::start(&plane.path(""), &kube_env, ns);
    let targets_url = format!("{}/api/v1/targets", stack.prometheus_url);
    let targets: Vec<Value> = wait_until(
        "Prometheus to discover and scrape both pods",
        &[&stack.prometheus_log],
        || async {
            let body: Value = serde_json::from_str(&http_ok(&http, &targets_url).await?).ok()?;
            let active = body["data"]["activeTargets"].as_array()?.clone();
            let up = active.iter().filter(|t| t["health"] == "up").count();
            (active.len() == 2 && up == 2).then_some(active)
        },
    )
    .await;
    for (pod, ip, _) in &workers {
        let t = targets
            .iter()
            .find(|t| t["labels"]["pod"] == pod.as_str())
            .unwrap_or_else(|| panic!("no target for {pod}: {targets:#?}"));
        assert_eq!(t["labels"]["namespace"], ns);
        assert_eq!(
            t["scrapeUrl"],
            format!("http://{ip}:{METRICS_PORT}/metrics")
        );
        assert_eq!(
            t["discoveredLabels"]["__meta_kubernetes_pod_container_port_name"],
            "metrics"
        );
    }

    let api_log = plane.path("custom-metrics-api.log");
    let logs: Vec<&Path> = [
        api_log.as_path(),
        stack.adapter_log.as_path(),
        stack.prometheus_log.as_path(),
    ]
    .into_iter()
    .chain(worker_logs.iter().map(PathBuf::as_path))
    .collect();
    let first: BTreeMap<String, f64> = wait_until(
        "the lag of both pods through the custom metrics API",
        &logs,
        || async {
            match stack.pods_metric(ns, LAG_METRIC, "") {
                Err(e) => {
                    let _ = std::fs::write(&api_log, e);
                    None
                }
                Ok(values) => {
                    let _ = std::fs::write(&api_log, format!("{values:?}"));
                    (values.len() == 2 && values.values().all(|v| *v > 0.0)).then_some(values)
                }
            }
        },
    )
    .await;
    assert_eq!(first.keys().cloned().collect::<Vec<_>>(), pod_names);
    for (pod, item) in &first {
        assert_eq!(
            run_ok(
                plane
                    .kubectl()
                    .args(["get", "pod", pod, "-n", ns, "-o", "jsonpath={.kind}"]),
                "pod"
            ),
            "Pod"
        );
        assert!(*item > 0.0, "{pod}: {item}");
    }

    // The backlog outgrows a fleet capped at one action per poll and replica: the lag
    // each pod reports keeps growing.
    let later: BTreeMap<String, f64> = wait_until("the lag to grow", &logs, || async {
        let values = stack.pods_metric(ns, LAG_METRIC, "").ok()?;
        let grew = values.len() == 2 && values.iter().all(|(pod, v)| *v >= first[pod] + 3.0);
        grew.then_some(values)
    })
    .await;
    assert!(later.values().all(|v| *v > 3.0), "{later:?}");

    // The real HPA controller reads the same metric through the aggregated API.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let average = wait_until("the HPA to read the lag", &logs, || async {
        let hpa = hpas.get(FLEET).await.ok()?;
        let current = hpa.status?.current_metrics?;
        let pods = current.first()?.pods.as_ref()?;
        let avg = metrics_stack::quantity_seconds(&pods.current.average_value.as_ref()?.0);
        (avg > 0.0).then_some(avg)
    })
    .await;
    assert!(average > 0.0);
    drop(workers);
}
