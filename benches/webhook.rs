//! The CPU floor of the webhook path: `X-Hub-Signature-256` verification of a 25 KB
//! body and normalisation of GitHub's example `pull_request.opened` payload.
//!
//! `cargo bench --bench webhook`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sitg_bot::secret::SecretString;
use sitg_bot::webhook::{Delivery, Normalized, WebhookVerifier, normalize, sign_payload};

mod support;

const SECRET: &str = "bench-webhook-secret";

fn signature(c: &mut Criterion) {
    let body = support::opened_25k();
    let header = sign_payload(SECRET, &body);
    let verifier = WebhookVerifier::new(&SecretString::new(SECRET), None);
    let rotating = WebhookVerifier::new(
        &SecretString::new("the-new-secret"),
        Some(&SecretString::new(SECRET)),
    );
    let mut group = c.benchmark_group("webhook_signature");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify_25kb", |b| {
        b.iter(|| verifier.verify(Some(black_box(header.as_bytes())), black_box(&body)))
    });
    // During a secret rotation a delivery signed with the previous secret costs two MACs.
    group.bench_function("verify_25kb_previous_secret", |b| {
        b.iter(|| rotating.verify(Some(black_box(header.as_bytes())), black_box(&body)))
    });
    group.finish();
}

fn normalisation(c: &mut Criterion) {
    let body = support::opened_example();
    let delivery = |body: &[u8]| {
        normalize(Delivery {
            event: "pull_request",
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            received_at: "2026-11-30T12:00:00.000Z",
            body,
        })
    };
    assert!(
        matches!(delivery(&body), Ok(Normalized::PullRequest(_))),
        "the example must normalise to a forwarded pull_request event"
    );
    let mut group = c.benchmark_group("webhook_normalize");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("pull_request_opened", |b| {
        b.iter(|| delivery(black_box(&body)))
    });
    group.finish();

    // Both steps, as the handler runs them on the padded 25 KB body.
    let body25 = support::opened_25k();
    let header = sign_payload(SECRET, &body25);
    let verifier = WebhookVerifier::new(&SecretString::new(SECRET), None);
    c.bench_function("webhook_verify_and_normalize_25kb", |b| {
        b.iter(|| {
            let matched = verifier.verify(Some(header.as_bytes()), black_box(&body25));
            (matched, delivery(black_box(&body25)))
        })
    });
}

criterion_group!(benches, signature, normalisation);
criterion_main!(benches);
