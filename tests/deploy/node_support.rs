//! What the tests on the real node share: the node `scripts/test.sh` brought up, one
//! lock so that those tests take it in turn (one node, two cores: tests that each roll a
//! fleet would otherwise measure each other), and the set-up every fleet on it needs —
//! the simulators' pod, the chart (the operator) and the fleet's Secret — made once per
//! node by the first test that asks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};
use sitg_bot::operator::build::WEBHOOK_PORT;

pub(crate) const WAIT: Duration = Duration::from_secs(180);
pub(crate) const FLEET_NS: &str = "sitg-e2e";
pub(crate) const OPERATOR_NS: &str = "sitg-system";
pub(crate) const SANDBOX_POD: &str = "sitg-sandbox";
pub(crate) const GITHUB_PORT: u16 = 8081;
pub(crate) const BACKEND_PORT: u16 = 8082;
pub(crate) const CONTROL_PORT: u16 = 8083;

/// The node `scripts/test.sh` brought up, as its env file describes it.
pub(crate) struct Node {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) dir: PathBuf,
}

impl Node {
    pub(crate) fn from_env() -> Option<Self> {
        if std::env::var("SITG_TEST_NODE").as_deref() == Ok("0") {
            println!("node e2e skipped: SITG_TEST_NODE=0 (no kubelet on this machine)");
            return None;
        }
        let file = std::env::var_os("SITG_TEST_NODE_ENV").unwrap_or_else(|| {
            panic!(
                "SITG_TEST_NODE_ENV is not set: scripts/test.sh builds the images and starts \
                 a node (scripts/node.sh up); set SITG_TEST_NODE=0 to skip this test"
            )
        });
        let env = read_env_file(Path::new(&file));
        let dir = PathBuf::from(&env["SITG_NODE_DIR"]);
        Some(Self { env, dir })
    }

    pub(crate) fn var(&self, name: &str) -> &str {
        env_var(&self.env, name)
    }

    pub(crate) fn kubectl(&self) -> Command {
        kubectl_command(&self.env)
    }

    pub(crate) fn kubectl_ok(&self, args: &[&str]) -> String {
        run_ok(
            self.kubectl().args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    pub(crate) fn apply(&self, object: &Value) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), object.to_string()).expect("write manifest");
        self.kubectl_ok(&["apply", "-f", &file.path().display().to_string()]);
    }

    pub(crate) fn get(&self, args: &[&str]) -> Option<Value> {
        let out = run(self.kubectl().arg("get").args(args).args(["-o", "json"]));
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
    }

    pub(crate) fn helm(&self) -> Command {
        helm_command(&self.env)
    }

    pub(crate) fn crictl(&self) -> Command {
        let mut cmd = Command::new(self.var("SITG_CRICTL"));
        cmd.arg("--runtime-endpoint")
            .arg(self.var("CONTAINER_RUNTIME_ENDPOINT"));
        cmd
    }
}

pub(crate) fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// `(repository, tag)` of an image reference.
pub(crate) fn split_image(image: &str) -> (&str, &str) {
    image.rsplit_once(':').expect("image reference with a tag")
}

