//! The chart on a real API server (etcd, kube-apiserver and kube-controller-manager
//! from `scripts/control-plane.sh`, started and stopped by this test).
//!
//! No kubelet runs, so the chart's operator pods stay Pending; the test runs the
//! `sitg-bot` binary as a process instead, with the args and env of the Deployment
//! the API server stored and with a token of the chart's ServiceAccount, so every call
//! it makes is authorised by the chart's RBAC and nothing else. Then:
//!
//! 1. `helm install` of the chart as an older release whose `crds/` lacks
//!    `spec.podAnnotations`; pods of the Deployment pass the `restricted` Pod
//!    Security admission; NOTES.txt says what to do next;
//! 2. `helm upgrade` to this chart leaves the CRD old (Helm never upgrades `crds/`)
//!    and the API server prunes the new field;
//! 3. the operator (`--apply-crd`) upgrades the CRD, takes the Lease and, after
//!    `kubectl apply -f examples/botfleet.yaml`, creates the fleet's children; the new
//!    field is kept and reaches the pod template;
//! 4. what the ServiceAccount may not do (`kubectl auth can-i`);
//! 5. a second release in namespace scope, which also creates the fleet from values,
//!    reconciles its namespace and no other; the all-features values pass the API
//!    server's validation (`--dry-run=server`), the BotFleet's CEL rules included;
//! 6. bad values fail `helm install` with the schema's message and leave no release.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const CRD: &str = "botfleets.sitg.io";
const PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

/// What these tests do with their plane beyond the shared [`Plane`].
impl Plane {
    fn kubectl_ok(&self, args: &[&str]) -> String {
        run_ok(
            self.kubectl().args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// `kubectl get ARGS -o json`, or None when it fails (for example NotFound).
    fn get(&self, args: &[&str]) -> Option<Value> {
        let out = run(self.kubectl().arg("get").args(args).args(["-o", "json"]));
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
    }

    /// `kubectl auth can-i VERB RESOURCE [-n NS] --as SUBJECT`.
    fn can_i(&self, subject: &str, args: &[&str]) -> bool {
        let out = run(self
            .kubectl()
            .args(["auth", "can-i"])
            .args(args)
            .args(["--as", subject]));
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }

    /// A kubeconfig that authenticates with a fresh token of ServiceAccount `ns/name`,
    /// as the pod's mounted token would.
    fn service_account_kubeconfig(&self, ns: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["-n", ns, "create", "token", name, "--duration=2h"]);
        let admin = yaml(&std::fs::read_to_string(self.var("KUBECONFIG")).expect("kubeconfig"));
        let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"].clone();
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "plane", "cluster": {
                "server": self.var("SITG_KUBE_API_SERVER"),
                "certificate-authority-data": ca,
            }}],
            "users": [{"name": name, "user": {"token": token.trim()}}],
            "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": name, "namespace": ns}}],
            "current-context": "sa",
        });
        let path = self.path(&format!("{ns}-{name}.kubeconfig"));
        std::fs::write(&path, serde_saphyr::to_string(&config).expect("yaml"))
            .expect("write kubeconfig");
        path
    }

    fn create_namespace(&self, name: &str) {
        self.kubectl_ok(&["create", "namespace", name]);
        // Pods in these namespaces must meet the restricted Pod Security Standard.
        self.kubectl_ok(&[
            "label",
            "namespace",
            name,
            "pod-security.kubernetes.io/enforce=restricted",
        ]);
    }

    fn create_bot_secret(&self, ns: &str) {
        let pem = self.path("app.pem");
        std::fs::write(&pem, PEM).expect("write pem");
        let pem_arg = format!("--from-file=private-key={}", pem.display());
        self.kubectl_ok(&[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "sitg-bot",
            "--from-literal=webhook-secret=test-webhook-secret",
            &pem_arg,
            "--from-literal=hmac-secret=test-hmac-secret",
        ]);
    }
}

