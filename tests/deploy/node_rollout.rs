//! A rollout loses nothing (issue "the fleet on a real node", item 5; docs/deployment.md,
//! "Trying it on a one-node cluster", repeats it by hand).
//!
//! On the node of `node_e2e` (same set-up: simulators' pod, chart, Secret), with the
//! second build of the worker image (`scripts/image.sh next`: the first plus a label,
//! its own image ID and tag; `SITG_TEST_IMAGE_NEXT`):
//!
//! 1. A fleet `rollout` (the example without autoscaling, `replicas: 2`, image pinned to
//!    `SITG_TEST_IMAGE`) is Ready.
//! 2. The test is the load balancer: it re-reads the fleet Service's EndpointSlices
//!    every 200 ms and sends signed `pull_request` deliveries at 60/s, round robin, only
//!    to endpoints that are ready and not terminating; it never retries. Outbox actions
//!    are enqueued through the simulators' control API all along. A watcher samples the
//!    PodDisruptionBudget's status and the fleet's Ready pods every 250 ms.
//! 3. Under that load the fleet's image is patched to the second build: the rollout
//!    completes (the Deployment's `maxUnavailable: 0`), new pods report the second
//!    build's image ID (container status `imageID`, as containerd names the image).
//! 4. The pin is removed (`spec.image.repository`, `spec.image.tag`): the operator
//!    rolls the fleet to its own image, which the chart told it
//!    (`SITG_OPERATOR_IMAGE_*`), not to the compiled-in `ghcr.io/sitg/sitg-bot:<version>`.
//! 5. `helm upgrade --reuse-values --set image.tag=<second build>`: the operator
//!    Deployment rolls, the Lease `sitg-bot` in `sitg-system` goes to a new operator pod
//!    (`holderIdentity`, `leaseTransitions` up), and the new leader rolls the fleet to
//!    the operator's new image.
//! 6. Load stopped: every delivery got an HTTP answer (no refused or reset connection,
//!    no timeout, never an instant without a ready endpoint), every delivery answered
//!    2xx reached the backend exactly once (the backend simulator's per-delivery ingest
//!    counts, `GET /deliveries`), 5xx answers are counted and printed; the PDB's
//!    `currentHealthy` never fell below its `desiredHealthy`, nor the Ready pods below
//!    the replicas (`maxUnavailable: 0`); every action ends `DONE` or `FAILED`, none
//!    `CLAIMED`.
//!
//! At the end (also after a failure) the fleet is deleted and the release upgraded back
//! to `SITG_TEST_IMAGE`, so the other tests on the node find the set-up they expect.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sitg_bot::operator::build::WEBHOOK_PORT;

use crate::node_support::*;
use crate::support::*;

const FLEET: &str = "rollout";
/// The fleet's fixed replica count.
const REPLICAS: usize = 2;
/// The Helm release of the set-up, and the Lease its operator elects a leader on.
const RELEASE: &str = "sitg-bot";
/// Deliveries per second the load balancer sends.
const RATE_PER_SECOND: u64 = 60;
/// How often the load balancer re-reads the EndpointSlices.
const ENDPOINTS_REFRESH: Duration = Duration::from_millis(200);
/// How often the PDB and the Ready pods are sampled.
const SAMPLE_PERIOD: Duration = Duration::from_millis(250);
/// Actions enqueued before the first rollout, then every [`ENQUEUE_PERIOD`].
const ACTIONS_FIRST: u64 = 200;
const ACTIONS_EACH: u64 = 10;
const ENQUEUE_PERIOD: Duration = Duration::from_secs(2);
/// Timeout of one delivery, as GitHub's (10 s).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the sender saw.
#[derive(Default)]
struct Sent {
    /// Deliveries sent (a request started).
    sent: u64,
    /// Ticks at which the load balancer had no ready endpoint (an ingress would answer
    /// 503 itself).
    no_endpoint: u64,
    /// HTTP answers by status code.
    by_status: BTreeMap<u16, u64>,
    /// Delivery ids answered 2xx.
    ok: Vec<String>,
    /// Deliveries answered otherwise: `(id, status, body)`.
    not_ok: Vec<(String, u16, String)>,
    /// Deliveries without an HTTP answer: `url: error`.
    errors: Vec<String>,
}

