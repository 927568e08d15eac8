//! Signing the worker's outgoing requests: the backend's HMAC headers (contract §1.1)
//! and the GitHub App's RS256 JWT with a key parsed once (contract §2).
//!
//! `cargo bench --bench signing`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use sitg_bot::backend::{RequestSigner, SignedMessage};
use sitg_bot::github::parse_app_private_key;
use sitg_bot::secret::SecretString;
use sitg_sandbox::keys::generate_app_key;

fn backend_request(c: &mut Criterion) {
    let signer = RequestSigner::new("bck_bench", &SecretString::new("bench-hmac-secret"));
    let message = SignedMessage::PullRequestEvent {
        delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    .to_string();
    c.bench_function("backend_sign_request", |b| {
        b.iter(|| signer.headers(black_box(1_764_504_000), black_box(&message)))
    });
}

/// GitHub's App JWT claims, as the worker sends them.
#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

fn app_jwt(c: &mut Criterion) {
    let pair = generate_app_key().expect("an RSA key for the bench");
    let key = parse_app_private_key(&SecretString::new(pair.private_pem.expose()))
        .expect("the generated key parses");
    let claims = Claims {
        iat: 1_764_503_940,
        exp: 1_764_504_480,
        iss: "4242".to_owned(),
    };
    let header = Header::new(Algorithm::RS256);
    let mut group = c.benchmark_group("github_app_jwt");
    group.sample_size(30);
    group.bench_function("sign_rs256_key_parsed_once", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &key))
    });
    group.finish();
}

criterion_group!(benches, backend_request, app_jwt);
criterion_main!(benches);
