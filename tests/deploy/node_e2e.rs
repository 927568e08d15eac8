//! The fleet on a real node, installed the way users install it (issue "the fleet on a
//! real node"; docs/deployment.md, "Trying it on a one-node cluster", repeats it by hand).
//!
//! `scripts/test.sh` builds the images (`scripts/image.sh build`), starts a one-node
//! cluster (`scripts/node.sh up`: control plane, kube-scheduler, containerd, kubelet),
//! imports the images into the node's containerd and exports:
//! `SITG_TEST_NODE_ENV` (the node's env file), `SITG_TEST_IMAGE` (the sitg-bot image),
//! `SITG_TEST_SANDBOX_IMAGE` (the simulators' image). `SITG_TEST_NODE=0` skips the test
//! with a line saying so (machines that cannot run a kubelet).
//!
//! 1. The simulators run as a pod of the simulators' image (`sitg-sandbox serve` on the
//!    pod IP, fixed ports); their worker environment is read from the pod's log.
//! 2. `helm install charts/sitg-bot` with its defaults except the image (the one built,
//!    `pullPolicy: Never`): the operator runs as pods of that image with the chart's RBAC.
//! 3. `examples/botfleet.yaml` with only the image, the URLs and the simulators' ids
//!    changed gives Ready worker pods, with the operator's probes, non-root, read-only
//!    root filesystem (asserted from the pod objects the API server returns).
//! 4. Signed webhooks go to the ready endpoints of the fleet's Service's EndpointSlices
//!    (the test is the load balancer) and reach the backend simulator; outbox actions
//!    are executed against the GitHub simulator and reported (the simulators' own
//!    `/stats`).
//! 5. A worker container killed with `crictl stop` restarts in place (restartCount goes
//!    up, same pod, `WORKER_ID` = the pod name) and no action stays `CLAIMED`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};
use sitg_bot::operator::build::WEBHOOK_PORT;

const WAIT: Duration = Duration::from_secs(180);
const FLEET_NS: &str = "sitg-e2e";
const OPERATOR_NS: &str = "sitg-system";
const SANDBOX_POD: &str = "sitg-sandbox";
const GITHUB_PORT: u16 = 8081;
const BACKEND_PORT: u16 = 8082;
const CONTROL_PORT: u16 = 8083;
const WEBHOOKS: usize = 12;
const ACTIONS: u64 = 8;

/// The node `scripts/test.sh` brought up, as its env file describes it.
struct Node {
    env: BTreeMap<String, String>,
    dir: PathBuf,
}

impl Node {
    fn from_env() -> Option<Self> {
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

    fn var(&self, name: &str) -> &str {
        env_var(&self.env, name)
    }

    fn kubectl(&self) -> Command {
        kubectl_command(&self.env)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        run_ok(
            self.kubectl().args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    fn apply(&self, object: &Value) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), object.to_string()).expect("write manifest");
        self.kubectl_ok(&["apply", "-f", &file.path().display().to_string()]);
    }

    fn get(&self, args: &[&str]) -> Option<Value> {
        let out = run(self.kubectl().arg("get").args(args).args(["-o", "json"]));
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
    }

    fn helm(&self) -> Command {
        helm_command(&self.env)
    }

    fn crictl(&self) -> Command {
        let mut cmd = Command::new(self.var("SITG_CRICTL"));
        cmd.arg("--runtime-endpoint")
            .arg(self.var("CONTAINER_RUNTIME_ENDPOINT"));
        cmd
    }
}

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
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// `(repository, tag)` of an image reference.
fn split_image(image: &str) -> (&str, &str) {
    image.rsplit_once(':').expect("image reference with a tag")
}