/// The simulators' pod: `sitg-sandbox serve` on the pod IP, outbox actions only from the
/// control API (`--no-enqueue`: webhooks forwarded, none turned into actions).
pub(crate) fn sandbox_pod(image: &str) -> Value {
    let port = |name: &str, port: u16| json!({"name": name, "containerPort": port});
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": SANDBOX_POD, "namespace": FLEET_NS, "labels": {"app": SANDBOX_POD}},
        "spec": {
            "containers": [{
                "name": "sandbox",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["serve", "--bind-address", "0.0.0.0", "--advertise-host", "$(POD_IP)",
                         "--github-port", GITHUB_PORT.to_string(),
                         "--backend-port", BACKEND_PORT.to_string(),
                         "--control-port", CONTROL_PORT.to_string(),
                         "--no-enqueue"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [port("github", GITHUB_PORT), port("backend", BACKEND_PORT), port("control", CONTROL_PORT)],
                "readinessProbe": {"tcpSocket": {"port": CONTROL_PORT}, "periodSeconds": 1},
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                     "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    })
}

/// The KEY=VALUE lines `sitg-sandbox serve` printed, from the pod's log (through the
/// API server and the kubelet).
pub(crate) fn sandbox_env(node: &Node) -> BTreeMap<String, String> {
    wait_for("the simulators' environment in their log", || {
        let out = run(node.kubectl().args(["-n", FLEET_NS, "logs", SANDBOX_POD]));
        let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        env.contains_key("SITG_SANDBOX_CONTROL_URL").then_some(env)
    })
}

/// `examples/botfleet.yaml` with the image, the URLs and the simulators' ids.
pub(crate) fn example_fleet(image: &str, sim: &BTreeMap<String, String>) -> Value {
    let mut fleet = yaml(&read("examples/botfleet.yaml"));
    let (repository, tag) = split_image(image);
    fleet["metadata"]["namespace"] = json!(FLEET_NS);
    fleet["spec"]["image"] = json!({"repository": repository, "tag": tag, "pullPolicy": "Never"});
    fleet["spec"]["github"]["apiBaseUrl"] = json!(sim["GITHUB_API_BASE_URL"]);
    fleet["spec"]["github"]["appId"] = json!(sim["GITHUB_APP_ID"].parse::<u64>().expect("app id"));
    fleet["spec"]["backend"]["baseUrl"] = json!(sim["BACKEND_BASE_URL"]);
    fleet["spec"]["backend"]["botKeyId"] = json!(sim["BACKEND_BOT_KEY_ID"]);
    // Actions are executed within a second of being enqueued.
    fleet["spec"]["outbox"]["pollIntervalMs"] = json!(1000);
    fleet
}

pub(crate) fn fleet_pods(node: &Node, fleet: &str) -> Vec<Value> {
    node.get(&[
        "pods",
        "-n",
        FLEET_NS,
        "-l",
        &format!("app.kubernetes.io/instance={fleet}"),
    ])
    .and_then(|list| list["items"].as_array().cloned())
    .unwrap_or_default()
}

/// `http://IP:PORT/webhooks/github` of every ready endpoint in the EndpointSlices of the
/// fleet's Service, as an ingress controller routes.
pub(crate) fn ready_webhook_endpoints(node: &Node, service: &str) -> Vec<String> {
    let slices = node
        .get(&[
            "endpointslices",
            "-n",
            FLEET_NS,
            "-l",
            &format!("kubernetes.io/service-name={service}"),
        ])
        .unwrap_or(Value::Null);
    let mut urls = Vec::new();
    for slice in slices["items"].as_array().into_iter().flatten() {
        let Some(port) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"] == json!(WEBHOOK_PORT))
        else {
            continue;
        };
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] != json!(true) {
                continue;
            }
            for address in endpoint["addresses"].as_array().into_iter().flatten() {
                urls.push(format!(
                    "http://{}:{}/webhooks/github",
                    address.as_str().expect("address"),
                    port["port"]
                ));
            }
        }
    }
    urls.sort();
    urls
}

pub(crate) fn stats(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    control: &str,
) -> Option<Value> {
    rt.block_on(async {
        client
            .get(format!("{control}/stats"))
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    })
}

pub(crate) fn assert_worker_pod(pod: &Value) {
    let name = pod["metadata"]["name"].as_str().expect("pod name");
    assert!(pod_ready(pod), "{name} is Ready: {}", pod["status"]);
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    assert!(
        container["readinessProbe"]["httpGet"]["path"].is_string(),
        "{name}: readiness probe {}",
        container["readinessProbe"]
    );
    assert!(
        container["livenessProbe"]["httpGet"]["path"].is_string(),
        "{name}: liveness probe {}",
        container["livenessProbe"]
    );
    let run_as_non_root = container["securityContext"]["runAsNonRoot"] == json!(true)
        || spec["securityContext"]["runAsNonRoot"] == json!(true);
    assert!(run_as_non_root, "{name}: runAsNonRoot");
    let uid = container["securityContext"]["runAsUser"]
        .as_i64()
        .or(spec["securityContext"]["runAsUser"].as_i64());
    assert_eq!(uid, Some(65532), "{name}: runs as the image's nonroot user");
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"],
        json!(true),
        "{name}: read-only root filesystem"
    );
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], json!(true), "{name}: container ready");
    assert!(status["state"]["running"].is_object(), "{name}: running");
}

/// Held by every test that uses the node, for its whole run: they take the node in turn.
/// A test that panicked still hands the node on (the lock's poison is ignored).
pub(crate) fn node_lock() -> MutexGuard<'static, ()> {
    static NODE: Mutex<()> = Mutex::new(());
    NODE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What every fleet on the node runs against, set up once per node
