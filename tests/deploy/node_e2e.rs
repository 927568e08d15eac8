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
//!
//! The set-up of 1. and 2. (and the fleet's Secret) is made once per node and shared with
//! the other tests there (`node_support`); they take the node in turn.

use std::time::{Duration, Instant};

use crate::node_support::*;
use crate::support::*;
use serde_json::{Value, json};

const WEBHOOKS: usize = 12;
const ACTIONS: u64 = 8;

#[test]
fn the_chart_and_a_fleet_run_on_a_real_node() {
    let Some(node) = Node::from_env() else {
        return;
    };
    let _node = node_lock();
    let started = Instant::now();
    let rt = test_runtime(2);
    let client = control_client();

    // 1.-2. The simulators as a pod, the chart with its defaults except the image.
    let Installed {
        image,
        sim,
        control,
    } = installed(&node);
    let sim_pod = node
        .get(&["pod", "-n", FLEET_NS, SANDBOX_POD])
        .expect("sandbox pod");
    assert!(pod_ready(&sim_pod), "the simulators' pod Ready");
    let pod_ip = sim_pod["status"]["podIP"].as_str().expect("pod IP");
    assert_eq!(control, &format!("http://{pod_ip}:{CONTROL_PORT}"));
    assert!(
        stats(&rt, &client, control).is_some(),
        "control API answers"
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

    // 3. The example fleet (the Secret it references is part of the set-up).
    let fleet = example_fleet(image, sim);
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
    let body = pull_request_body();
    let before = stats(&rt, &client, control).expect("stats");
    let ingested_before = before["backend"]["requests"]["PullRequestIngest"]
        .as_u64()
        .unwrap_or(0);
    // The simulators are shared with the other tests on the node: counts are deltas.
    let count = |s: &Value, status: &str| s["outbox"][status].as_u64().unwrap_or(0);
    let finished = |s: &Value| count(s, "done") + count(s, "failed");
    let (done_before, finished_before) = (count(&before, "done"), finished(&before));
    let claimed_before = count(&before, "claimed");
    let api_requests_before = before["github"]["api_requests"].as_u64().unwrap_or(0);
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
    let after = stats(&rt, &client, control).expect("stats");
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
        let s = stats(&rt, &client, control)?;
        (count(&s, "done") == done_before + ACTIONS).then_some(())
    });
    let s = stats(&rt, &client, control).expect("stats");
    assert!(count(&s, "claimed") <= claimed_before, "{s}");
    assert!(
        s["github"]["api_requests"].as_u64().unwrap_or(0) >= api_requests_before + ACTIONS,
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
        let s = stats(&rt, &client, control).expect("stats");
        let finished = finished(&s) - finished_before;
        if finished == ACTIONS * 11 && count(&s, "claimed") <= claimed_before {
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
    // The fleet goes; the set-up stays for the other tests on the node, and the node
    // itself goes at the end of scripts/test.sh.
    let _ = run(node.kubectl().args([
        "-n",
        FLEET_NS,
        "delete",
        "botfleet",
        &fleet_name,
        "--wait=false",
    ]));
    println!(
        "node e2e: fleet installed, {WEBHOOKS} webhooks, {} actions, a restart, in {:?}",
        ACTIONS * 11,
        started.elapsed()
    );
}
