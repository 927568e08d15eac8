//! The HorizontalPodAutoscaler scaling a fleet on outbox lag, on the real node (issue
//! "autoscaling on outbox lag, proven end to end"; docs/deployment.md, "The node
//! autoscaling test", tells the same steps).
//!
//! 1. The metrics pipeline: Prometheus on the host discovers the worker pods through the
//!    node's API server (Kubernetes service discovery, role `pod`, relabelled as the
//!    chart's PodMonitor does) and scrapes them on the bridge; prometheus-adapter with
//!    the chart's rule is registered as `v1beta1.custom.metrics.k8s.io`
//!    (`metrics_stack`). `kubectl get --raw` on the custom metrics API returns
//!    `sitg_bot_outbox_lag_seconds` for each worker pod, 0 while the fleet is idle.
//! 2. A fleet of its own (`FLEET`, in `FLEET_NS`, the once-per-node set-up of
//!    `node_support`) with autoscaling on: `minReplicas` 2, `maxReplicas` 4, a lag target
//!    of `TARGET_LAG` seconds, a short `behavior` (scale-down window `SCALE_DOWN_WINDOW`).
//! 3. Load the two replicas cannot keep up with: the simulators' GitHub answers after
//!    `GITHUB_LATENCY_MS` and the outbox gets a backlog (topped up until the HPA acts).
//!    From what the API server reports: the HPA's desired and current replicas go above
//!    2, the Deployment's `replicas` is raised, the new pods become Ready and claim (the
//!    simulators count claims per worker id = pod name), the lag falls under the target.
//! 4. A trickle of actions the two replicas keep up with, GitHub answering after
//!    `TRICKLE_GITHUB_LATENCY_MS`, runs while the HPA scales back to 2 after the window:
//!    the pods it terminates hold claimed actions at SIGTERM (recorded per pod), which
//!    their drain runs to the end or reports back unexecuted (`WORKER_SHUTDOWN`).
//! 5. Every action executed exactly once (one comment created per action, no update,
//!    DONE count == enqueued), none left CLAIMED or PENDING.
//!
//! The test samples every `SAMPLE` seconds the average lag the HPA sees, the HPA's
//! current/desired replicas, Ready pods and actions/s (DONE delta), prints the timeline
//! and, when `SITG_AUTOSCALING_TIMELINE` names a file, writes it there as JSON
//! (`scripts/bench/autoscaling.sh` renders it into docs/benchmarks.md).
//!
//! The HPA controller reconciles every 15 s unless the node was started with
//! `SITG_CP_HPA_SYNC_PERIOD` (scripts/test.sh sets 5s); the test passes either way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics_stack::{LAG_METRIC, MetricsStack};
use crate::node_support::*;
use crate::support::*;
use serde_json::{Value, json};

const FLEET: &str = "sitg-autoscale";
const MIN_REPLICAS: u64 = 2;
const MAX_REPLICAS: u64 = 4;
/// `outbox.claimLimit`: actions per claim, so per second and replica.
const CLAIM_LIMIT: u64 = 2;
/// `targetOutboxLagSeconds`.
const TARGET_LAG: f64 = 10.0;
/// `behavior.scaleDown.stabilizationWindowSeconds`.
const SCALE_DOWN_WINDOW: i32 = 15;
/// What each GitHub simulator answer waits while the test runs (reset at the end).
const GITHUB_LATENCY_MS: u64 = 250;
/// First backlog; topped up by `TOP_UP` while fewer than `TOP_UP_BELOW` wait and the
/// HPA has not scaled up yet.
const BACKLOG: u32 = 300;
const TOP_UP: u32 = 200;
const TOP_UP_BELOW: u64 = 150;
/// What each GitHub simulator answer waits during the trickle: an action then takes
/// about 2 s, so every pod has some in flight when the scale-down terminates it.
const TRICKLE_GITHUB_LATENCY_MS: u64 = 1000;
/// The trickle during the scale-down: one action every `TRICKLE_EVERY` (2/s, half of
/// what two replicas claim).
const TRICKLE_EVERY: Duration = Duration::from_millis(500);
/// Timeline period.
const SAMPLE: Duration = Duration::from_secs(5);
/// Bound on the whole scenario after the pipeline is up.
const SCENARIO: Duration = Duration::from_secs(330);
/// Env var naming the file the timeline is written to (JSON).
const TIMELINE_ENV: &str = "SITG_AUTOSCALING_TIMELINE";

