//! Properties of the webhook path (signature, then normalisation) over arbitrary input:
//! nothing panics, and every delivery ends as a refusal naming a field (answered 4xx),
//! as ignored, or as an event the backend can store (contract §1.2, §1.3, §1.6).

use proptest::prelude::*;
use serde_json::{Value, json};
use sitg_bot::backend::types::{InstallationSyncEvent, PullRequestEvent, RepositoryRef};
use sitg_bot::secret::SecretString;
use sitg_bot::webhook::{
    Delivery, MatchedSecret, Normalized, SignatureError, WebhookVerifier, normalize, sign_payload,
};

const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
const RECEIVED_AT: &str = "2026-11-30T12:00:00.000Z";
const EVENTS: [&str; 5] = [
    "pull_request",
    "installation",
    "installation_repositories",
    "push",
    "",
];

/// The backend stores ids in signed 64-bit columns.
fn storable_id(id: u64) -> bool {
    id > 0 && i64::try_from(id).is_ok()
}

fn storable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.trim() == name
        && !name.chars().any(char::is_control)
}

fn storable_full_name(name: &str) -> bool {
    storable_name(name)
        && matches!(name.split_once('/'), Some((o, r)) if !o.is_empty() && !r.is_empty() && !r.contains('/'))
}

fn check_repo(r: &RepositoryRef) {
    assert!(storable_id(r.id), "{r:?}");
    assert!(storable_full_name(&r.full_name), "{r:?}");
}

fn check_pull_request(e: &PullRequestEvent, with_installation: bool) {
    assert_eq!(e.delivery_id, DELIVERY);
    assert_eq!(e.event_time, RECEIVED_AT);
    assert!(
        ["opened", "reopened", "synchronize", "ready_for_review"].contains(&e.action.as_str()),
        "{e:?}"
    );
    if with_installation {
        assert!(storable_id(e.installation_id), "{e:?}");
    } else {
        assert_eq!(e.installation_id, 0);
    }
    check_repo(&e.repository);
    let pr = &e.pull_request;
    assert!(storable_id(pr.number) && storable_id(pr.id), "{e:?}");
    assert!(
        storable_id(pr.user.id) && storable_name(&pr.user.login),
        "{e:?}"
    );
    assert!(
        pr.head_sha.len() == 40
            && pr
                .head_sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{e:?}"
    );
    let url = url::Url::parse(&pr.html_url).expect("html_url parses");
    assert!(matches!(url.scheme(), "http" | "https"), "{e:?}");
}

fn check_installation_sync(e: &InstallationSyncEvent, event: &str, backfill: bool) {
    assert_eq!(e.delivery_id, DELIVERY);
    assert_eq!(e.event_name, event);
    let actions: &[&str] = if event == "installation" {
        &["created", "deleted", "suspend", "unsuspend"]
    } else {
        &["added", "removed"]
    };
    assert!(actions.contains(&e.action.as_str()), "{e:?}");
    assert!(storable_id(e.installation.id), "{e:?}");
    assert!(storable_name(&e.installation.account_login), "{e:?}");
    assert!(storable_name(&e.installation.account_type), "{e:?}");
    for r in e
        .repositories
        .iter()
        .chain(&e.repositories_added)
        .chain(&e.repositories_removed)
    {
        check_repo(r);
    }
    if event == "installation" {
        assert!(e.repositories_added.is_empty() && e.repositories_removed.is_empty());
    } else {
        assert!(e.repositories.is_empty() && !backfill);
    }
    if backfill {
        assert!(e.repositories.is_empty());
    }
}

