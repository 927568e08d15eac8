//! The webhook path on arbitrary input: `X-Hub-Signature-256` verification, then
//! normalisation under each event the worker forwards.
//!
//! Input layout: byte 0 gives the length (mod 72) of the signature header that
//! follows; the rest is the body. Besides "no panic", checks that a forwarded event
//! carries what the backend can store (contract §1.6).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitg_bot::secret::SecretString;
use sitg_bot::webhook::{Delivery, Normalized, WebhookVerifier, normalize, validate_delivery_id};

const EVENTS: [&str; 4] = [
    "pull_request",
    "installation",
    "installation_repositories",
    "ping",
];

fn storable(id: u64) -> bool {
    id > 0 && i64::try_from(id).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let split = (len as usize % 72).min(rest.len());
    let (header, body) = rest.split_at(split);

    let verifier = WebhookVerifier::new(&SecretString::new("fuzz-secret"), None);
    // Accepting a signature the fuzzer made up would be a forgery: without the secret
    // nothing may verify. In practice this exercises the header parsing.
    assert!(verifier.verify(Some(header), body).is_err());

    if let Ok(id) = std::str::from_utf8(header) {
        let _ = validate_delivery_id(Some(id));
    }

    for event in EVENTS {
        let result = normalize(Delivery {
            event,
            delivery_id: "fuzz-delivery",
            received_at: "2026-11-30T12:00:00.000Z",
            body,
        });
        match result {
            Ok(Normalized::PullRequest(e)) | Ok(Normalized::PullRequestWithoutInstallation(e)) => {
                let pr = &e.pull_request;
                assert!(storable(e.repository.id) && storable(pr.id) && storable(pr.number));
                assert!(storable(pr.user.id) && !pr.user.login.is_empty());
                assert!(pr.head_sha.len() == 40);
                assert!(
                    pr.head_sha
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                );
            }
            Ok(Normalized::InstallationSync { event, .. }) => {
                assert!(storable(event.installation.id));
                assert!(!event.installation.account_login.is_empty());
                for r in event
                    .repositories
                    .iter()
                    .chain(&event.repositories_added)
                    .chain(&event.repositories_removed)
                {
                    assert!(storable(r.id) && r.full_name.contains('/'));
                }
            }
            Ok(Normalized::Ignored { .. }) => {}
            Err(e) => assert!(!e.field.is_empty()),
        }
    }
});
