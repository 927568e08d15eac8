//! Turning a verified GitHub delivery into the backend's event shape (contract §1.2,
//! §1.3), or deciding that it is ignored, or refusing it with the offending field.
//!
//! Only the fields the backend needs are deserialised (borrowed where possible); the
//! rest of a 25 KB payload is skipped by the parser. Values the backend could not store
//! are refused here, because the backend spends a delivery id before processing it
//! (contract §1.6): a 500 there would lose the delivery for good.

use std::borrow::Cow;

use serde::Deserialize;

use crate::backend::types::{
    InstallationRef, InstallationSyncEvent, PullRequestEvent, PullRequestRef, RepositoryRef,
    UserRef,
};
use crate::contract::RepoFullName;

/// Longest string accepted in an identifier-like field (logins, names, delivery ids),
/// in bytes.
const MAX_NAME_LEN: usize = 255;
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// Pull-request actions forwarded to the backend. `ready_for_review` is the only moment
/// a PR opened as a draft can be gated (contract §1.2).
pub const FORWARDED_PULL_REQUEST_ACTIONS: [&str; 4] =
    ["opened", "reopened", "synchronize", "ready_for_review"];
/// `installation` actions forwarded.
pub const FORWARDED_INSTALLATION_ACTIONS: [&str; 4] =
    ["created", "deleted", "suspend", "unsuspend"];
/// `installation_repositories` actions forwarded.
pub const FORWARDED_INSTALLATION_REPOSITORIES_ACTIONS: [&str; 2] = ["added", "removed"];

/// A delivery as it arrived: the headers that matter and the raw, verified body.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// `X-GitHub-Event`.
    pub event: &'a str,
    /// `X-GitHub-Delivery`, already checked by [`validate_delivery_id`].
    pub delivery_id: &'a str,
    /// RFC 3339 UTC time the worker received the delivery.
    pub received_at: &'a str,
    pub body: &'a [u8],
}

/// What a delivery becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Forward to `/internal/v2/github/events/pull-request`.
    PullRequest(PullRequestEvent),
    /// A pull-request event whose payload names no installation (a repository webhook
    /// pointed at the App's URL). The worker resolves the installation through GitHub
    /// before forwarding; `event.installation_id` is 0 until then.
    PullRequestWithoutInstallation(PullRequestEvent),
    /// Forward to `/internal/v2/github/events/installation-sync`. When `backfill` is
    /// true the payload listed no repositories and the worker must list them through
    /// GitHub first (contract §1.3).
    InstallationSync {
        event: InstallationSyncEvent,
        backfill: bool,
    },
    /// Not forwarded: an event or action the backend does not take.
    Ignored { reason: String },
}

/// A delivery that cannot be forwarded: names the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PayloadError {
    /// Dotted path in the GitHub payload (e.g. `pull_request.head.sha`), or a header name.
    pub field: String,
    pub problem: String,
}

impl PayloadError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Checks `X-GitHub-Delivery`: GitHub sends a GUID; the backend keys deduplication on
/// it, so it must be present, printable and of reasonable length.
pub fn validate_delivery_id(value: Option<&str>) -> Result<&str, PayloadError> {
    let id = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            PayloadError::new(
                "X-GitHub-Delivery",
                "header is missing or not printable ASCII",
            )
        })?;
    if id.len() > MAX_NAME_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PayloadError::new(
            "X-GitHub-Delivery",
            "must be 1..255 printable ASCII characters",
        ));
    }
    Ok(id)
}

/// Normalises a verified delivery.
///
/// Returns [`Normalized::Ignored`] for events and actions the backend does not take,
/// and a [`PayloadError`] naming the field for malformed JSON, missing fields or values
/// the backend cannot store.
pub fn normalize(delivery: Delivery<'_>) -> Result<Normalized, PayloadError> {
    match delivery.event {
        "pull_request" => pull_request(delivery),
        "installation" => installation(delivery, InstallationKind::Installation),
        "installation_repositories" => {
            installation(delivery, InstallationKind::InstallationRepositories)
        }
        other => Ok(Normalized::Ignored {
            reason: format!("event {other:?} is not forwarded"),
        }),
    }
}