/// The property itself: whatever the body, one of the three endings, each well formed.
fn check(event: &str, body: &[u8]) {
    let result = normalize(Delivery {
        event,
        delivery_id: DELIVERY,
        received_at: RECEIVED_AT,
        body,
    });
    match result {
        Err(refusal) => {
            assert!(!refusal.field.is_empty(), "{refusal:?}");
            assert!(!refusal.problem.is_empty(), "{refusal:?}");
        }
        Ok(Normalized::Ignored { reason }) => assert!(!reason.is_empty()),
        Ok(Normalized::PullRequest(e)) => {
            assert_eq!(event, "pull_request");
            check_pull_request(&e, true);
        }
        Ok(Normalized::PullRequestWithoutInstallation(e)) => {
            assert_eq!(event, "pull_request");
            check_pull_request(&e, false);
        }
        Ok(Normalized::InstallationSync { event: e, backfill }) => {
            assert!(event == "installation" || event == "installation_repositories");
            check_installation_sync(&e, event, backfill);
        }
    }
}

/// JSON values of the kinds GitHub's fields take, with the awkward ones over-weighted.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
        "[0-9a-fA-F]{39,41}".prop_map(Value::from),
        "[a-z]{1,8}/[a-z]{1,8}".prop_map(Value::from),
        "(https?|ftp|javascript)://[a-z.]{0,12}/[a-z/]{0,10}".prop_map(Value::from),
        "opened|reopened|synchronize|ready_for_review|closed|created|deleted|suspend|unsuspend|added|removed"
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "[ \\t\\n\\x00\\x7fa/]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("id|full_name|login|sha|type|slug", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field path of the shapes normalisation reads.
fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/action",
        "/installation",
        "/installation/id",
        "/installation/account",
        "/installation/account/login",
        "/installation/account/type",
        "/installation/account/slug",
        "/installation/target_type",
        "/repository",
        "/repository/id",
        "/repository/full_name",
        "/pull_request",
        "/pull_request/number",
        "/pull_request/id",
        "/pull_request/html_url",
        "/pull_request/draft",
        "/pull_request/user",
        "/pull_request/user/id",
        "/pull_request/user/login",
        "/pull_request/head",
        "/pull_request/head/sha",
        "/repositories",
        "/repositories/0/id",
        "/repositories/0/full_name",
        "/repositories_added",
        "/repositories_added/0",
        "/repositories_removed/0/full_name",
    ])
}

/// A plausible delivery: every field normalisation reads, valid, for any event.
fn base_payload() -> Value {
    json!({
        "action": "opened",
        "number": 2,
        "installation": {"id": 7, "account": {"login": "octo-org", "type": "Organization"}},
        "repository": {"id": 186853002, "full_name": "Codertocat/Hello-World"},
        "pull_request": {
            "number": 2, "id": 279147437, "draft": false,
            "html_url": "https://github.com/Codertocat/Hello-World/pull/2",
            "user": {"id": 21031067, "login": "Codertocat"},
            "head": {"sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821"}
        },
        "repositories": [{"id": 1, "full_name": "octo-org/a"}],
        "repositories_added": [{"id": 2, "full_name": "octo-org/b"}],
        "repositories_removed": [{"id": 3, "full_name": "octo-org/c"}],
        "sender": {"login": "Codertocat"}
    })
}

/// Replaces (or, with `None`, removes) the value at a JSON pointer, creating nothing.
fn edit(payload: &mut Value, pointer: &str, replacement: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let Some(parent) = payload.pointer_mut(parent) else {
        return;
    };
    match (parent, replacement) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(list), Some(v)) => {
            if let Some(slot) = key.parse::<usize>().ok().and_then(|i| list.get_mut(i)) {
                *slot = v;
            }
        }
        (Value::Array(list), None) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < list.len() {
                    list.remove(i);
                }
            }
        }
        _ => {}
    }
}