/// The simulators' pod: `sitg-sandbox serve` on the pod IP, outbox actions only from the
/// control API (`--no-enqueue`: webhooks forwarded, none turned into actions).
fn sandbox_pod(image: &str) -> Value {
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
fn sandbox_env(node: &Node) -> BTreeMap<String, String> {
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
fn example_fleet(image: &str, sim: &BTreeMap<String, String>) -> Value {
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

fn fleet_pods(node: &Node, fleet: &str) -> Vec<Value> {
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
fn ready_webhook_endpoints(node: &Node, service: &str) -> Vec<String> {
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

fn stats(rt: &tokio::runtime::Runtime, client: &reqwest::Client, control: &str) -> Option<Value> {
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

fn assert_worker_pod(pod: &Value) {
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

#[test]
fn the_chart_and_a_fleet_run_on_a_real_node() {
    let Some(node) = Node::from_env() else {
        return;
    };
    let started = Instant::now();
    let image = std::env::var("SITG_TEST_IMAGE").expect("SITG_TEST_IMAGE (scripts/image.sh name)");
    let sandbox_image = std::env::var("SITG_TEST_SANDBOX_IMAGE")
        .expect("SITG_TEST_SANDBOX_IMAGE (scripts/image.sh name sitg-sandbox)");
    sitg_sandbox::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // 1. The simulators as a pod.
    node.kubectl_ok(&["create", "namespace", FLEET_NS]);
    node.apply(&sandbox_pod(&sandbox_image));
    wait_for("the simulators' pod Ready", || {
        node.get(&["pod", "-n", FLEET_NS, SANDBOX_POD])
            .filter(pod_ready)
    });
    let sim = sandbox_env(&node);
    let control = sim["SITG_SANDBOX_CONTROL_URL"].clone();
    let sim_pod = node
        .get(&["pod", "-n", FLEET_NS, SANDBOX_POD])
        .expect("sandbox pod");
    let pod_ip = sim_pod["status"]["podIP"].as_str().expect("pod IP");
    assert_eq!(control, format!("http://{pod_ip}:{CONTROL_PORT}"));
    assert!(
        stats(&rt, &client, &control).is_some(),
        "control API answers"
    );

    // 2. The chart with its defaults, except the image.
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
    let operators = node
        .get(&["pods", "-n", OPERATOR_NS])
        .expect("operator pods");
    let operators = operators["items"].as_array().expect("items");
    assert!(!operators.is_empty());
    for pod in operators {
        assert!(pod_ready(pod), "operator pod Ready: {}", pod["status"]);
        assert_eq!(pod["spec"]["containers"][0]["image"], json!(image));
        assert_eq!(pod["spec"]["serviceAccountName"], json!("sitg-bot"));
    }

    // 3. The example fleet.
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
    let fleet = example_fleet(&image, &sim);
    let fleet_name = fleet["metadata"]["name"].as_str().expect("name").to_owned();
    node.apply(&fleet);
    let pods = wait_for("two Ready worker pods", || {
        let pods = fleet_pods(&node, &fleet_name);
        (pods.len() >= 2 && pods.iter().all(pod_ready)).then_some(pods)
    });
    for pod in &pods {
        assert_worker_pod(pod);
        assert_eq!(pod["spec"]["containers"][0]["image"], json!(image));
    }

    // 4. Webhooks to the ready endpoints, actions through the outbox.
    let endpoints = wait_for("every worker pod ready in the EndpointSlices", || {
        let urls = ready_webhook_endpoints(&node, &fleet_name);
        (urls.len() == pods.len()).then_some(urls)
    });
    let examples = sitg_sandbox::examples::Examples::load(&sitg_sandbox::examples::default_dir())
        .expect("GitHub's example payloads (scripts/fetch-fixtures.sh)");
    let opened = examples
        .of("pull_request", Some("opened"))
        .next()
        .expect("a pull_request.opened example");
    // GitHub's example, moved to a repository the simulators installed the App on (the
    // worker looks the installation up before forwarding).
    let mut payload: Value = serde_json::from_slice(&opened.body()).expect("example JSON");
    payload["installation"]["id"] = json!(1);
    payload["repository"]["id"] = json!(1001);
    payload["repository"]["name"] = json!("repo-1");
    payload["repository"]["full_name"] = json!("bench-org-1/repo-1");
    payload["repository"]["owner"]["login"] = json!("bench-org-1");
    let body = serde_json::to_vec(&payload).expect("payload");
    let before = stats(&rt, &client, &control).expect("stats");
    let ingested_before = before["backend"]["requests"]["PullRequestIngest"]
        .as_u64()
        .unwrap_or(0);
    for i in 0..WEBHOOKS {
        let url = &endpoints[i % endpoints.len()];
        let delivery = uuid::Uuid::new_v4().to_string();
        let answer = rt
            .block_on(sitg_sandbox::examples::deliver(
                &client,
                url,
                &sim["GITHUB_WEBHOOK_SECRET"],
                "pull_request",
                &delivery,
                body.clone(),
            ))
            .unwrap_or_else(|e| panic!("delivery {i} to {url}: {e}"));
        assert!(
            (200..300).contains(&answer.status),
            "delivery {i} to {url}: {} {}",
            answer.status,
            answer.body
        );
    }
    let after = stats(&rt, &client, &control).expect("stats");
    assert_eq!(
        after["backend"]["requests"]["PullRequestIngest"].as_u64(),
        Some(ingested_before + WEBHOOKS as u64),
        "every delivery reached the backend once: {after}"
    );
    rt.block_on(async {
        client
            .post(format!("{control}/actions?count={ACTIONS}"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
    })
    .expect("enqueue actions");
    wait_for("the outbox actions executed and reported", || {
        let s = stats(&rt, &client, &control)?;
        (s["outbox"]["done"].as_u64() == Some(ACTIONS)).then_some(())
    });
    let s = stats(&rt, &client, &control).expect("stats");
    assert_eq!(s["outbox"]["claimed"], json!(0), "{s}");
    assert!(
        s["github"]["api_requests"].as_u64().unwrap_or(0) >= ACTIONS,
        "the comments were made on GitHub: {s}"
    );

    // 5. A killed worker container restarts in place and releases what it claimed.
    let victim = &pods[0];
    let victim_name = victim["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let uid = victim["metadata"]["uid"].clone();
    let worker_id = victim["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "WORKER_ID")
        .cloned()
        .expect("WORKER_ID in the pod spec");
    assert_eq!(
        worker_id["valueFrom"]["fieldRef"]["fieldPath"],
        json!("metadata.name"),
        "WORKER_ID is the pod name"
    );
    let restarts = victim["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .expect("restartCount");
    let container_id = victim["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("containerd://"))
        .expect("containerd container id")
        .to_owned();
    // Work in the outbox while the container dies: what it claimed must come back.
    rt.block_on(async {
        client
            .post(format!("{control}/actions?count={}", ACTIONS * 10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
    })
    .expect("enqueue actions");
    std::thread::sleep(Duration::from_millis(1500));
    run_ok(
        node.crictl()
            .args(["stop", "--timeout", "0", &container_id]),
        "crictl stop",
    );
    let restarted = wait_for("the killed worker back and Ready", || {
        let pod = node.get(&["pod", "-n", FLEET_NS, &victim_name])?;
        let count = pod["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
        (count > restarts && pod_ready(&pod)).then_some(pod)
    });
    assert_eq!(
        restarted["metadata"]["uid"], uid,
        "the same pod, restarted in place"
    );
    assert_worker_pod(&restarted);
    // Every action ends DONE (or FAILED); none stays CLAIMED by the killed container. A
    // kill between the claim's answer and the claim journal's last fsync leaves the
    // unrecorded claims CLAIMED: the message then says how many.
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(&rt, &client, &control).expect("stats");
        let finished =
            s["outbox"]["done"].as_u64().unwrap_or(0) + s["outbox"]["failed"].as_u64().unwrap_or(0);
        if finished == ACTIONS * 11 && s["outbox"]["claimed"] == json!(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart of {victim_name}, {} of {} actions finished and {} stay \
             CLAIMED (outbox {}; the restarted worker's log names what its journal released)",
            finished,
            ACTIONS * 11,
            s["outbox"]["claimed"],
            s["outbox"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // What the rest of the run does not need: the node itself goes at the end of
    // scripts/test.sh.
    let _ = run(node
        .helm()
        .args(["uninstall", "sitg-bot", "--namespace", OPERATOR_NS]));
    let _ = run(node
        .kubectl()
        .args(["delete", "namespace", FLEET_NS, "--wait=false"]));
    println!(
        "node e2e: fleet installed, {WEBHOOKS} webhooks, {} actions, a restart, in {:?}",
        ACTIONS * 11,
        started.elapsed()
    );
}