fn parse<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, PayloadError> {
    // Tracking the path of every value costs about a third of the parse of a 25 KB
    // payload, and only a refusal needs it: parse untracked, and only when that fails
    // parse again with tracking to name the field.
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(value) = T::deserialize(&mut de) {
        // A document followed by anything but white space (`{..}xyz`, two documents
        // back to back) is not the JSON that was signed as one payload.
        return end_of_body(de).map(|()| value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        // An error under an empty key renders as an empty path: name the body then.
        let field = if path.is_empty() || path == "." || path == "?" {
            "body".to_owned()
        } else {
            path
        };
        PayloadError::new(field, err.into_inner().to_string())
    })?;
    end_of_body(de).map(|()| value)
}

fn end_of_body(
    mut de: serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
) -> Result<(), PayloadError> {
    de.end()
        .map_err(|err| PayloadError::new("body", format!("must hold one JSON document: {err}")))
}

// --- Payload shapes: only what is read. Everything is optional so that a missing
// field is reported by name rather than by a generic parse error.

#[derive(Deserialize)]
struct IdOnly {
    id: Option<u64>,
}

#[derive(Deserialize)]
struct RepositoryPayload<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    full_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UserPayload<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    login: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HeadPayload<'a> {
    #[serde(borrow)]
    sha: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PullRequestPayload<'a> {
    number: Option<u64>,
    id: Option<u64>,
    #[serde(borrow)]
    html_url: Option<Cow<'a, str>>,
    draft: Option<bool>,
    #[serde(borrow)]
    user: Option<UserPayload<'a>>,
    #[serde(borrow)]
    head: Option<HeadPayload<'a>>,
}

#[derive(Deserialize)]
struct PullRequestDelivery<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    installation: Option<IdOnly>,
    #[serde(borrow)]
    repository: Option<RepositoryPayload<'a>>,
    #[serde(borrow)]
    pull_request: Option<PullRequestPayload<'a>>,
}

#[derive(Deserialize)]
struct AccountPayload<'a> {
    #[serde(borrow)]
    login: Option<Cow<'a, str>>,
    /// Enterprise accounts carry a slug instead of a login.
    #[serde(borrow)]
    slug: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InstallationPayload<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    account: Option<AccountPayload<'a>>,
    #[serde(borrow)]
    target_type: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InstallationDelivery<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    installation: Option<InstallationPayload<'a>>,
    #[serde(borrow, default)]
    repositories: Option<Vec<RepositoryPayload<'a>>>,
    #[serde(borrow, default)]
    repositories_added: Option<Vec<RepositoryPayload<'a>>>,
    #[serde(borrow, default)]
    repositories_removed: Option<Vec<RepositoryPayload<'a>>>,
}

// --- Field checks.

fn required<T>(value: Option<T>, field: &str) -> Result<T, PayloadError> {
    value.ok_or_else(|| PayloadError::new(field, "is missing"))
}

fn positive_id(value: Option<u64>, field: &str) -> Result<u64, PayloadError> {
    match required(value, field)? {
        0 => Err(PayloadError::new(field, "must be a positive integer")),
        // The backend keeps ids in signed 64-bit columns; a larger one would be refused
        // there and the delivery failed at every redelivery.
        id if i64::try_from(id).is_err() => Err(PayloadError::new(
            field,
            "must be at most 9223372036854775807",
        )),
        id => Ok(id),
    }
}

fn name(value: Option<Cow<'_, str>>, field: &str) -> Result<String, PayloadError> {
    let value = required(value, field)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(PayloadError::new(field, "must not be empty"));
    }
    // Counted in bytes, the stricter measure: whatever unit the backend's column uses,
    // 255 bytes of UTF-8 fit in it.
    if trimmed.len() > MAX_NAME_LEN || trimmed.chars().any(char::is_control) {
        return Err(PayloadError::new(
            field,
            "must be at most 255 bytes of UTF-8 without control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// The same check the outbox applies before a name becomes part of a GitHub URL, so
/// that nothing the worker forwards would be refused when acted on later.
fn full_name(value: Option<Cow<'_, str>>, field: &str) -> Result<String, PayloadError> {
    let value = name(value, field)?;
    RepoFullName::parse(&value).map_err(|err| PayloadError::new(field, err.to_string()))?;
    Ok(value)
}

fn http_url(value: Option<Cow<'_, str>>, field: &str) -> Result<String, PayloadError> {
    let value = required(value, field)?;
    let ok = value.len() <= MAX_URL_LEN
        && url::Url::parse(&value).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !ok {
        return Err(PayloadError::new(field, "must be an http(s) URL"));
    }
    Ok(value.into_owned())
}

/// A commit SHA the backend can store: exactly 40 hex digits, sent lower case.
fn head_sha(value: Option<Cow<'_, str>>, field: &str) -> Result<String, PayloadError> {
    let value = required(value, field)?;
    if value.len() != 40 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PayloadError::new(
            field,
            "must be 40 hexadecimal characters",
        ));
    }
    Ok(value.to_ascii_lowercase())
}

fn repositories(
    list: Option<Vec<RepositoryPayload<'_>>>,
    field: &str,
) -> Result<Vec<RepositoryRef>, PayloadError> {
    list.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, repo)| {
            Ok(RepositoryRef {
                id: positive_id(repo.id, &format!("{field}[{i}].id"))?,
                full_name: full_name(repo.full_name, &format!("{field}[{i}].full_name"))?,
            })
        })
        .collect()
}