fn verifier(secret: &str) -> WebhookVerifier {
    WebhookVerifier::new(&SecretString::new(secret), None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes at all, under any event name.
    #[test]
    fn any_body_ends_well(event in prop::sample::select(EVENTS.to_vec()), body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(event, &body);
    }

    /// A valid payload with up to four fields replaced by odd values or removed: the
    /// inputs that reach the field checks rather than failing as JSON.
    #[test]
    fn edited_payloads_end_well(
        event in prop::sample::select(EVENTS[..3].to_vec()),
        action in "opened|reopened|synchronize|ready_for_review|closed|created|deleted|suspend|unsuspend|added|removed",
        edits in prop::collection::vec((path(), prop::option::weighted(0.8, value())), 0..4),
    ) {
        let mut payload = base_payload();
        payload["action"] = Value::from(action);
        for (pointer, replacement) in edits {
            edit(&mut payload, pointer, replacement);
        }
        let body = serde_json::to_vec(&payload).unwrap();
        check(event, &body);
    }

    /// A valid payload cut short or with a byte changed is still refused, ignored or
    /// forwarded well formed: never a panic on half a document.
    #[test]
    fn damaged_payloads_end_well(
        event in prop::sample::select(EVENTS[..3].to_vec()),
        cut in 0usize..2048,
        flip in prop::option::of((0usize..2048, any::<u8>())),
    ) {
        let mut body = serde_json::to_vec(&base_payload()).unwrap();
        if let Some((at, byte)) = flip {
            let at = at % body.len();
            body[at] = byte;
        }
        body.truncate(cut.min(body.len()));
        check(event, &body);
    }

    /// The verifier accepts exactly the signature of the body with the secret.
    #[test]
    fn signatures_match_only_their_body(
        secret in ".{1,40}",
        body in prop::collection::vec(any::<u8>(), 0..1024),
        flip in any::<prop::sample::Index>(),
        header in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let v = verifier(&secret);
        let signature = sign_payload(&secret, &body);
        prop_assert_eq!(v.verify(Some(signature.as_bytes()), &body), Ok(MatchedSecret::Current));
        if !body.is_empty() {
            let mut other = body.clone();
            let i = flip.index(other.len());
            other[i] ^= 0x01;
            prop_assert_eq!(v.verify(Some(signature.as_bytes()), &other), Err(SignatureError::Mismatch));
        }
        // Arbitrary header bytes never panic and never verify by accident.
        prop_assert!(v.verify(Some(&header), &body).is_err());
    }
}

/// GitHub's own examples all end well too (the exhaustive end-to-end check of their
/// fields is the worker's e2e test; this one only runs the property on real payloads).
#[test]
fn githubs_examples_end_well() {
    let examples = sitg_sandbox::examples::Examples::load(&sitg_sandbox::examples::default_dir())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(examples.all.len() > 100);
    for example in &examples.all {
        check(&example.event, &example.body());
    }
}

/// Found by `edited_payloads_end_well`: an id beyond the backend's signed 64-bit
/// columns was forwarded (and a struct given as a JSON array was read positionally).
#[test]
fn ids_beyond_signed_64_bits_are_refused() {
    for (pointer, value) in [
        ("/installation", json!([u64::MAX])),
        ("/installation/id", json!(9_223_372_036_854_775_808_u64)),
        ("/repository/id", json!(u64::MAX)),
        ("/pull_request/user/id", json!(u64::MAX)),
    ] {
        let mut payload = base_payload();
        edit(&mut payload, pointer, Some(value));
        let result = normalize(Delivery {
            event: "pull_request",
            delivery_id: DELIVERY,
            received_at: RECEIVED_AT,
            body: &serde_json::to_vec(&payload).unwrap(),
        });
        assert!(result.is_err(), "{pointer}: {result:?}");
    }
}

/// Found by the cargo-fuzz target: a syntax error inside an object under the empty key
/// `""` gave an empty path, so the 400 named no field.
#[test]
fn an_error_under_an_empty_key_still_names_a_field() {
    for event in &EVENTS[..3] {
        for body in [
            &br#"{"":{"id":2,"x":"a"E}}"#[..],
            br#"{"":"#,
            br#"{"installation":{"":[}}"#,
        ] {
            check(event, body);
            let refusal = normalize(Delivery {
                event,
                delivery_id: DELIVERY,
                received_at: RECEIVED_AT,
                body,
            })
            .expect_err("malformed JSON is refused");
            assert!(!refusal.field.is_empty(), "{event}: {refusal:?}");
        }
    }
}
