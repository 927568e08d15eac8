//! Peer error bodies that echo the request never carry a credential out of the worker
//! (issue 9, item 14): the real worker binary against simulators whose faults answer
//! with the request quoted back (line, headers, body), as some proxies and GitHub
//! Enterprise front ends do. No credential value the worker holds (installation access
//! tokens, the App JWT, `BACKEND_SERVICE_TOKEN`, request signatures, the webhook and
//! HMAC secrets) may appear in its log output or in a `failure_message` the backend
//! recorded.

use std::time::Duration;

use crate::support::*;
use sitg_sandbox::backend::NewAction;
use sitg_sandbox::github::{Fault, FaultRule, Route};
use uuid::Uuid;

/// Installations and the echo each one gets.
const COMMENT_HTML_403: i64 = 51;
const COMMENT_JSON_422: i64 = 52;
const MINT_HTML_403: i64 = 53;

fn repo(installation: i64) -> String {
    format!("echo-org-{installation}/repo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_reach_neither_the_log_nor_the_backend() {
    let peers = peers().await;
    for installation in [COMMENT_HTML_403, COMMENT_JSON_422, MINT_HTML_403] {
        peers
            .github
            .add_installation(
                installation,
                &format!("echo-org-{installation}"),
                "Organization",
                [(installation * 100, repo(installation))],
            )
            .unwrap();
    }
    peers.github.inject(
        FaultRule::new(Fault::EchoRequest {
            status: 403,
            json: false,
        })
        .installation(COMMENT_HTML_403)
        .route(Route::CreateIssueComment)
        .next(1),
    );
    peers.github.inject(
        FaultRule::new(Fault::EchoRequest {
            status: 422,
            json: true,
        })
        .installation(COMMENT_JSON_422)
        .route(Route::CreateIssueComment)
        .next(1),
    );
    peers.github.inject(
        FaultRule::new(Fault::EchoRequest {
            status: 403,
            json: false,
        })
        .installation(MINT_HTML_403)
        .route(Route::CreateInstallationToken)
        .next(1),
    );
    // The first claims are answered by a "proxy" quoting the signed request back.
    peers.backend.echo_next_requests(2);
    let ids: Vec<Uuid> = [COMMENT_HTML_403, COMMENT_JSON_422, MINT_HTML_403]
        .into_iter()
        .map(|installation| {
            peers.backend.enqueue_action(NewAction::upsert_comment(
                installation,
                installation * 100,
                &repo(installation),
                1,
                "Please stake before review.",
                &format!("sitg:gate:{}", Uuid::new_v4()),
            ))
        })
        .collect();

    let service_token = format!("svc-{}", Uuid::new_v4().simple());
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("BACKEND_SERVICE_TOKEN", &service_token),
        ],
    )
    .await;
    // Each action is refused once (permanently: FAILED) by an echoing answer.
    let reported = peers
        .backend
        .wait_for(Duration::from_secs(40), |b| {
            ids.iter()
                .all(|id| b.action(*id).is_some_and(|a| !a.results.is_empty()))
        })
        .await;
    assert!(reported, "actions not reported:\n{}", worker.logs_text());
    worker.terminate(Duration::from_secs(30)).await;

    let github_echoed = peers.github.echoed_credentials();
    let backend_echoed = peers.backend.echoed_credentials();
    assert_eq!(github_echoed.len(), 3, "{github_echoed:?}");
    assert!(
        !backend_echoed.is_empty(),
        "the backend echo was not served"
    );
    // The bearer values GitHub's echoes quoted: two installation tokens and one JWT.
    let mut credentials: Vec<String> = github_echoed
        .iter()
        .map(|v| v.trim_start_matches("Bearer ").to_owned())
        .collect();
    assert_eq!(
        credentials.iter().filter(|c| c.starts_with("ghs_")).count(),
        2,
        "{credentials:?}"
    );
    // The JWT's signature is its secret part (header and claims are not secret).
    let jwt_signatures: Vec<String> = credentials
        .iter()
        .filter(|c| c.matches('.').count() == 2)
        .filter_map(|c| c.rsplit('.').next().map(str::to_owned))
        .collect();
    assert_eq!(jwt_signatures.len(), 1, "{credentials:?}");
    credentials.extend(jwt_signatures);
    credentials.extend(
        backend_echoed
            .iter()
            .map(|v| v.trim_start_matches("Bearer ").to_owned()),
    );
    credentials.push(service_token.clone());
    credentials.push(peers.webhook_secret.expose().to_owned());
    credentials.push(peers.hmac_secret.expose().to_owned());

    let logs = worker.logs_text();
    let failure_messages: Vec<String> = ids
        .iter()
        .flat_map(|id| peers.backend.action(*id).unwrap().results)
        .filter_map(|r| r.failure_message)
        .collect();
    assert_eq!(failure_messages.len(), 3, "{failure_messages:?}");
    for credential in &credentials {
        assert!(
            !logs.contains(credential.as_str()),
            "credential {}… in the worker's log:\n{logs}",
            &credential[..8.min(credential.len())]
        );
        for message in &failure_messages {
            assert!(
                !message.contains(credential.as_str()),
                "credential {}… in a failure_message: {message}",
                &credential[..8.min(credential.len())]
            );
        }
    }
    // What is kept is bounded, and the redaction shows.
    for message in &failure_messages {
        assert!(message.len() <= 512, "{} bytes: {message}", message.len());
    }
    assert!(
        logs.contains("[redacted]"),
        "no redaction in the log:\n{logs}"
    );
}
