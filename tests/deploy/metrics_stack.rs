//! The autoscaling metrics pipeline's real components, as the tests start them: a
//! Prometheus server (`scripts/metrics-stack.sh build`) that finds the worker pods
//! through Kubernetes service discovery (role `pod`, relabelled as the chart's
//! PodMonitor makes the Prometheus Operator do), and prometheus-adapter with the chart's
//! rule, registered as the `v1beta1.custom.metrics.k8s.io` APIService.
//!
//! Shared by the control-plane test (`tests/operator/metrics_pipeline.rs`, no kubelet:
//! workers on loopback) and the node test (`tests/deploy/node_autoscaling.rs`, real pods
//! on the node's bridge); each includes this file next to `tests/deploy/support.rs`
//! (reachable as `super::deploy_support`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::deploy_support::{helm_template, kubectl_command, object, repo_path, run, run_ok};

/// The APIService the adapter is registered as (cluster-wide).
pub const API_SERVICE: &str = "v1beta1.custom.metrics.k8s.io";
/// The namespace of the ExternalName Service the APIService points at.
pub const ADAPTER_NAMESPACE: &str = "custom-metrics";
/// The per-pod metric the HPA of an autoscaled BotFleet asks for.
pub const LAG_METRIC: &str = "sitg_bot_outbox_lag_seconds";