/// ([`installed`]): the simulators' pod in [`FLEET_NS`], the chart in [`OPERATOR_NS`]
/// with its defaults except the image, and the Secret `sitg-bot` in [`FLEET_NS`]
/// holding the simulators' webhook secret, App private key and backend HMAC secret.
pub(crate) struct Installed {
    /// The `sitg-bot` image the chart (and the fleets) run: `SITG_TEST_IMAGE`.
    pub(crate) image: String,
    /// The worker environment `sitg-sandbox serve` printed (KEY=VALUE lines of its log).
    pub(crate) sim: BTreeMap<String, String>,
    /// The simulators' control API, `http://POD_IP:CONTROL_PORT`.
    pub(crate) control: String,
}

/// The once-per-node set-up; the first caller (holding [`node_lock`]) makes it.
pub(crate) fn installed(node: &Node) -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| install(node))
}

fn install(node: &Node) -> Installed {
    let image = std::env::var("SITG_TEST_IMAGE").expect("SITG_TEST_IMAGE (scripts/image.sh name)");
    let sandbox_image = std::env::var("SITG_TEST_SANDBOX_IMAGE")
        .expect("SITG_TEST_SANDBOX_IMAGE (scripts/image.sh name sitg-sandbox)");

    // The simulators as a pod.
    node.kubectl_ok(&["create", "namespace", FLEET_NS]);
    node.apply(&sandbox_pod(&sandbox_image));
    wait_for("the simulators' pod Ready", || {
        node.get(&["pod", "-n", FLEET_NS, SANDBOX_POD])
            .filter(pod_ready)
    });
    let sim = sandbox_env(node);
    let control = sim["SITG_SANDBOX_CONTROL_URL"].clone();

    // The chart with its defaults, except the image.
    let (repository, tag) = split_image(&image);
    run_ok(
        node.helm().args([
            "install",
            "sitg-bot",
            &chart_dir().display().to_string(),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "3m",
        ]),
        "helm install",
    );

    // The Secret the example fleet references.
    let secret_file = |name: &str, value: &str| {
        let path = node.dir.join(format!("e2e-{name}"));
        std::fs::write(&path, value).expect("write secret value");
        format!("--from-file={name}={}", path.display())
    };
    let private_key = sim["GITHUB_APP_PRIVATE_KEY"].replace("\\n", "\n");
    node.kubectl_ok(&[
        "-n",
        FLEET_NS,
        "create",
        "secret",
        "generic",
        "sitg-bot",
        &secret_file("webhook-secret", &sim["GITHUB_WEBHOOK_SECRET"]),
        &secret_file("private-key", &private_key),
        &secret_file("hmac-secret", &sim["BACKEND_INTERNAL_HMAC_SECRET"]),
    ]);
    for name in ["webhook-secret", "private-key", "hmac-secret"] {
        let _ = std::fs::remove_file(node.dir.join(format!("e2e-{name}")));
    }
    Installed {
        image,
        sim,
        control,
    }
}

/// The `pull_request.opened` example of GitHub, moved to a repository the simulators
/// installed the App on (the worker looks the installation up before forwarding).
pub(crate) fn pull_request_body() -> Vec<u8> {
    let examples = sitg_sandbox::examples::Examples::load(&sitg_sandbox::examples::default_dir())
        .expect("GitHub's example payloads (scripts/fetch-fixtures.sh)");
    let opened = examples
        .of("pull_request", Some("opened"))
        .next()
        .expect("a pull_request.opened example");
    let mut payload: Value = serde_json::from_slice(&opened.body()).expect("example JSON");
    payload["installation"]["id"] = json!(1);
    payload["repository"]["id"] = json!(1001);
    payload["repository"]["name"] = json!("repo-1");
    payload["repository"]["full_name"] = json!("bench-org-1/repo-1");
    payload["repository"]["owner"]["login"] = json!("bench-org-1");
    serde_json::to_vec(&payload).expect("payload")
}

/// The runtime a node test drives its async clients on (`threads` worker threads).
pub(crate) fn test_runtime(threads: usize) -> tokio::runtime::Runtime {
    sitg_sandbox::tls::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A client for the simulators' control API (10 s per request).
pub(crate) fn control_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}