/// What the watcher saw.
#[derive(Default)]
struct Samples {
    count: u64,
    /// Samples where `currentHealthy < desiredHealthy` or fewer Ready pods than the
    /// PDB requires: `(seconds since start, currentHealthy, desiredHealthy, ready)`.
    violations: Vec<(f64, i32, i32, usize)>,
    min_ready: Option<usize>,
    min_current_healthy: Option<i32>,
    max_desired_healthy: i32,
    /// Samples with fewer Ready pods (not terminating) than [`REPLICAS`], which
    /// `maxUnavailable: 0` rules out: `(seconds since start, Ready pods)`.
    below_replicas: Vec<(f64, usize)>,
    /// Distinct endpoint sets the load balancer routed to.
    endpoint_sets: u64,
}

struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Sent>>,
    samples: Arc<Mutex<Samples>>,
    enqueued: Arc<Mutex<u64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

fn endpoints_of(slices: &[EndpointSlice]) -> Vec<String> {
    let mut urls = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.port == Some(WEBHOOK_PORT))
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            // As an ingress controller routes: ready, and not on its way out.
            if conditions.ready != Some(true) || conditions.terminating == Some(true) {
                continue;
            }
            for address in &endpoint.addresses {
                urls.push(format!(
                    "http://{address}:{}/webhooks/github",
                    port.port.unwrap_or(WEBHOOK_PORT)
                ));
            }
        }
    }
    urls.sort();
    urls
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn enqueue(client: &reqwest::Client, control: &str, count: u64) -> bool {
    client
        .post(format!("{control}/actions?count={count}"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .is_ok()
}

impl Load {
    fn start(
        rt: &tokio::runtime::Runtime,
        kube: kube::Client,
        installed: &Installed,
        body: Vec<u8>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Sent::default()));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let enqueued = Arc::new(Mutex::new(0));
        let endpoints: Arc<RwLock<Vec<String>>> = Arc::default();
        let started = Instant::now();
        let mut tasks = Vec::new();
        let _guard = rt.enter();

        // The load balancer's view of the fleet: the Service's EndpointSlices.
        let slices: Api<EndpointSlice> = Api::namespaced(kube.clone(), FLEET_NS);
        let selector = ListParams::default().labels(&format!("kubernetes.io/service-name={FLEET}"));
        {
            let (stop, endpoints, samples) = (stop.clone(), endpoints.clone(), samples.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(list) = slices.list(&selector).await {
                        let urls = endpoints_of(&list.items);
                        let mut current = endpoints.write().expect("endpoints lock");
                        if *current != urls {
                            samples.lock().expect("samples lock").endpoint_sets += 1;
                            *current = urls;
                        }
                    }
                    tokio::time::sleep(ENDPOINTS_REFRESH).await;
                }
            }));
        }

        // The sender: open loop at RATE_PER_SECOND, one task per delivery, no retry.
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .expect("client");
        {
            let (stop, endpoints, sent) = (stop.clone(), endpoints.clone(), sent.clone());
            let secret = installed.sim["GITHUB_WEBHOOK_SECRET"].clone();
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SECOND));
                let mut deliveries = tokio::task::JoinSet::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let url = {
                        let urls = endpoints.read().expect("endpoints lock");
                        if urls.is_empty() {
                            None
                        } else {
                            n = n.wrapping_add(1);
                            Some(urls[n % urls.len()].clone())
                        }
                    };
                    let Some(url) = url else {
                        let mut s = sent.lock().expect("sent lock");
                        // Before the first read of the EndpointSlices there is none yet.
                        if s.sent > 0 {
                            s.no_endpoint += 1;
                        }
                        continue;
                    };
                    sent.lock().expect("sent lock").sent += 1;
                    let (client, secret, body, sent) =
                        (client.clone(), secret.clone(), body.clone(), sent.clone());
                    deliveries.spawn(async move {
                        let id = uuid::Uuid::new_v4().to_string();
                        let answer = sitg_sandbox::examples::deliver(
                            &client,
                            &url,
                            &secret,
                            "pull_request",
                            &id,
                            body,
                        )
                        .await;
                        let mut s = sent.lock().expect("sent lock");
                        match answer {
                            Ok(a) => {
                                *s.by_status.entry(a.status).or_default() += 1;
                                if (200..300).contains(&a.status) {
                                    s.ok.push(id);
                                } else {
                                    s.not_ok.push((id, a.status, a.body.to_string()));
                                }
                            }
                            Err(e) => s.errors.push(format!("{url}: {e:?}")),
                        }
                    });
                    while deliveries.try_join_next().is_some() {}
                }
                while deliveries.join_next().await.is_some() {}
            }));
        }

        // Work in the outbox all along.
        {
            let (stop, enqueued) = (stop.clone(), enqueued.clone());
            let control = installed.control.clone();
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut count = ACTIONS_FIRST;
                while !stop.load(Ordering::Relaxed) {
                    if enqueue(&client, &control, count).await {
                        *enqueued.lock().expect("enqueued lock") += count;
                    }
                    count = ACTIONS_EACH;
                    tokio::time::sleep(ENQUEUE_PERIOD).await;
                }
            }));
        }

        // The PDB and the Ready pods, sampled.
        {
            let (stop, samples) = (stop.clone(), samples.clone());
            let pdbs: Api<PodDisruptionBudget> = Api::namespaced(kube.clone(), FLEET_NS);
            let pods: Api<Pod> = Api::namespaced(kube, FLEET_NS);
            let pod_selector =
                ListParams::default().labels(&format!("app.kubernetes.io/instance={FLEET}"));
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (pdb, pods) = tokio::join!(pdbs.get(FLEET), pods.list(&pod_selector));
                    if let (Ok(pdb), Ok(pods)) = (pdb, pods)
                        && let Some(status) = pdb.status
                    {
                        let ready = pods.items.iter().filter(|p| is_ready(p)).count();
                        let mut s = samples.lock().expect("samples lock");
                        s.count += 1;
                        s.min_ready = Some(s.min_ready.map_or(ready, |m| m.min(ready)));
                        s.min_current_healthy = Some(
                            s.min_current_healthy
                                .map_or(status.current_healthy, |m| m.min(status.current_healthy)),
                        );
                        s.max_desired_healthy = s.max_desired_healthy.max(status.desired_healthy);
                        if ready < REPLICAS {
                            s.below_replicas
                                .push((started.elapsed().as_secs_f64(), ready));
                        }
                        if status.current_healthy < status.desired_healthy
                            || (ready as i32) < status.desired_healthy
                        {
                            s.violations.push((
                                started.elapsed().as_secs_f64(),
                                status.current_healthy,
                                status.desired_healthy,
                                ready,
                            ));
                        }
                    }
                    tokio::time::sleep(SAMPLE_PERIOD).await;
                }
            }));
        }
        Self {
            stop,
            sent,
            samples,
            enqueued,
            tasks,
            started,
        }
    }

    /// Stops sending and waits for every delivery in flight to be answered (or time
    /// out); returns the seconds the load ran.
    fn stop(self, rt: &tokio::runtime::Runtime) -> (f64, Sent, Samples, u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for task in self.tasks {
                task.await.expect("load task");
            }
        });
        let take = |m: Arc<Mutex<Sent>>| std::mem::take(&mut *m.lock().expect("sent lock"));
        let enqueued = *self.enqueued.lock().expect("enqueued lock");
        let samples = std::mem::take(&mut *self.samples.lock().expect("samples lock"));
        (seconds, take(self.sent), samples, enqueued)
    }
}