/// Polls `probe` until it returns Some.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `sitg-bot operator` run with the container args and env of a Deployment.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Operator {
    fn start(plane: &Plane, deployment: &Value, kubeconfig: &Path, pod_name: &str) -> Self {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let metrics = format!("127.0.0.1:{port}");
        // The pod listens on 0.0.0.0:<metricsPort>; here a free loopback port.
        let args: Vec<String> = strings(&container["args"])
            .into_iter()
            .map(|a| {
                if a.starts_with("--metrics-addr=") {
                    format!("--metrics-addr={metrics}")
                } else {
                    a.to_owned()
                }
            })
            .collect();
        let log = plane.path(&format!("operator-{pod_name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sitg-bot"));
        cmd.args(&args)
            .env_remove("SITG_OPERATOR_NAMESPACE")
            .env("KUBECONFIG", kubeconfig)
            .stdout(File::create(&log).expect("log file"))
            .stderr(File::create(log.with_extension("stderr")).expect("stderr file"));
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().expect("env name");
            let value = match (&var["value"], &var["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(path)) if path == "metadata.name" => pod_name.to_owned(),
                _ => panic!("unsupported env entry in the chart's Deployment: {var}"),
            };
            cmd.env(name, value);
        }
        let child = cmd.spawn().expect("start sitg-bot operator");
        Self {
            child,
            log,
            metrics,
        }
    }

    fn logs(&self) -> String {
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        let err = std::fs::read_to_string(self.log.with_extension("stderr")).unwrap_or_default();
        format!("{out}{err}")
    }

    /// GET http://<metrics>/<path>.
    fn http_get(&self, path: &str) -> Option<String> {
        sitg_bot::tls::install_crypto_provider();
        let url = format!("http://{}{path}", self.metrics);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let response = reqwest::Client::new().get(&url).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.text().await.ok()
        })
    }

    /// [`wait_for`], failing at once with the operator's logs if it exits meanwhile.
    fn wait_for<T>(&mut self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        wait_for(what, || {
            self.assert_running();
            probe()
        })
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the operator exited ({status}):\n{}", self.logs());
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // SIGTERM first: the operator releases its Lease on a graceful stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec_properties(crd: &Value) -> &serde_json::Map<String, Value> {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .expect("spec properties")
}

/// A copy of the chart whose crds/ lacks `spec.podAnnotations`: the chart as an
/// earlier release would have shipped it, before the field existed.
fn older_chart(plane: &Plane) -> PathBuf {
    let dir = plane.path("older-chart");
    run_ok(
        Command::new("cp").arg("-R").arg(chart_dir()).arg(&dir),
        "copying the chart",
    );
    let crd_path = dir.join("crds/botfleet.yaml");
    let mut crd = yaml(&std::fs::read_to_string(&crd_path).expect("crd"));
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert!(
        spec.as_object_mut()
            .expect("spec properties")
            .remove("podAnnotations")
            .is_some(),
        "the current CRD has spec.podAnnotations"
    );
    std::fs::write(&crd_path, serde_saphyr::to_string(&crd).expect("yaml")).expect("write crd");
    dir
}

fn owned_by_fleet(object: &Value, fleet: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["kind"] == "BotFleet" && r["name"] == fleet && r["controller"] == true)
        })
}

/// Waits until every child of fleet `name` in `ns` exists with its owner reference.
fn wait_for_children(
    plane: &Plane,
    operator: &mut Operator,
    ns: &str,
    name: &str,
    autoscaled: bool,
) {
    let mut kinds = vec![
        ("secret", format!("{name}-worker-env")),
        ("service", name.to_owned()),
        ("deployment", name.to_owned()),
        ("poddisruptionbudget", name.to_owned()),
    ];
    if autoscaled {
        kinds.push(("horizontalpodautoscaler", name.to_owned()));
    }
    for (kind, child) in kinds {
        let object = operator.wait_for(&format!("{kind}/{child} in {ns}"), || {
            plane.get(&["-n", ns, kind, &child])
        });
        assert!(
            owned_by_fleet(&object, name),
            "{kind}/{child} is not owned by the fleet: {object}"
        );
    }
}