/// A process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary of `scripts/metrics-stack.sh`: `sub` is `prometheus-path` or `adapter-path`.
///
/// # Panics
/// When the binary has not been built (`scripts/metrics-stack.sh build`).
pub fn stack_binary(sub: &str) -> PathBuf {
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

/// A port nothing listens on at `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `bin args...` with stdout and stderr in `log`.
pub fn spawn(bin: &Path, args: &[String], log: &Path, what: &'static str) -> Proc {
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

/// The adapter's rule exactly as the chart renders it.
pub fn chart_adapter_rule() -> String {
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
/// Prometheus Operator generate (pods of the fleet's labels in namespace `ns`, port
/// `metrics`, `namespace` and `pod` labels), discovered from the API server of
/// `kubeconfig`; scraped every second.
pub fn prometheus_config(kubeconfig: &str, ns: &str) -> String {
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
pub fn quantity_seconds(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("milli quantity") / 1000.0,
        None => q.parse().expect("quantity"),
    }
}

/// `{pod name: value}` of a custom metrics API `MetricValueList` for `metric`.
pub fn metric_values(list: &Value, metric: &str) -> Option<BTreeMap<String, f64>> {
    Some(
        list["items"]
            .as_array()?
            .iter()
            .filter(|i| i["metricName"] == metric)
            .map(|i| {
                (
                    i["describedObject"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    quantity_seconds(i["value"].as_str().unwrap_or("0")),
                )
            })
            .collect(),
    )
}

/// Prometheus and prometheus-adapter running on this machine, the adapter registered as
/// the custom metrics API of one cluster. Dropping it removes the registration (the
/// APIService is cluster-wide) and stops both.
pub struct MetricsStack {
    /// `http://127.0.0.1:PORT` of Prometheus.
    pub prometheus_url: String,
    pub prometheus_log: PathBuf,
    pub adapter_log: PathBuf,
    kube_env: BTreeMap<String, String>,
    _prometheus: Proc,
    _adapter: Proc,
}

impl MetricsStack {
    /// Starts Prometheus (discovering the worker pods of namespace `ns`) and the adapter
    /// with the chart's rule, their files and logs under `dir`, and registers the adapter
    /// as the APIService; returns once the APIService is `Available`. `kube_env` holds
    /// the cluster's `KUBECONFIG` and `SITG_KUBE_BIN_DIR` (an env file of
    /// `control-plane.sh`/`node.sh up`).
    ///
    /// # Panics
    /// When a binary is missing or the APIService does not become available in 90 s.
    pub fn start(dir: &Path, kube_env: &BTreeMap<String, String>, ns: &str) -> Self {
        let prometheus_bin = stack_binary("prometheus-path");
        let adapter_bin = stack_binary("adapter-path");
        let kubeconfig = kube_env["KUBECONFIG"].clone();

        let prom_port = free_port("127.0.0.1");
        let prom_config = dir.join("prometheus.yml");
        std::fs::write(&prom_config, prometheus_config(&kubeconfig, ns)).expect("config");
        let prometheus_log = dir.join("prometheus.log");
        let prometheus = spawn(
            &prometheus_bin,
            &[
                format!("--config.file={}", prom_config.display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ],
            &prometheus_log,
            "prometheus",
        );
        let prometheus_url = format!("http://127.0.0.1:{prom_port}");

        let rule = dir.join("adapter-rule.yaml");
        std::fs::write(&rule, chart_adapter_rule()).expect("rule");
        let adapter_port = free_port("127.0.0.1");
        let adapter_log = dir.join("adapter.log");
        let adapter = spawn(
            &adapter_bin,
            &[
                format!("--prometheus-url={prometheus_url}"),
                format!("--config={}", rule.display()),
                format!("--lister-kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                format!("--secure-port={adapter_port}"),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--cert-dir={}", dir.join("adapter-certs").display()),
                "--metrics-relist-interval=5s".to_owned(),
            ],
            &adapter_log,
            "prometheus-adapter",
        );
        let stack = Self {
            prometheus_url,
            prometheus_log,
            adapter_log,
            kube_env: kube_env.clone(),
            _prometheus: prometheus,
            _adapter: adapter,
        };

        // The aggregator reaches the adapter through an ExternalName Service on loopback
        // (the API server runs on this machine); the adapter's certificate is
        // self-signed, hence insecureSkipTLSVerify.
        let registration = format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ADAPTER_NAMESPACE}}}
---
apiVersion: v1
kind: Service
metadata: {{name: prometheus-adapter, namespace: {ADAPTER_NAMESPACE}}}
spec:
  type: ExternalName
  externalName: 127.0.0.1
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: {API_SERVICE}}}
spec:
  group: custom.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {{name: prometheus-adapter, namespace: {ADAPTER_NAMESPACE}, port: {adapter_port}}}
"#
        );
        let reg_file = dir.join("apiservice.yaml");
        std::fs::write(&reg_file, registration).expect("registration");
        run_ok(
            stack.kubectl().arg("apply").arg("-f").arg(&reg_file),
            "register the APIService",
        );
        let available = run(stack.kubectl().args([
            "wait",
            "--for=condition=Available",
            "--timeout=90s",
            &format!("apiservice/{API_SERVICE}"),
        ]));
        assert!(
            available.status.success(),
            "APIService {API_SERVICE} not Available: {}\n--- adapter log\n{}",
            String::from_utf8_lossy(&available.stderr),
            tail(&stack.adapter_log, 30)
        );
        stack
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self) -> Command {
        kubectl_command(&self.kube_env)
    }

    /// `kubectl get --raw` of `metric` for the pods of `ns` matching `selector` (all
    /// when empty), through the aggregated API: `{pod: value}`, or the error text.
    pub fn pods_metric(
        &self,
        ns: &str,
        metric: &str,
        selector: &str,
    ) -> Result<BTreeMap<String, f64>, String> {
        let mut raw =
            format!("/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/pods/*/{metric}");
        if !selector.is_empty() {
            raw.push_str("?labelSelector=");
            raw.push_str(&selector.replace('=', "%3D").replace(',', "%2C"));
        }
        let out = run(self.kubectl().args(["get", "--raw", &raw]));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let list: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        metric_values(&list, metric).ok_or_else(|| format!("not a MetricValueList: {list}"))
    }

    /// The last lines of Prometheus' and the adapter's logs, for failure messages.
    pub fn log_tails(&self) -> String {
        format!(
            "--- {}\n{}\n--- {}\n{}",
            self.prometheus_log.display(),
            tail(&self.prometheus_log, 20),
            self.adapter_log.display(),
            tail(&self.adapter_log, 20)
        )
    }
}

impl Drop for MetricsStack {
    fn drop(&mut self) {
        let _ =
            run(self
                .kubectl()
                .args(["delete", "apiservice", API_SERVICE, "--ignore-not-found"]));
        let _ = run(self.kubectl().args([
            "delete",
            "namespace",
            ADAPTER_NAMESPACE,
            "--ignore-not-found",
            "--wait=false",
        ]));
    }
}

/// The last `n` lines of the file at `path` (empty when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