/// The image IDs containerd knows `image` by (`crictl inspecti`: the image ID and its
/// repo digests), any of which the kubelet reports as a container's `imageID`.
fn image_ids(node: &Node, image: &str) -> BTreeSet<String> {
    let out = run_ok(
        node.crictl().args(["inspecti", "-o", "json", image]),
        "crictl inspecti",
    );
    let info: Value = serde_json::from_str(&out).expect("crictl JSON");
    let status = &info["status"];
    let mut ids: BTreeSet<String> = status["repoDigests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    ids.insert(status["id"].as_str().expect("image id").to_owned());
    ids
}

/// Waits until the fleet's Deployment has rolled out `image` completely: observed,
/// every replica updated, ready and available, and the replaced pods gone (drained
/// and stopped). Returns the pods.
fn rolled_out(node: &Node, image: &str) -> Vec<Value> {
    wait_for(&format!("the fleet rolled out to {image}"), || {
        let d = node.get(&["deployment", "-n", FLEET_NS, FLEET])?;
        let want = d["spec"]["replicas"].as_i64()?;
        let status = &d["status"];
        let complete = d["spec"]["template"]["spec"]["containers"][0]["image"] == json!(image)
            && status["observedGeneration"].as_i64()? >= d["metadata"]["generation"].as_i64()?
            && status["updatedReplicas"].as_i64() == Some(want)
            && status["readyReplicas"].as_i64() == Some(want)
            && status["availableReplicas"].as_i64() == Some(want)
            && status["replicas"].as_i64() == Some(want);
        if !complete {
            return None;
        }
        // The pods replaced are gone too: their drain and stop ran under the load.
        let pods = fleet_pods(node, FLEET);
        let on_image = pods.iter().all(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && pod_ready(p)
                && p["spec"]["containers"][0]["image"] == json!(image)
                && p["status"]["containerStatuses"][0]["imageID"].is_string()
        });
        (pods.len() as i64 == want && on_image).then_some(pods)
    })
}