fn pull_request(delivery: Delivery<'_>) -> Result<Normalized, PayloadError> {
    let payload: PullRequestDelivery<'_> = parse(delivery.body)?;
    let action = name(payload.action, "action")?;
    if !FORWARDED_PULL_REQUEST_ACTIONS.contains(&action.as_str()) {
        return Ok(Normalized::Ignored {
            reason: format!("pull_request action {action:?} is not forwarded"),
        });
    }
    let repository = required(payload.repository, "repository")?;
    let pr = required(payload.pull_request, "pull_request")?;
    let user = required(pr.user, "pull_request.user")?;
    let head = required(pr.head, "pull_request.head")?;
    let installation_id = match payload.installation {
        Some(installation) => Some(positive_id(installation.id, "installation.id")?),
        None => None,
    };
    let event = PullRequestEvent {
        delivery_id: delivery.delivery_id.to_owned(),
        event_time: delivery.received_at.to_owned(),
        installation_id: installation_id.unwrap_or(0),
        action,
        repository: RepositoryRef {
            id: positive_id(repository.id, "repository.id")?,
            full_name: full_name(repository.full_name, "repository.full_name")?,
        },
        pull_request: PullRequestRef {
            number: positive_id(pr.number, "pull_request.number")?,
            id: positive_id(pr.id, "pull_request.id")?,
            html_url: http_url(pr.html_url, "pull_request.html_url")?,
            is_draft: required(pr.draft, "pull_request.draft")?,
            user: UserRef {
                id: positive_id(user.id, "pull_request.user.id")?,
                login: name(user.login, "pull_request.user.login")?,
            },
            head_sha: head_sha(head.sha, "pull_request.head.sha")?,
        },
    };
    Ok(match installation_id {
        Some(_) => Normalized::PullRequest(event),
        None => Normalized::PullRequestWithoutInstallation(event),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InstallationKind {
    Installation,
    InstallationRepositories,
}

fn installation(
    delivery: Delivery<'_>,
    kind: InstallationKind,
) -> Result<Normalized, PayloadError> {
    let payload: InstallationDelivery<'_> = parse(delivery.body)?;
    let action = name(payload.action, "action")?;
    let forwarded: &[&str] = match kind {
        InstallationKind::Installation => &FORWARDED_INSTALLATION_ACTIONS,
        InstallationKind::InstallationRepositories => &FORWARDED_INSTALLATION_REPOSITORIES_ACTIONS,
    };
    if !forwarded.contains(&action.as_str()) {
        return Ok(Normalized::Ignored {
            reason: format!("{} action {action:?} is not forwarded", delivery.event),
        });
    }
    let installation = required(payload.installation, "installation")?;
    let account = required(installation.account, "installation.account")?;
    let account_login = match (account.login, account.slug) {
        (Some(login), _) => name(Some(login), "installation.account.login")?,
        (None, Some(slug)) => name(Some(slug), "installation.account.slug")?,
        (None, None) => {
            return Err(PayloadError::new(
                "installation.account.login",
                "is missing",
            ));
        }
    };
    // Forward GitHub's own word for the account kind; enterprise accounts may only say
    // it through `target_type`.
    let account_type = match (account.kind, installation.target_type) {
        (Some(kind), _) => name(Some(kind), "installation.account.type")?,
        (None, Some(target)) => name(Some(target), "installation.target_type")?,
        (None, None) => return Err(PayloadError::new("installation.account.type", "is missing")),
    };
    let listed = repositories(payload.repositories, "repositories")?;
    let (added, removed, repositories) = match kind {
        InstallationKind::Installation => (Vec::new(), Vec::new(), listed),
        InstallationKind::InstallationRepositories => (
            repositories(payload.repositories_added, "repositories_added")?,
            repositories(payload.repositories_removed, "repositories_removed")?,
            Vec::new(),
        ),
    };
    let backfill = kind == InstallationKind::Installation
        && matches!(action.as_str(), "created" | "unsuspend")
        && repositories.is_empty();
    Ok(Normalized::InstallationSync {
        event: InstallationSyncEvent {
            delivery_id: delivery.delivery_id.to_owned(),
            event_time: delivery.received_at.to_owned(),
            event_name: delivery.event.to_owned(),
            action,
            installation: InstallationRef {
                id: positive_id(installation.id, "installation.id")?,
                account_login,
                account_type,
            },
            repositories_added: added,
            repositories_removed: removed,
            repositories,
        },
        backfill,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    fn pr_payload(action: &str) -> serde_json::Value {
        json!({
            "action": action,
            "number": 2,
            "installation": {"id": 7, "node_id": "x"},
            "repository": {"id": 186853002, "full_name": "Codertocat/Hello-World", "name": "Hello-World"},
            "pull_request": {
                "number": 2, "id": 279147437,
                "html_url": "https://github.com/Codertocat/Hello-World/pull/2",
                "draft": false,
                "user": {"id": 21031067, "login": "Codertocat"},
                "head": {"sha": SHA, "ref": "changes"},
                "body": "lots of text \u{2603}"
            }
        })
    }

    fn run(event: &str, body: &serde_json::Value) -> Result<Normalized, PayloadError> {
        let bytes = serde_json::to_vec(body).unwrap();
        normalize(Delivery {
            event,
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            received_at: "2026-11-30T12:00:00Z",
            body: &bytes,
        })
    }

    #[test]
    fn forwarded_pull_request_actions_map_every_field() {
        for action in FORWARDED_PULL_REQUEST_ACTIONS {
            let Normalized::PullRequest(ev) = run("pull_request", &pr_payload(action)).unwrap()
            else {
                panic!("{action} not forwarded");
            };
            assert_eq!(ev.action, action);
            assert_eq!(ev.delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
            assert_eq!(ev.event_time, "2026-11-30T12:00:00Z");
            assert_eq!(ev.installation_id, 7);
            assert_eq!(
                ev.repository,
                RepositoryRef {
                    id: 186853002,
                    full_name: "Codertocat/Hello-World".into()
                }
            );
            assert_eq!(ev.pull_request.number, 2);
            assert_eq!(ev.pull_request.id, 279147437);
            assert_eq!(
                ev.pull_request.html_url,
                "https://github.com/Codertocat/Hello-World/pull/2"
            );
            assert!(!ev.pull_request.is_draft);
            assert_eq!(
                ev.pull_request.user,
                UserRef {
                    id: 21031067,
                    login: "Codertocat".into()
                }
            );
            assert_eq!(ev.pull_request.head_sha, SHA);
        }
    }

    #[test]
    fn other_pull_request_actions_and_events_are_ignored() {
        for action in ["closed", "labeled", "edited", "converted_to_draft"] {
            assert!(matches!(
                run("pull_request", &pr_payload(action)).unwrap(),
                Normalized::Ignored { .. }
            ));
        }
        // An ignored action needs nothing else to be well-formed.
        assert!(matches!(
            run("pull_request", &json!({"action": "closed"})).unwrap(),
            Normalized::Ignored { .. }
        ));
        for event in ["ping", "push", "issues", "check_run"] {
            assert!(matches!(
                run(event, &json!({"zen": "x"})).unwrap(),
                Normalized::Ignored { .. }
            ));
        }
    }

    #[test]
    fn values_the_backend_cannot_store_are_refused_by_field() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "pull_request.head.sha",
                Box::new(|v| v["pull_request"]["head"]["sha"] = json!(format!("{SHA}00"))),
            ),
            (
                "pull_request.head.sha",
                Box::new(|v| {
                    v["pull_request"]["head"]["sha"] =
                        json!("zz26c3e57ca3a959ca5aad62de7213c562f8c821")
                }),
            ),
            (
                "pull_request.head",
                Box::new(|v| {
                    v["pull_request"].as_object_mut().unwrap().remove("head");
                }),
            ),
            (
                "pull_request.id",
                Box::new(|v| v["pull_request"]["id"] = json!(0)),
            ),
            (
                "pull_request.id",
                Box::new(|v| v["pull_request"]["id"] = json!(-5)),
            ),
            (
                "pull_request.number",
                Box::new(|v| v["pull_request"]["number"] = json!("2")),
            ),
            (
                "pull_request.user.login",
                Box::new(|v| v["pull_request"]["user"]["login"] = json!("")),
            ),
            (
                "pull_request.html_url",
                Box::new(|v| v["pull_request"]["html_url"] = json!("not a url")),
            ),
            (
                "pull_request.draft",
                Box::new(|v| {
                    v["pull_request"].as_object_mut().unwrap().remove("draft");
                }),
            ),
            (
                "repository.full_name",
                Box::new(|v| v["repository"]["full_name"] = json!("no-slash")),
            ),
            (
                "repository.id",
                Box::new(|v| {
                    v["repository"].as_object_mut().unwrap().remove("id");
                }),
            ),
            (
                "installation.id",
                Box::new(|v| v["installation"]["id"] = json!(0)),
            ),
            ("action", Box::new(|v| v["action"] = json!(3))),
        ];
        for (field, mutate) in cases {
            let mut body = pr_payload("opened");
            mutate(&mut body);
            let err = run("pull_request", &body).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn malformed_json_names_the_body() {
        let err = normalize(Delivery {
            event: "pull_request",
            delivery_id: "d",
            received_at: "t",
            body: b"{not json",
        })
        .unwrap_err();
        assert_eq!(err.field, "body");
    }

    #[test]
    fn anything_after_the_json_document_is_refused() {
        let good = serde_json::to_vec(&pr_payload("opened")).unwrap();
        let trailing = |tail: &[u8]| [good.as_slice(), tail].concat();
        for (event, body) in [
            ("pull_request", trailing(b"xyz")),
            ("pull_request", trailing(&good)),
            ("pull_request", trailing(b" {}")),
            ("installation", trailing(b"]")),
        ] {
            let err = normalize(Delivery {
                event,
                delivery_id: "d",
                received_at: "t",
                body: &body,
            })
            .unwrap_err();
            assert_eq!(err.field, "body", "{err}");
            assert!(err.problem.contains("trailing"), "{err}");
        }
        // Trailing white space (a final newline) is still one document.
        let body = trailing(b" \n");
        assert!(matches!(
            normalize(Delivery {
                event: "pull_request",
                delivery_id: "d",
                received_at: "t",
                body: &body,
            }),
            Ok(Normalized::PullRequest(_))
        ));
    }

    #[test]
    fn repository_names_are_held_to_githubs_rules() {
        for bad in ["../x", "o/r?x=1#", "o/..", "o/r/../../x", "-o/r", "o/r s"] {
            let mut body = pr_payload("opened");
            body["repository"]["full_name"] = json!(bad);
            let err = run("pull_request", &body).unwrap_err();
            assert_eq!(err.field, "repository.full_name", "{bad}: {err}");

            let list = json!([{"id": 1, "full_name": bad}]);
            let err = run(
                "installation",
                &installation_payload("created", list.clone()),
            )
            .unwrap_err();
            assert_eq!(err.field, "repositories[0].full_name", "{bad}: {err}");
            let body = json!({
                "action": "removed",
                "installation": {"id": 9, "account": {"login": "octocat", "type": "User"}},
                "repositories_added": [],
                "repositories_removed": list,
            });
            let err = run("installation_repositories", &body).unwrap_err();
            assert_eq!(
                err.field, "repositories_removed[0].full_name",
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_length_limit_is_stated_in_the_unit_it_counts() {
        // 128 two-byte characters: 256 bytes, under 255 characters.
        let login = "\u{e9}".repeat(128);
        let mut body = pr_payload("opened");
        body["pull_request"]["user"]["login"] = json!(login);
        let err = run("pull_request", &body).unwrap_err();
        assert_eq!(err.field, "pull_request.user.login");
        assert!(err.problem.contains("255 bytes"), "{err}");
        body["pull_request"]["user"]["login"] = json!("\u{e9}".repeat(127));
        assert!(matches!(
            run("pull_request", &body).unwrap(),
            Normalized::PullRequest(_)
        ));
    }

    #[test]
    fn pull_request_without_installation_is_flagged_for_lookup() {
        let mut body = pr_payload("opened");
        body.as_object_mut().unwrap().remove("installation");
        let Normalized::PullRequestWithoutInstallation(ev) = run("pull_request", &body).unwrap()
        else {
            panic!("expected a lookup");
        };
        assert_eq!(ev.installation_id, 0);
        assert_eq!(ev.repository.full_name, "Codertocat/Hello-World");
    }

    fn installation_payload(action: &str, repos: serde_json::Value) -> serde_json::Value {
        json!({
            "action": action,
            "installation": {"id": 9, "account": {"login": "octo-org", "type": "Organization"}},
            "repositories": repos,
        })
    }

    #[test]
    fn installation_events_map_and_ask_for_backfill_when_listing_nothing() {
        let repos = json!([{"id": 1, "full_name": "octo-org/a", "name": "a"}]);
        for action in FORWARDED_INSTALLATION_ACTIONS {
            let Normalized::InstallationSync { event, backfill } =
                run("installation", &installation_payload(action, repos.clone())).unwrap()
            else {
                panic!("{action} not forwarded");
            };
            assert_eq!(event.event_name, "installation");
            assert_eq!(event.action, action);
            assert_eq!(
                event.installation,
                InstallationRef {
                    id: 9,
                    account_login: "octo-org".into(),
                    account_type: "Organization".into()
                }
            );
            assert_eq!(
                event.repositories,
                vec![RepositoryRef {
                    id: 1,
                    full_name: "octo-org/a".into()
                }]
            );
            assert!(event.repositories_added.is_empty() && event.repositories_removed.is_empty());
            assert!(!backfill);
        }
        for (action, expect) in [
            ("created", true),
            ("unsuspend", true),
            ("deleted", false),
            ("suspend", false),
        ] {
            let mut body = installation_payload(action, json!([]));
            let Normalized::InstallationSync { backfill, .. } = run("installation", &body).unwrap()
            else {
                panic!()
            };
            assert_eq!(backfill, expect, "{action}");
            body.as_object_mut().unwrap().remove("repositories");
            let Normalized::InstallationSync { backfill, event } =
                run("installation", &body).unwrap()
            else {
                panic!()
            };
            assert_eq!(backfill, expect, "{action} without the field");
            assert!(event.repositories.is_empty());
        }
        assert!(matches!(
            run(
                "installation",
                &installation_payload("new_permissions_accepted", json!([]))
            )
            .unwrap(),
            Normalized::Ignored { .. }
        ));
    }

    #[test]
    fn installation_repositories_fill_added_and_removed() {
        let body = json!({
            "action": "added",
            "installation": {"id": 9, "account": {"login": "octocat", "type": "User"}},
            "repository_selection": "selected",
            "repositories_added": [{"id": 5, "full_name": "octocat/Space"}],
            "repositories_removed": [],
        });
        let Normalized::InstallationSync { event, backfill } =
            run("installation_repositories", &body).unwrap()
        else {
            panic!()
        };
        assert!(!backfill);
        assert_eq!(event.event_name, "installation_repositories");
        assert_eq!(
            event.repositories_added,
            vec![RepositoryRef {
                id: 5,
                full_name: "octocat/Space".into()
            }]
        );
        assert!(event.repositories_removed.is_empty() && event.repositories.is_empty());
        let mut bad = body.clone();
        bad["repositories_added"][0]["id"] = json!(0);
        assert_eq!(
            run("installation_repositories", &bad).unwrap_err().field,
            "repositories_added[0].id"
        );
    }

    #[test]
    fn enterprise_accounts_forward_what_github_sends() {
        let body = json!({
            "action": "created",
            "installation": {"id": 3, "account": {"slug": "big-corp", "name": "Big Corp"}, "target_type": "Enterprise"},
            "repositories": [],
        });
        let Normalized::InstallationSync { event, .. } = run("installation", &body).unwrap() else {
            panic!()
        };
        assert_eq!(event.installation.account_login, "big-corp");
        assert_eq!(event.installation.account_type, "Enterprise");
    }

    #[test]
    fn delivery_ids_are_checked() {
        assert_eq!(validate_delivery_id(Some(" abc ")).unwrap(), "abc");
        assert!(validate_delivery_id(None).is_err());
        assert!(validate_delivery_id(Some("")).is_err());
        assert!(validate_delivery_id(Some("a b")).is_err());
        assert!(validate_delivery_id(Some(&"x".repeat(256))).is_err());
    }
}