/// One row of the timeline.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    /// Seconds since the load started.
    t: f64,
    phase: &'static str,
    /// Average `sitg_bot_outbox_lag_seconds` over the fleet's pods, as the custom metrics
    /// API serves it (what the HPA averages); `None` when it answered nothing.
    lag_avg: Option<f64>,
    lag_max: Option<f64>,
    hpa_current: u64,
    hpa_desired: u64,
    deployment_replicas: u64,
    ready_pods: u64,
    /// DONE delta over the period / its length.
    actions_per_s: f64,
    pending: u64,
    claimed: u64,
    done: u64,
}

/// Undoes what the test changed on the shared set-up, also when it panics: the
/// simulators' GitHub latency back to 0, the fleet deleted.
struct Cleanup<'a> {
    node: &'a Node,
    rt: tokio::runtime::Handle,
    client: reqwest::Client,
    control: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self
            .rt
            .block_on(set_github_latency(&self.client, &self.control, 0));
        let _ = run(self.node.kubectl().args([
            "-n",
            FLEET_NS,
            "delete",
            "botfleet",
            FLEET,
            "--ignore-not-found",
            "--wait=false",
        ]));
    }
}

async fn set_github_latency(
    client: &reqwest::Client,
    control: &str,
    ms: u64,
) -> Result<(), reqwest::Error> {
    client
        .put(format!("{control}/github/latency?ms={ms}"))
        .send()
        .await?
        .error_for_status()
        .map(|_| ())
}

async fn enqueue(
    client: &reqwest::Client,
    control: &str,
    count: u32,
) -> Result<(), reqwest::Error> {
    client
        .post(format!("{control}/actions?count={count}"))
        .send()
        .await?
        .error_for_status()
        .map(|_| ())
}