fn operator_pod_names(plane: &Plane, ns: &str, release: &str) -> Vec<String> {
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/component=operator");
    let pods = plane
        .get(&["-n", ns, "pods", "-l", &selector])
        .expect("pods");
    pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

fn assert_no_denials(operator: &Operator) {
    let logs = operator.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the chart's RBAC refused a call of the operator:\n{logs}"
    );
}

/// `helm test`: Helm creates the chart's test Pod and waits for its phase. No kubelet
/// runs here, so the test stands in for it: it runs the Pod's container args with the
/// `sitg-bot` binary against the operator process (the Service's DNS name only
/// resolves inside a cluster), then writes the outcome as the Pod's phase, which is
/// what Helm reads.
fn helm_test_probes_the_operator(plane: &Plane, operator: &mut Operator, ns: &str, release: &str) {
    let pod_name = format!("{release}-test-healthz");
    let helm_test = plane
        .helm()
        .args(["test", release, "--namespace", ns, "--timeout", "90s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("helm test starts");
    let pod = operator.wait_for("helm test to create its Pod", || {
        plane.get(&["-n", ns, "pod", &pod_name])
    });
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let args = strings(&pod["spec"]["containers"][0]["args"]);
    let in_cluster = format!("http://{release}.{ns}.svc:8080/healthz");
    assert_eq!(args[..2], ["probe", in_cluster.as_str()], "{args:?}");
    let probe = |base: &str| {
        let url = args[1].replace(&format!("{release}.{ns}.svc:8080"), base);
        let mut local = args.clone();
        local[1] = url.as_str();
        run(Command::new(env!("CARGO_BIN_EXE_sitg-bot")).args(&local))
    };
    // A port nobody listens on fails the probe: it checks something.
    let refused = probe("127.0.0.1:1");
    assert!(
        !refused.status.success(),
        "probe of a closed port succeeded"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no answer"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let answered = probe(&operator.metrics);
    assert!(
        answered.status.success(),
        "sitg-bot probe against the operator: {}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(String::from_utf8_lossy(&answered.stdout).contains("HTTP 200 OK"));
    plane.kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "pod",
        &pod_name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ]);
    let out = helm_test.wait_with_output().expect("helm test exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helm test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("TEST SUITE:     {pod_name}"))
            && stdout.contains("Phase:          Succeeded"),
        "{stdout}"
    );
}

#[test]
fn helm_install_runs_the_operator_with_the_charts_rbac() {
    let plane = Plane::up("sitg-chart-install.");
    let system = "sitg-system";
    let release = "sitg-bot";
    let subject = "system:serviceaccount:sitg-system:sitg-bot";
    plane.create_namespace(system);
    plane.create_namespace("bots");

    // 1. An older release: its crds/ has no spec.podAnnotations.
    let older = older_chart(&plane);
    let out = run_ok(
        plane
            .helm()
            .args(["install", release])
            .arg(&older)
            .args(["--namespace", system]),
        "helm install (older chart)",
    );
    let notes = out
        .split("NOTES:")
        .nth(1)
        .expect("helm install prints NOTES");
    assert!(
        notes.contains("kubectl -n sitg-system rollout status deployment/sitg-bot"),
        "{notes}"
    );
    assert!(notes.contains("create secret generic sitg-bot"), "{notes}");
    assert!(notes.contains("apply -f examples/botfleet.yaml"), "{notes}");
    let crd = plane
        .get(&["crd", CRD])
        .expect("helm installed the CRD from crds/");
    assert!(!spec_properties(&crd).contains_key("podAnnotations"));

    for (kind, name) in [
        ("serviceaccount", "sitg-bot"),
        ("deployment", "sitg-bot"),
        ("poddisruptionbudget", "sitg-bot"),
        ("role", "sitg-bot-leader-election"),
        ("rolebinding", "sitg-bot-leader-election"),
    ] {
        assert!(
            plane.get(&["-n", system, kind, name]).is_some(),
            "{kind}/{name} installed"
        );
    }
    for (kind, name) in [
        ("clusterrole", "sitg-bot"),
        ("clusterrolebinding", "sitg-bot"),
        ("clusterrole", "sitg-bot-crd"),
        ("clusterrolebinding", "sitg-bot-crd"),
    ] {
        assert!(
            plane.get(&[kind, name]).is_some(),
            "{kind}/{name} installed"
        );
    }
    // The controller-manager creates the operator pods; the restricted Pod Security
    // admission of the namespace would refuse them otherwise.
    let pods = wait_for(
        "two operator pods admitted under the restricted policy",
        || {
            let names = operator_pod_names(&plane, system, release);
            (names.len() == 2).then_some(names)
        },
    );

    // 2. helm upgrade to this chart: Helm leaves crds/ alone, so the CRD stays old and
    // the API server silently drops the new field.
    run_ok(
        plane
            .helm()
            .args(["upgrade", release])
            .arg(chart_dir())
            .args(["--namespace", system]),
        "helm upgrade",
    );
    let crd = plane.get(&["crd", CRD]).expect("crd");
    assert!(
        !spec_properties(&crd).contains_key("podAnnotations"),
        "helm upgrade does not upgrade crds/ (the problem --apply-crd solves)"
    );
    let probe = repo_path("examples/botfleet.yaml");
    let mut fleet = yaml(&std::fs::read_to_string(&probe).expect("example"));
    fleet["metadata"]["name"] = json!("pruned");
    fleet["spec"]["podAnnotations"] = json!({"example.com/new-field": "kept?"});
    let probe_file = plane.path("pruned.yaml");
    std::fs::write(&probe_file, serde_json::to_string(&fleet).expect("json")).expect("write");
    plane.kubectl_ok(&[
        "-n",
        "bots",
        "apply",
        "--validate=false",
        "-f",
        probe_file.to_str().expect("utf-8"),
    ]);
    let stored = plane
        .get(&["-n", "bots", "botfleet", "pruned"])
        .expect("stored fleet");
    assert!(
        stored["spec"].get("podAnnotations").is_none(),
        "the old CRD prunes the field"
    );
    plane.kubectl_ok(&["-n", "bots", "delete", "botfleet", "pruned", "--wait=true"]);

    // 3. The operator, as the chart's ServiceAccount, with the Deployment's args.
    let deployment = plane
        .get(&["-n", system, "deployment", release])
        .expect("deployment");
    let kubeconfig = plane.service_account_kubeconfig(system, "sitg-bot");
    let mut operator = Operator::start(&plane, &deployment, &kubeconfig, &pods[0]);
    operator.wait_for("the operator to apply the CRD of its version", || {
        let crd = plane.get(&["crd", CRD])?;
        spec_properties(&crd)
            .contains_key("podAnnotations")
            .then_some(())
    });
    let holder = operator.wait_for("the operator to take the Lease", || {
        let lease = plane.get(&["-n", system, "lease", "sitg-bot"])?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    });
    assert_eq!(
        holder, pods[0],
        "the leader identity is the pod name (POD_NAME)"
    );
    operator.assert_running();
    assert_eq!(operator.http_get("/healthz").as_deref(), Some("ok"));
    let metrics = wait_for("the operator's leader gauge", || {
        operator
            .http_get("/metrics")
            .filter(|m| m.contains("sitg_bot_operator_leader 1"))
    });
    assert!(
        metrics.contains("sitg_bot_operator_reconciles_total"),
        "{metrics}"
    );
    helm_test_probes_the_operator(&plane, &mut operator, system, release);

    plane.create_bot_secret("bots");
    plane.kubectl_ok(&[
        "-n",
        "bots",
        "apply",
        "-f",
        repo_path("examples/botfleet.yaml").to_str().expect("utf-8"),
    ]);
    wait_for_children(&plane, &mut operator, "bots", "sitg-bot", true);
    // The documented Ingress is a valid object pointing at the fleet's Service.
    plane.kubectl_ok(&[
        "-n",
        "bots",
        "apply",
        "-f",
        repo_path("examples/ingress.yaml").to_str().expect("utf-8"),
    ]);
    wait_for("the fleet's status", || {
        let fleet = plane.get(&["-n", "bots", "botfleet", "sitg-bot"])?;
        (fleet["status"]["observedGeneration"] == fleet["metadata"]["generation"]).then_some(())
    });
    // Worker pods pass the restricted policy too.
    wait_for("worker pods admitted under the restricted policy", || {
        let pods = plane.get(&[
            "-n",
            "bots",
            "pods",
            "-l",
            "app.kubernetes.io/instance=sitg-bot,app.kubernetes.io/component=worker",
        ])?;
        (pods["items"].as_array()?.len() >= 2).then_some(())
    });

    // The field the upgrade added is kept now, and the operator acts on it. (The API
    // server switches to a new CRD schema asynchronously: retry until it applies.)
    wait_for("the API server to keep spec.podAnnotations", || {
        let patched = run(plane.kubectl().args([
            "-n",
            "bots",
            "patch",
            "botfleet",
            "sitg-bot",
            "--type=merge",
            "-p",
            r#"{"spec":{"podAnnotations":{"example.com/upgraded":"yes"}}}"#,
        ]));
        let stored = plane.get(&["-n", "bots", "botfleet", "sitg-bot"])?;
        (patched.status.success()
            && stored["spec"]["podAnnotations"]["example.com/upgraded"] == "yes")
            .then_some(())
    });
    wait_for("the new field on the worker pod template", || {
        let d = plane.get(&["-n", "bots", "deployment", "sitg-bot"])?;
        (d["spec"]["template"]["metadata"]["annotations"]["example.com/upgraded"] == "yes")
            .then_some(())
    });
    operator.assert_running();
    assert_no_denials(&operator);

    // 4. Least privilege: what the reconcile needs, nothing more.
    assert!(plane.can_i(subject, &["patch", "deployments", "-n", "bots"]));
    assert!(plane.can_i(
        subject,
        &["patch", "customresourcedefinitions/botfleets.sitg.io"]
    ));
    assert!(!plane.can_i(
        subject,
        &["patch", "customresourcedefinitions/other.example.com"]
    ));
    assert!(!plane.can_i(subject, &["create", "customresourcedefinitions"]));
    assert!(!plane.can_i(subject, &["delete", "deployments", "-n", "bots"]));
    assert!(!plane.can_i(subject, &["delete", "secrets", "-n", "bots"]));
    assert!(!plane.can_i(subject, &["create", "pods", "-n", "bots"]));
    assert!(!plane.can_i(subject, &["update", "botfleets", "-n", "bots"]));
    assert!(!plane.can_i(subject, &["patch", "leases/other-lease", "-n", system]));
    drop(operator);

    // 5. Namespace scope: a Role in team-b only; the operator sees no other namespace.
    // The release also brings the fleet (botFleet.create) once its Secret exists.
    for ns in ["team-b-system", "team-b", "team-c"] {
        plane.create_namespace(ns);
    }
    let example =
        yaml(&std::fs::read_to_string(repo_path("examples/botfleet.yaml")).expect("example"));
    let fleet_spec = format!("botFleet.spec={}", example["spec"]);
    plane.create_bot_secret("team-b");
    run_ok(
        plane
            .helm()
            .args(["install", "teamb"])
            .arg(chart_dir())
            .args(["--namespace", "team-b-system"])
            .args([
                "--set",
                "rbac.scope=namespace",
                "--set",
                "rbac.watchNamespace=team-b",
            ])
            .args(["--set", "crds.applyOnStart=false"])
            .args([
                "--set",
                "botFleet.create=true",
                "--set",
                "botFleet.name=sitg-bot",
            ])
            .args(["--set-json", &fleet_spec]),
        "helm install (namespace scope, with a BotFleet)",
    );
    assert!(
        plane.get(&["clusterrole", "teamb-sitg-bot"]).is_none(),
        "no ClusterRole in namespace scope"
    );
    assert!(
        plane
            .get(&["-n", "team-b", "botfleet", "sitg-bot"])
            .is_some(),
        "helm created the BotFleet in the watched namespace"
    );
    let team_subject = "system:serviceaccount:team-b-system:teamb-sitg-bot";
    assert!(!plane.can_i(team_subject, &["list", "botfleets", "--all-namespaces"]));
    assert!(!plane.can_i(team_subject, &["get", "secrets", "-n", "team-c"]));
    assert!(plane.can_i(team_subject, &["get", "secrets", "-n", "team-b"]));
    let deployment = plane
        .get(&["-n", "team-b-system", "deployment", "teamb-sitg-bot"])
        .expect("deployment");
    let kubeconfig = plane.service_account_kubeconfig("team-b-system", "teamb-sitg-bot");
    let mut operator = Operator::start(&plane, &deployment, &kubeconfig, "teamb-sitg-bot-0");
    plane.create_bot_secret("team-c");
    plane.kubectl_ok(&[
        "-n",
        "team-c",
        "apply",
        "-f",
        repo_path("examples/botfleet.yaml").to_str().expect("utf-8"),
    ]);
    wait_for_children(&plane, &mut operator, "team-b", "sitg-bot", true);
    wait_for("the team-b fleet's status", || {
        let fleet = plane.get(&["-n", "team-b", "botfleet", "sitg-bot"])?;
        fleet["status"]["observedGeneration"].as_i64()
    });
    // By now the operator has reconciled team-b; a fleet it could see in team-c would
    // have been reconciled in the same pass.
    let other = plane
        .get(&["-n", "team-c", "botfleet", "sitg-bot"])
        .expect("team-c fleet");
    assert!(
        other.get("status").is_none_or(Value::is_null),
        "team-c is not watched: {other}"
    );
    assert!(
        plane
            .get(&["-n", "team-c", "deployment", "sitg-bot"])
            .is_none()
    );
    operator.assert_running();
    assert_no_denials(&operator);
    drop(operator);

    // Every optional object the API server knows (the monitoring.coreos.com kinds
    // need the Prometheus Operator's CRDs) passes its validation, the BotFleet's CEL
    // rules included.
    let out = run_ok(
        plane
            .helm()
            .args(["install", "all-features"])
            .arg(chart_dir())
            .args(["--namespace", system, "--dry-run=server"])
            .arg("--values")
            .arg(repo_path("charts/sitg-bot/ci/all-features-values.yaml"))
            .args(["--set", "monitoring.podMonitor.enabled=false"])
            .args(["--set", "monitoring.operatorPodMonitor.enabled=false"])
            .args(["--set", "monitoring.prometheusRule.enabled=false"]),
        "helm install --dry-run=server (all features)",
    );
    assert!(
        out.contains("kind: BotFleet") && out.contains("kind: ConfigMap"),
        "{out}"
    );

    // 6. Bad values fail at install, before anything of the release exists.
    let out = run(plane
        .helm()
        .args(["install", "bad"])
        .arg(chart_dir())
        .args(["--namespace", system, "--set", "rbac.scope=everywhere"]));
    assert!(
        !out.status.success(),
        "helm install accepted rbac.scope=everywhere"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("value must be one of 'cluster', 'namespace'"),
        "{stderr}"
    );
    let status = run(plane.helm().args(["status", "bad", "--namespace", system]));
    assert!(!status.status.success(), "no release `bad` recorded");
    assert!(
        plane
            .get(&["-n", system, "deployment", "bad-sitg-bot"])
            .is_none()
    );
}