fn pod_image_ids(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| {
            p["status"]["containerStatuses"][0]["imageID"]
                .as_str()
                .expect("imageID")
                .to_owned()
        })
        .collect()
}

fn assert_on_image(node: &Node, pods: &[Value], image: &str, what: &str) {
    let known = image_ids(node, image);
    for id in pod_image_ids(pods) {
        assert!(
            known.contains(&id),
            "{what}: a pod reports imageID {id}, containerd knows {image} as {known:?}"
        );
    }
    for pod in pods {
        assert_worker_pod(pod);
    }
}

fn operator_pods(node: &Node) -> Vec<Value> {
    node.get(&["pods", "-n", OPERATOR_NS])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn helm_upgrade_to(node: &Node, image: &str) {
    let (_, tag) = split_image(image);
    run_ok(
        node.helm().args([
            "upgrade",
            RELEASE,
            &chart_dir().display().to_string(),
            "--namespace",
            OPERATOR_NS,
            "--reuse-values",
            "--set",
            &format!("image.tag={tag}"),
            "--wait",
            "--timeout",
            "3m",
        ]),
        "helm upgrade",
    );
}

/// Waits until every operator pod runs `image`, is Ready, and none is terminating.
fn operators_on(node: &Node, image: &str) -> Vec<Value> {
    wait_for(&format!("only operator pods of {image}"), || {
        let pods = operator_pods(node);
        let all = !pods.is_empty()
            && pods.iter().all(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && pod_ready(p)
                    && p["spec"]["containers"][0]["image"] == json!(image)
            });
        all.then_some(pods)
    })
}

/// On the way out, also after a failure: the fleet goes and the operator is back on
/// the set-up's image, for the tests that take the node next.
struct Restore<'a> {
    node: &'a Node,
    image: String,
}

