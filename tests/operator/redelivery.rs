//! The operator sweeps for failed webhook deliveries of a `BotFleet` with
//! `spec.redelivery.enabled`, against the GitHub simulator's delivery log: every failed
//! event is asked to be redelivered, and the sweeper stops once the fleet is deleted.
//!
//! Needs `SITG_TEST_KUBECONFIG` (see `support/mod.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use sitg_bot::operator::BotFleet;
use sitg_sandbox::peers::{Peers, SANDBOX_APP_ID};

use crate::support::*;

const INTERVAL_SECONDS: u64 = 10;

fn redelivered(peers: &Peers) -> usize {
    peers
        .github
        .hook_attempts()
        .iter()
        .filter(|a| a.redelivery)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_redelivers_failed_deliveries_until_the_fleet_is_gone() {
    let peers = Peers::start().await.expect("simulators");
    // No webhook URL is set: GitHub records each attempt as `failed to connect`.
    let mut failed = BTreeSet::new();
    for n in 0..3 {
        let body = json!({"action": "opened", "number": n, "installation": {"id": 1}});
        let attempt = peers.github.deliver("pull_request", body.to_string()).await;
        assert!(!attempt.succeeded());
        failed.insert(attempt.guid.clone());
    }

    let (client, ns) = setup("op-redeliver").await;
    put_secret(
        &client,
        &ns,
        "bot",
        &[
            ("webhook", "whsec-redeliver"),
            ("private-key", peers.app_key.private_pem.expose()),
            ("hmac", "hmac-redeliver"),
        ],
    )
    .await;
    let _controller = start_controller(&client, &ns);
    let mut value = serde_json::to_value(sample_fleet("bots")).expect("fleet serialises");
    value["spec"]["github"]["appId"] = json!(SANDBOX_APP_ID);
    value["spec"]["github"]["apiBaseUrl"] = json!(peers.github_server.base_url());
    value["spec"]["redelivery"] = json!({"enabled": true, "intervalSeconds": INTERVAL_SECONDS});
    let fleet: BotFleet = serde_json::from_value(value).expect("fleet with redelivery");
    create_fleet(&client, &ns, &fleet).await;

    // The first sweep runs when the fleet is reconciled.
    wait_for("a redelivery of every failed event", || async {
        let again: BTreeSet<String> = peers
            .github
            .hook_attempts()
            .into_iter()
            .filter(|a| a.redelivery)
            .map(|a| a.guid)
            .collect();
        (again == failed).then_some(())
    })
    .await;

    // Deleted: no further sweep, although the redeliveries failed again.
    Api::<BotFleet>::namespaced(client.clone(), &ns)
        .delete("bots", &DeleteParams::default())
        .await
        .expect("fleet deleted");
    let before = redelivered(&peers);
    tokio::time::sleep(Duration::from_secs(INTERVAL_SECONDS + 4)).await;
    assert_eq!(
        redelivered(&peers),
        before,
        "a sweep ran for a deleted fleet"
    );
}
