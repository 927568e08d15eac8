//! Another App's bot comment carrying our marker is never taken for ours (issue 9,
//! item 13): the real worker against the simulators, where every comment names no App
//! (`performed_via_github_app: null`) and bots are `type: Bot` with a `[bot]` login, so
//! only the App's own login (`{slug}[bot]`, from `GET /app`) tells ours apart.

use std::time::Duration;

use crate::support::*;
use sitg_sandbox::backend::{ActionStatus, NewAction};
use sitg_sandbox::github::{GitHubWrite, Route};

const INSTALLATION: i64 = 41;
const REPO_ID: i64 = 4100;
const REPO: &str = "ident-org/repo";
const FOREIGN_BOT: &str = "other-gate[bot]";
const OUR_BOT: &str = "sitg-bot[bot]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_bot_comment_with_our_marker_is_never_patched_or_deleted() {
    let peers = peers().await;
    peers
        .github
        .add_installation(INSTALLATION, "ident-org", "Organization", [(REPO_ID, REPO)])
        .unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(60);
    let marker = |pr: u64| format!("sitg:gate:foreign-{pr}");
    let hidden = |pr: u64| format!("<!-- {} -->", marker(pr));
    let foreign_body = |pr: u64| format!("Copied by another bot.\n\n{}", hidden(pr));

    // PR 1: only the foreign bot's comment carries the marker.
    let foreign_alone = peers
        .github
        .add_comment(REPO, 1, FOREIGN_BOT, &foreign_body(1), start)
        .unwrap();
    // PR 2: the foreign comment is the older one (would be "kept" and rewritten, ours
    // deleted as a duplicate, if it were taken for ours).
    let foreign_older = peers
        .github
        .add_comment(REPO, 2, FOREIGN_BOT, &foreign_body(2), start)
        .unwrap();
    let ours_newer = peers
        .github
        .add_comment(
            REPO,
            2,
            OUR_BOT,
            &format!("old gate text\n\n{}", hidden(2)),
            start + chrono::Duration::seconds(1),
        )
        .unwrap();
    // PR 3: ours is the older one (the foreign one would be deleted as a duplicate).
    let ours_older = peers
        .github
        .add_comment(
            REPO,
            3,
            OUR_BOT,
            &format!("old gate text\n\n{}", hidden(3)),
            start + chrono::Duration::seconds(2),
        )
        .unwrap();
    let foreign_newer = peers
        .github
        .add_comment(
            REPO,
            3,
            FOREIGN_BOT,
            &foreign_body(3),
            start + chrono::Duration::seconds(3),
        )
        .unwrap();
    let foreign = [(1, foreign_alone), (2, foreign_older), (3, foreign_newer)];

    let ids: Vec<_> = (1..=3u64)
        .map(|pr| {
            peers.backend.enqueue_action(NewAction::upsert_comment(
                INSTALLATION,
                REPO_ID,
                REPO,
                i64::try_from(pr).unwrap(),
                "Please stake before review.",
                &marker(pr),
            ))
        })
        .collect();
    let worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    let done = peers
        .backend
        .wait_for(Duration::from_secs(30), |b| {
            ids.iter().all(|id| {
                b.action(*id)
                    .is_some_and(|a| a.status == ActionStatus::Done)
            })
        })
        .await;
    assert!(
        done,
        "actions: {:?}\n{}",
        ids.iter()
            .map(|id| peers.backend.action(*id).map(|a| (a.status, a.results)))
            .collect::<Vec<_>>(),
        worker.logs_text()
    );

    let writes = peers.github.writes();
    for (pr, id) in foreign {
        let touched = writes.iter().any(|w| {
            matches!(w,
                GitHubWrite::CommentUpdated { comment_id, .. }
                | GitHubWrite::CommentDeleted { comment_id, .. } if *comment_id == id)
        });
        assert!(
            !touched,
            "PR {pr}: foreign comment {id} was written: {writes:?}"
        );
        let comments = peers.github.comments(REPO, pr);
        let kept = comments.iter().find(|c| c.id == id);
        assert_eq!(
            kept.map(|c| c.body.as_str()),
            Some(foreign_body(pr).as_str()),
            "PR {pr}: {comments:?}"
        );
        // Exactly one comment of ours carries the new text next to the foreign one.
        let ours: Vec<_> = comments
            .iter()
            .filter(|c| c.author_login == OUR_BOT && c.body.contains(&hidden(pr)))
            .collect();
        assert_eq!(ours.len(), 1, "PR {pr}: {comments:?}");
        assert!(
            ours[0].body.starts_with("Please stake before review."),
            "PR {pr}: {ours:?}"
        );
    }
    // Our existing comments were rewritten in place, not replaced.
    assert!(writes.iter().any(
        |w| matches!(w, GitHubWrite::CommentUpdated { comment_id, .. } if *comment_id == ours_newer)
    ));
    assert!(writes.iter().any(
        |w| matches!(w, GitHubWrite::CommentUpdated { comment_id, .. } if *comment_id == ours_older)
    ));
    // The App's login is read once per process.
    assert_eq!(peers.github.stats().requests_to(Route::GetApp), 1);
}