impl Drop for Restore<'_> {
    // Never panics (it also runs while a failed assertion unwinds): what it could not
    // put back, it says.
    fn drop(&mut self) {
        let _ = run(self.node.kubectl().args([
            "-n",
            FLEET_NS,
            "delete",
            "botfleet",
            FLEET,
            "--wait=false",
        ]));
        let on_image = |node: &Node| {
            let pods = operator_pods(node);
            !pods.is_empty()
                && pods.iter().all(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && pod_ready(p)
                        && p["spec"]["containers"][0]["image"] == json!(self.image)
                })
        };
        if on_image(self.node) {
            return;
        }
        let (_, tag) = split_image(&self.image);
        let out = run(self.node.helm().args([
            "upgrade",
            RELEASE,
            &chart_dir().display().to_string(),
            "--namespace",
            OPERATOR_NS,
            "--reuse-values",
            "--set",
            &format!("image.tag={tag}"),
            "--wait",
            "--timeout",
            "3m",
        ]));
        let deadline = Instant::now() + WAIT;
        while !on_image(self.node) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        if !out.status.success() || !on_image(self.node) {
            eprintln!(
                "node rollout: the operator could not be put back on {}: {}",
                self.image,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn lease(node: &Node) -> (String, i64) {
    let lease = node
        .get(&["lease", "-n", OPERATOR_NS, RELEASE])
        .expect("the operator's Lease");
    (
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
    )
}

fn progress(started: Instant, what: &str) {
    println!(
        "node rollout: {:>6.1} s {what}",
        started.elapsed().as_secs_f64()
    );
}

fn kube_client(node: &Node, rt: &tokio::runtime::Runtime) -> kube::Client {
    rt.block_on(async {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(node.var("KUBECONFIG")).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("client config");
        kube::Client::try_from(config).expect("client")
    })
}

#[test]
fn a_rollout_and_an_operator_upgrade_under_load_lose_nothing() {
    let Some(node) = Node::from_env() else {
        return;
    };
    let _node = node_lock();
    let started = Instant::now();
    let next = std::env::var("SITG_TEST_IMAGE_NEXT")
        .expect("SITG_TEST_IMAGE_NEXT (scripts/image.sh next; scripts/test.sh exports it)");
    let rt = test_runtime(3);
    let control_client = control_client();
    let installed = installed(&node);
    let image = installed.image.clone();
    assert_ne!(image_ids(&node, &image), image_ids(&node, &next));
    let _restore = Restore {
        node: &node,
        image: image.clone(),
    };
    let kube = kube_client(&node, &rt);

    // 1. The fleet, pinned to the first build, fixed at two replicas.
    let mut fleet = example_fleet(&image, &installed.sim);
    fleet["metadata"]["name"] = json!(FLEET);
    // Fixed replicas: no autoscaler may add pods while the test counts them.
    fleet["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("autoscaling");
    fleet["spec"]["replicas"] = json!(REPLICAS);
    node.apply(&fleet);
    let first = rolled_out(&node, &image);
    assert_on_image(&node, &first, &image, "the first build");
    let deployment = node
        .get(&["deployment", "-n", FLEET_NS, FLEET])
        .expect("deployment");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        json!(0),
        "the operator's Deployment never drops below its replicas"
    );

    // 2. Load: deliveries through the EndpointSlices, actions in the outbox, samples.
    let outbox_before =
        stats(&rt, &control_client, &installed.control).expect("stats")["outbox"].clone();
    progress(started, "the fleet is Ready; load starts");
    let load = Load::start(&rt, kube, installed, pull_request_body());
    std::thread::sleep(Duration::from_secs(3));

    // 3. The fleet's image to the second build.
    let (_, next_tag) = split_image(&next);
    node.kubectl_ok(&[
        "-n",
        FLEET_NS,
        "patch",
        "botfleet",
        FLEET,
        "--type",
        "merge",
        "-p",
        &json!({"spec": {"image": {"tag": next_tag}}}).to_string(),
    ]);
    let second = rolled_out(&node, &next);
    progress(started, "the fleet rolled to the second build");
    assert_on_image(&node, &second, &next, "after the fleet's image change");
    assert!(
        pod_image_ids(&first).is_disjoint(&pod_image_ids(&second)),
        "the second build has its own image ID"
    );

    // 4. The pin removed: the fleet follows the operator's own image (the chart's).
    node.kubectl_ok(&[
        "-n",
        FLEET_NS,
        "patch",
        "botfleet",
        FLEET,
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/image/repository"},{"op":"remove","path":"/spec/image/tag"}]"#,
    ]);
    let stored = node
        .get(&["botfleet", "-n", FLEET_NS, FLEET])
        .expect("fleet");
    assert!(
        stored["spec"]["image"].get("tag").is_none()
            && stored["spec"]["image"].get("repository").is_none(),
        "the API server stores no default image: {}",
        stored["spec"]["image"]
    );
    let unpinned = rolled_out(&node, &image);
    progress(
        started,
        "the unpinned fleet rolled to the operator's own image",
    );
    assert_on_image(&node, &unpinned, &image, "the operator's own image");

    // 5. The operator upgraded to the second build: the Lease moves, the fleet follows.
    let old_operators: BTreeSet<String> = operator_pods(&node)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();
    let (holder_before, transitions_before) = lease(&node);
    assert!(
        old_operators.contains(&holder_before),
        "an operator pod leads: {holder_before} of {old_operators:?}"
    );
    helm_upgrade_to(&node, &next);
    progress(started, "helm upgrade of the operator done");
    let new_operators: BTreeSet<String> = operators_on(&node, &next)
        .iter()
        .map(|p| {
            let env = p["spec"]["containers"][0]["env"].as_array().expect("env");
            let tag = env
                .iter()
                .find(|e| e["name"] == "SITG_OPERATOR_IMAGE_TAG")
                .expect("the chart tells the operator its image");
            assert_eq!(tag["value"], json!(next_tag));
            p["metadata"]["name"].as_str().expect("name").to_owned()
        })
        .collect();
    assert!(new_operators.is_disjoint(&old_operators));
    let (holder, transitions) = wait_for("the Lease held by a new operator pod", || {
        let (holder, transitions) = lease(&node);
        new_operators
            .contains(&holder)
            .then_some((holder, transitions))
    });
    assert!(
        transitions > transitions_before,
        "leaseTransitions {transitions_before} -> {transitions}"
    );
    progress(started, "the Lease held by a new operator pod");
    let followed = rolled_out(&node, &next);
    progress(started, "the fleet followed the operator's new image");
    assert_on_image(
        &node,
        &followed,
        &next,
        "the fleet after the operator upgrade",
    );

    // 6. Load off; what every party reports.
    let (seconds, sent, samples, enqueued) = load.stop(&rt);
    let rate = sent.sent as f64 / seconds;
    let fivexx: u64 = sent
        .by_status
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    println!(
        "node rollout: {} deliveries in {seconds:.1} s ({rate:.1}/s), answers {:?}, {} without \
         answer, {fivexx} 5xx, {} ticks without endpoint; {} endpoint sets; PDB samples {} \
         (min currentHealthy {:?}, desiredHealthy up to {}, min Ready pods {:?}); {enqueued} \
         actions; lease {holder_before} -> {holder} ({transitions_before} -> {transitions})",
        sent.sent,
        sent.by_status,
        sent.errors.len(),
        sent.no_endpoint,
        samples.endpoint_sets,
        samples.count,
        samples.min_current_healthy,
        samples.max_desired_healthy,
        samples.min_ready,
    );
    for (id, status, body) in sent.not_ok.iter().take(10) {
        println!("node rollout: delivery {id} answered {status}: {body}");
    }
    assert!(
        rate >= 50.0,
        "the load was {rate:.1} deliveries/s, below 50/s"
    );
    assert!(
        sent.errors.is_empty(),
        "{} of {} deliveries got no HTTP answer, e.g. {:?}",
        sent.errors.len(),
        sent.sent,
        &sent.errors[..sent.errors.len().min(5)]
    );
    assert_eq!(
        sent.no_endpoint, 0,
        "instants without a ready endpoint in the EndpointSlices"
    );
    assert!(samples.count > 0, "the PDB was sampled");
    assert!(
        samples.violations.is_empty(),
        "the PDB did not hold (s, currentHealthy, desiredHealthy, Ready pods): {:?}",
        samples.violations
    );
    assert!(
        samples.below_replicas.is_empty(),
        "fewer Ready pods than replicas during the rollouts (s, Ready pods): {:?}",
        samples.below_replicas
    );
    let deliveries: Value = rt
        .block_on(async {
            control_client
                .get(format!("{}/deliveries", installed.control))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        })
        .expect("the backend's ingest requests per delivery (GET /deliveries)");
    let counts = &deliveries["pull_request"];
    let not_once: Vec<(&String, &Value)> = sent
        .ok
        .iter()
        .map(|id| (id, &counts[id.as_str()]))
        .filter(|(_, n)| **n != json!(1))
        .collect();
    assert!(
        not_once.is_empty(),
        "{} of {} deliveries answered 2xx did not reach the backend exactly once, e.g. {:?}",
        not_once.len(),
        sent.ok.len(),
        &not_once[..not_once.len().min(5)]
    );

    let total = |o: &Value| {
        ["pending", "claimed", "done", "failed"]
            .iter()
            .map(|k| o[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let want = total(&outbox_before) + enqueued;
    // The simulators are shared with the other tests on the node: what one of them
    // left CLAIMED (a worker killed on purpose) is not this test's.
    let claimed_before = outbox_before["claimed"].as_u64().unwrap_or(0);
    let outbox = wait_for("every action executed, none left CLAIMED", || {
        let o = stats(&rt, &control_client, &installed.control)?["outbox"].clone();
        (o["pending"] == json!(0) && o["claimed"].as_u64()? <= claimed_before).then_some(o)
    });
    assert_eq!(
        total(&outbox),
        want,
        "every action enqueued is there: {outbox}"
    );
    println!(
        "node rollout: outbox {outbox}; test ran {:?}",
        started.elapsed()
    );
}