fn u(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

fn selector() -> String {
    format!("app.kubernetes.io/instance={FLEET}")
}

/// The fleet's pods that are Ready and not being deleted.
fn ready_pods(node: &Node) -> BTreeSet<String> {
    fleet_pods(node, FLEET)
        .iter()
        .filter(|p| pod_ready(p) && p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

fn print_timeline(samples: &[Sample]) {
    println!(
        "{:>6} {:<10} {:>8} {:>8} {:>7} {:>7} {:>8} {:>5} {:>9} {:>7} {:>7}",
        "t s",
        "phase",
        "lag avg",
        "lag max",
        "hpa cur",
        "hpa des",
        "replicas",
        "ready",
        "actions/s",
        "pending",
        "claimed"
    );
    for s in samples {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        println!(
            "{:>6.0} {:<10} {:>8} {:>8} {:>7} {:>7} {:>8} {:>5} {:>9.1} {:>7} {:>7}",
            s.t,
            s.phase,
            f(s.lag_avg),
            f(s.lag_max),
            s.hpa_current,
            s.hpa_desired,
            s.deployment_replicas,
            s.ready_pods,
            s.actions_per_s,
            s.pending,
            s.claimed
        );
    }
}

#[test]
fn the_hpa_scales_a_fleet_up_and_down_on_outbox_lag_on_a_real_node() {
    let Some(node) = Node::from_env() else {
        return;
    };
    let _node = node_lock();
    let started = Instant::now();
    let rt = test_runtime(2);
    let client = control_client();
    let Installed {
        image,
        sim,
        control,
    } = installed(&node);
    let _cleanup = Cleanup {
        node: &node,
        rt: rt.handle().clone(),
        client: client.clone(),
        control: control.clone(),
    };

    // 2. The fleet: the example's, autoscaled between 2 and 4 on a 10 s lag target.
    let mut fleet = example_fleet(image, sim);
    fleet["metadata"]["name"] = json!(FLEET);
    // A worker id claims at most once a second (the claim's signature is per second),
    // so a replica runs at most CLAIM_LIMIT actions/s: 2 replicas 4/s, 4 replicas 8/s.
    fleet["spec"]["outbox"]["claimLimit"] = json!(CLAIM_LIMIT);
    fleet["spec"]["autoscaling"] = json!({
        "enabled": true,
        "minReplicas": MIN_REPLICAS,
        "maxReplicas": MAX_REPLICAS,
        "targetOutboxLagSeconds": TARGET_LAG as i64,
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}]},
            "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW,
                          "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}]}
        }
    });
    node.apply(&fleet);
    let first_pods = wait_for("the fleet's two Ready pods", || {
        let ready = ready_pods(&node);
        (ready.len() as u64 == MIN_REPLICAS).then_some(ready)
    });
    let hpa = node
        .get(&["hpa", "-n", FLEET_NS, FLEET])
        .expect("the operator's HPA");
    assert_eq!(hpa["spec"]["minReplicas"], json!(MIN_REPLICAS));
    assert_eq!(hpa["spec"]["maxReplicas"], json!(MAX_REPLICAS));
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        json!(SCALE_DOWN_WINDOW),
        "the BotFleet's behavior reaches the HPA"
    );

    // Other fleets' workers (the tests before on this node) would share the
    // simulators' outbox: wait for them to be gone.
    wait_for("the other fleets' worker pods gone", || {
        let pods = node
            .get(&[
                "pods",
                "-n",
                FLEET_NS,
                "-l",
                &format!("app.kubernetes.io/component=worker,app.kubernetes.io/instance!={FLEET}"),
            ])
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default();
        pods.is_empty().then_some(())
    });

    // 1. The pipeline: Prometheus discovering the pods, the adapter as the custom
    // metrics API; an idle fleet's lag is 0 on every pod.
    let dir = node.dir.join("autoscaling");
    std::fs::create_dir_all(&dir).expect("dir");
    let stack = MetricsStack::start(&dir, &node.env, FLEET_NS);
    let idle = wait_for(
        "the lag of both pods through the custom metrics API",
        || {
            let values = stack.pods_metric(FLEET_NS, LAG_METRIC, &selector()).ok()?;
            (values.keys().cloned().collect::<BTreeSet<_>>() == first_pods).then_some(values)
        },
    );
    assert!(
        idle.values().all(|v| *v == 0.0),
        "an idle fleet's lag is 0 on every pod: {idle:?}"
    );
    let targets: Value = rt
        .block_on(async {
            client
                .get(format!("{}/api/v1/targets", stack.prometheus_url))
                .send()
                .await?
                .json()
                .await
        })
        .expect("Prometheus targets");
    for pod in &first_pods {
        let pod_ip = node
            .get(&["pod", "-n", FLEET_NS, pod])
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned))
            .expect("pod IP");
        let target = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["labels"]["pod"] == pod.as_str())
            .unwrap_or_else(|| panic!("no Prometheus target for {pod}: {targets}"));
        assert_eq!(target["labels"]["namespace"], FLEET_NS);
        assert_eq!(target["health"], "up", "{target}");
        assert_eq!(
            target["scrapeUrl"],
            format!("http://{pod_ip}:9090/metrics"),
            "scraped on the pod IP, on the bridge"
        );
    }
    println!(
        "node autoscaling: fleet and pipeline up in {:?}",
        started.elapsed()
    );

    // 3. Load: GitHub latency and a backlog.
    let before = stats(&rt, &client, control).expect("stats");
    let github_before = |route: &str| {
        u(&before["github"]["requests"][route]["201"])
            + u(&before["github"]["requests"][route]["200"])
    };
    let (created_before, updated_before) = (
        github_before("CreateIssueComment"),
        github_before("UpdateIssueComment"),
    );
    let done_before = u(&before["outbox"]["done"]);
    let failed_before = u(&before["outbox"]["failed"]);
    rt.block_on(set_github_latency(&client, control, GITHUB_LATENCY_MS))
        .expect("GitHub latency");
    let enqueued = Arc::new(AtomicU64::new(0));
    rt.block_on(enqueue(&client, control, BACKLOG))
        .expect("enqueue");
    enqueued.fetch_add(u64::from(BACKLOG), Ordering::SeqCst);

    let load_start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut phase = "saturated";
    let mut seen_pods: BTreeSet<String> = first_pods.clone();
    let mut last_done = done_before;
    let mut last_at = Instant::now();
    let trickle_on = Arc::new(AtomicBool::new(false));
    let mut trickle: Option<tokio::task::JoinHandle<()>> = None;
    let mut drained_at_scale: Option<f64> = None;
    let mut back_at_min: Option<f64> = None;
    let mut idle_samples = 0;
    let mut held_at_termination: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let now = Instant::now();
        let t = load_start.elapsed().as_secs_f64();
        let s = stats(&rt, &client, control).expect("stats");
        let done = u(&s["outbox"]["done"]);
        let lags = stack.pods_metric(FLEET_NS, LAG_METRIC, &selector()).ok();
        let hpa = node
            .get(&["hpa", "-n", FLEET_NS, FLEET])
            .unwrap_or(Value::Null);
        let deployment = node
            .get(&["deployment", "-n", FLEET_NS, FLEET])
            .unwrap_or(Value::Null);
        let ready = ready_pods(&node);
        seen_pods.extend(ready.iter().cloned());
        let sample = Sample {
            t,
            phase,
            lag_avg: lags
                .as_ref()
                .filter(|l| !l.is_empty())
                .map(|l| l.values().sum::<f64>() / l.len() as f64),
            lag_max: lags
                .as_ref()
                .and_then(|l| l.values().cloned().reduce(f64::max)),
            hpa_current: u(&hpa["status"]["currentReplicas"]),
            hpa_desired: u(&hpa["status"]["desiredReplicas"]),
            deployment_replicas: u(&deployment["spec"]["replicas"]),
            ready_pods: ready.len() as u64,
            actions_per_s: done.saturating_sub(last_done) as f64
                / now.duration_since(last_at).as_secs_f64().max(0.001),
            pending: u(&s["outbox"]["pending"]),
            claimed: u(&s["outbox"]["claimed"]),
            done,
        };
        last_done = done;
        last_at = now;
        samples.push(sample.clone());
        let outstanding = enqueued
            .load(Ordering::SeqCst)
            .saturating_sub(done.saturating_sub(done_before));

        match phase {
            "saturated" => {
                if sample.deployment_replicas > MIN_REPLICAS {
                    phase = "scaled-up";
                } else if sample.pending < TOP_UP_BELOW {
                    rt.block_on(enqueue(&client, control, TOP_UP))
                        .expect("enqueue");
                    enqueued.fetch_add(u64::from(TOP_UP), Ordering::SeqCst);
                }
            }
            "scaled-up" => {
                // The backlog cleared at the raised scale, the lag under the target:
                // from now on a trickle the two replicas keep up with.
                if sample.pending == 0 && sample.lag_avg.is_some_and(|l| l < TARGET_LAG) {
                    drained_at_scale = Some(t);
                    phase = "trickle";
                    // Slower GitHub answers keep actions in flight on every pod, so the
                    // pods the scale-down terminates hold claims.
                    rt.block_on(set_github_latency(
                        &client,
                        control,
                        TRICKLE_GITHUB_LATENCY_MS,
                    ))
                    .expect("GitHub latency");
                    trickle_on.store(true, Ordering::SeqCst);
                    let (client, control, on, enqueued) = (
                        client.clone(),
                        control.clone(),
                        Arc::clone(&trickle_on),
                        Arc::clone(&enqueued),
                    );
                    trickle = Some(rt.spawn(async move {
                        while on.load(Ordering::SeqCst) {
                            if enqueue(&client, &control, 1).await.is_ok() {
                                enqueued.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::time::sleep(TRICKLE_EVERY).await;
                        }
                    }));
                }
            }
            "trickle" => {
                let pods = fleet_pods(&node, FLEET).len() as u64;
                if sample.hpa_desired == MIN_REPLICAS
                    && sample.deployment_replicas == MIN_REPLICAS
                    && pods == MIN_REPLICAS
                {
                    back_at_min = Some(t);
                    phase = "idle";
                    trickle_on.store(false, Ordering::SeqCst);
                    if let Some(task) = trickle.take() {
                        rt.block_on(task).expect("trickle task");
                    }
                }
            }
            _ => {
                if outstanding == 0 && sample.claimed == 0 && sample.lag_avg == Some(0.0) {
                    idle_samples += 1;
                    if idle_samples >= 2 {
                        break;
                    }
                }
            }
        }
        if load_start.elapsed() > SCENARIO {
            trickle_on.store(false, Ordering::SeqCst);
            print_timeline(&samples);
            panic!(
                "the scenario did not end within {SCENARIO:?} (phase {phase}, {outstanding} \
                 actions outstanding)\n{}",
                stack.log_tails()
            );
        }
        // Between samples: the fleet's pods the moment they are terminating (the kubelet
        // sends SIGTERM then), with what each holds (claimed, not yet reported).
        while now.elapsed() < SAMPLE {
            if phase == "trickle" {
                for pod in fleet_pods(&node, FLEET) {
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    if pod["metadata"]["deletionTimestamp"].is_null()
                        || held_at_termination.contains_key(name)
                    {
                        continue;
                    }
                    let s = stats(&rt, &client, control).expect("stats");
                    let w = &s["workers"][name];
                    let held =
                        u(&w["claims"]).saturating_sub(u(&w["succeeded"]) + u(&w["released"]));
                    held_at_termination.insert(name.to_owned(), held);
                }
            }
            std::thread::sleep(
                Duration::from_millis(200).min(SAMPLE.saturating_sub(now.elapsed())),
            );
        }
    }
    print_timeline(&samples);
    if let Ok(path) = std::env::var(TIMELINE_ENV) {
        let doc = json!({
            "fleet": FLEET,
            "min_replicas": MIN_REPLICAS,
            "max_replicas": MAX_REPLICAS,
            "target_lag_seconds": TARGET_LAG,
            "scale_down_window_seconds": SCALE_DOWN_WINDOW,
            "github_latency_ms": GITHUB_LATENCY_MS,
            "trickle_github_latency_ms": TRICKLE_GITHUB_LATENCY_MS,
            "held_at_termination": held_at_termination,
            "sample_seconds": SAMPLE.as_secs(),
            "samples": samples,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("JSON"))
            .unwrap_or_else(|e| panic!("{TIMELINE_ENV}={path}: {e}"));
        println!("node autoscaling: timeline written to {path}");
    }

    // Scale-up, from what the API server reported.
    let peak = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
    assert!(
        peak(|s| s.hpa_desired) > MIN_REPLICAS,
        "HPA desiredReplicas went above {MIN_REPLICAS}"
    );
    assert!(
        peak(|s| s.hpa_current) > MIN_REPLICAS,
        "HPA currentReplicas went above {MIN_REPLICAS}"
    );
    assert!(peak(|s| s.deployment_replicas) > MIN_REPLICAS);
    assert!(peak(|s| s.hpa_desired) <= MAX_REPLICAS);
    let final_stats = stats(&rt, &client, control).expect("stats");
    let new_pods: Vec<&String> = seen_pods.difference(&first_pods).collect();
    assert!(!new_pods.is_empty(), "new pods became Ready");
    for pod in &new_pods {
        assert!(
            u(&final_stats["workers"][pod.as_str()]["claims"]) > 0,
            "the new pod {pod} claimed actions: {}",
            final_stats["workers"]
        );
    }
    // The lag semantics: saturated, it grows; at the raised scale it falls under the
    // target; idle, it is 0.
    let saturated: Vec<f64> = samples
        .iter()
        .filter(|s| s.phase == "saturated")
        .filter_map(|s| s.lag_avg)
        .collect();
    assert!(
        saturated.windows(2).any(|w| w[1] > w[0]) && saturated.iter().any(|l| *l > TARGET_LAG),
        "a saturated fleet's lag grows past the target: {saturated:?}"
    );
    assert!(
        drained_at_scale.is_some(),
        "lag under the target after scale-up"
    );
    assert!(back_at_min.is_some(), "back to minReplicas");
    let last = samples.last().expect("samples");
    assert_eq!(last.lag_avg, Some(0.0), "an idle fleet's lag is 0");
    assert_eq!(last.deployment_replicas, MIN_REPLICAS);
    assert_eq!(ready_pods(&node).len() as u64, MIN_REPLICAS);

    // 5. Exactly once, none left behind, across both directions.
    let total = enqueued.load(Ordering::SeqCst);
    let github_after = |route: &str| {
        u(&final_stats["github"]["requests"][route]["201"])
            + u(&final_stats["github"]["requests"][route]["200"])
    };
    assert_eq!(
        u(&final_stats["outbox"]["done"]) - done_before,
        total,
        "DONE == enqueued: {}",
        final_stats["outbox"]
    );
    assert_eq!(u(&final_stats["outbox"]["failed"]), failed_before);
    assert_eq!(final_stats["outbox"]["claimed"], json!(0));
    assert_eq!(final_stats["outbox"]["pending"], json!(0));
    assert_eq!(
        github_after("CreateIssueComment") - created_before,
        total,
        "one comment created per action"
    );
    assert_eq!(
        github_after("UpdateIssueComment"),
        updated_before,
        "no action ran twice (a second run would update its comment)"
    );
    let released: BTreeMap<String, u64> = final_stats["workers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(id, _)| id.starts_with(FLEET))
        .map(|(id, w)| (id.clone(), u(&w["released"])))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(
        held_at_termination.len() as u64
            >= MAX_REPLICAS.min(peak(|s| s.deployment_replicas)) - MIN_REPLICAS,
        "the scale-down's terminating pods were seen: {held_at_termination:?}"
    );
    println!(
        "node autoscaling: {total} actions, scaled {MIN_REPLICAS} -> {} -> {MIN_REPLICAS}; \
         claimed actions held by the pods the scale-down terminated, at SIGTERM: \
         {held_at_termination:?}; released unexecuted by their drain: {released:?}; \
         load {:.0} s, test {:?}",
        peak(|s| s.deployment_replicas),
        load_start.elapsed().as_secs_f64(),
        started.elapsed()
    );
    drop(stack);
    assert!(
        node.get(&["apiservice", crate::metrics_stack::API_SERVICE])
            .is_none(),
        "the APIService is removed for the other tests on the node"
    );
}
