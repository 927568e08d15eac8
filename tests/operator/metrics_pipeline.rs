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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::{Plane, helm_template, object, repo_path, run, run_ok, wait_crd_established};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use sitg_sandbox::peers::Peers;
use sitg_sandbox::standalone::{bench_action, bench_repositories};

const FLEET: &str = "bots";
const METRICS_PORT: u16 = 9090;
const WAIT: Duration = Duration::from_secs(120);

/// A process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

fn metrics_stack(sub: &str) -> PathBuf {
    let out = run_ok(
        Command::new(repo_path("scripts/metrics-stack.sh")).arg(sub),
        "scripts/metrics-stack.sh",
    );
    let path = PathBuf::from(out.trim());
    assert!(
        path.exists(),
        "{} missing: run scripts/metrics-stack.sh build",
        path.display()
    );
    path
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A loopback address no other run is likely to use: 127.x.y.z, random x and y.
fn loopback_address(n: u8) -> String {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    format!("127.{}.{}.{}", 100 + b[0] % 100, b[1], 10 + n)
}

fn spawn(bin: &Path, args: &[String], log: &Path, what: &'static str) -> Proc {
    let file = std::fs::File::create(log).expect("log file");
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    Proc(child)
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

/// The adapter's rule exactly as the chart renders it.
fn chart_adapter_rule() -> String {
    let objects = helm_template(
        "sitg-bot",
        "sitg-system",
        &["--set", "monitoring.prometheusAdapterRule.enabled=true"],
    );
    let cm = object(&objects, "ConfigMap", "sitg-bot-prometheus-adapter-rule");
    cm["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_owned()
}

/// Prometheus' scrape config for the workers: what the chart's PodMonitor makes the
/// Prometheus Operator generate (pods of the fleet's labels, port `metrics`,
/// `namespace` and `pod` labels), discovered from the API server.
fn prometheus_config(kubeconfig: &str, ns: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sitg-bot-workers
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig}
        namespaces:
          names: [{ns}]
        selectors:
          - role: pod
            label: app.kubernetes.io/name=sitg-bot,app.kubernetes.io/component=worker
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Failed|Succeeded
        action: drop
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: metrics
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"#
    )
}

/// A Quantity as the custom metrics API writes it ("1500m", "3").
fn quantity_seconds(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("milli quantity") / 1000.0,
        None => q.parse().expect("quantity"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metrics_api_serves_the_lag_of_each_worker_pod() {
    let prometheus_bin = metrics_stack("prometheus-path");
    let adapter_bin = metrics_stack("adapter-path");
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

    // Prometheus, discovering the pods through the API server.
    let prom_port = free_port("127.0.0.1");
    let prom_config = plane.path("prometheus.yml");
    std::fs::write(&prom_config, prometheus_config(plane.kubeconfig(), ns)).expect("config");
    let prom_log = plane.path("prometheus.log");
    let _prometheus = spawn(
        &prometheus_bin,
        &[
            format!("--config.file={}", prom_config.display()),
            format!("--storage.tsdb.path={}", plane.path("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &prom_log,
        "prometheus",
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let targets_url = format!("{prom}/api/v1/targets");
    let targets: Vec<Value> = wait_until(
        "Prometheus to discover and scrape both pods",
        &[&prom_log],
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

    // prometheus-adapter with the chart's rule, as the custom metrics API.
    let rule = plane.path("adapter-rule.yaml");
    std::fs::write(&rule, chart_adapter_rule()).expect("rule");
    let adapter_port = free_port("127.0.0.1");
    let adapter_log = plane.path("adapter.log");
    let kc = plane.kubeconfig().to_owned();
    let _adapter = spawn(
        &adapter_bin,
        &[
            format!("--prometheus-url={prom}"),
            format!("--config={}", rule.display()),
            format!("--lister-kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            format!("--secure-port={adapter_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--cert-dir={}", plane.path("adapter-certs").display()),
            "--metrics-relist-interval=5s".to_owned(),
        ],
        &adapter_log,
        "prometheus-adapter",
    );
    // The aggregator reaches the adapter through an ExternalName Service on loopback;
    // the adapter's certificate is self-signed, hence insecureSkipTLSVerify.
    let registration = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: custom-metrics}}
---
apiVersion: v1
kind: Service
metadata: {{name: prometheus-adapter, namespace: custom-metrics}}
spec:
  type: ExternalName
  externalName: 127.0.0.1
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.custom.metrics.k8s.io}}
spec:
  group: custom.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {{name: prometheus-adapter, namespace: custom-metrics, port: {adapter_port}}}
"#
    );
    let reg_file = plane.path("apiservice.yaml");
    std::fs::write(&reg_file, registration).expect("registration");
    run_ok(
        plane.kubectl().arg("apply").arg("-f").arg(&reg_file),
        "register the APIService",
    );
    run_ok(
        plane.kubectl().args([
            "wait",
            "--for=condition=Available",
            "--timeout=90s",
            "apiservice/v1beta1.custom.metrics.k8s.io",
        ]),
        "APIService available",
    );

    let raw = format!(
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/pods/*/sitg_bot_outbox_lag_seconds"
    );
    let api_log = plane.path("custom-metrics-api.log");
    let logs: Vec<&Path> = [api_log.as_path(), adapter_log.as_path(), prom_log.as_path()]
        .into_iter()
        .chain(worker_logs.iter().map(PathBuf::as_path))
        .collect();
    let first: BTreeMap<String, f64> = wait_until(
        "the lag of both pods through the custom metrics API",
        &logs,
        || async {
            let out = run(plane.kubectl().args(["get", "--raw", &raw]));
            if !out.status.success() {
                let _ = std::fs::write(&api_log, &out.stderr);
                return None;
            }
            let _ = std::fs::write(&api_log, &out.stdout);
            let list: Value = serde_json::from_slice(&out.stdout).ok()?;
            let values: BTreeMap<String, f64> = list["items"]
                .as_array()?
                .iter()
                .filter(|i| i["metricName"] == "sitg_bot_outbox_lag_seconds")
                .map(|i| {
                    (
                        i["describedObject"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        quantity_seconds(i["value"].as_str().unwrap_or("0")),
                    )
                })
                .collect();
            (values.len() == 2 && values.values().all(|v| *v > 0.0)).then_some(values)
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
        let out = run(plane.kubectl().args(["get", "--raw", &raw]));
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        let values: BTreeMap<String, f64> = list["items"]
            .as_array()?
            .iter()
            .map(|i| {
                (
                    i["describedObject"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    quantity_seconds(i["value"].as_str().unwrap_or("0")),
                )
            })
            .collect();
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
        let avg = quantity_seconds(&pods.current.average_value.as_ref()?.0);
        (avg > 0.0).then_some(avg)
    })
    .await;
    assert!(average > 0.0);
    drop(workers);
}
