//! Sample fleets for the unit tests of the pipeline stages.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::crd::{
    BackendSpec, BotFleet, BotFleetSpec, GitHubSpec, ImageSpec, OutboxSpec, PullPolicy,
    SecretKeyRef,
};
use super::dereference::SecretValues;
use super::validate::{ValidFleet, validate};

pub(crate) const SAMPLE_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

fn key(key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: "bot".to_owned(),
        key: key.to_owned(),
    }
}

pub(crate) fn sample_spec() -> BotFleetSpec {
    BotFleetSpec {
        image: ImageSpec {
            repository: Some("ghcr.io/sitg/sitg-bot".to_owned()),
            tag: Some("1.2.3".to_owned()),
            pull_policy: PullPolicy::IfNotPresent,
        },
        github: GitHubSpec {
            app_id: 4242,
            api_base_url: "https://api.github.com".to_owned(),
            webhook_secret_ref: key("webhook"),
            previous_webhook_secret_ref: None,
            private_key_ref: key("private-key"),
        },
        backend: BackendSpec {
            base_url: "https://sitg.example".to_owned(),
            bot_key_id: "bck_test_1".to_owned(),
            hmac_secret_ref: key("hmac"),
            service_token_ref: None,
        },
        outbox: OutboxSpec::default(),
        replicas: 2,
        autoscaling: None,
        resources: None,
        node_selector: None,
        tolerations: None,
        pod_annotations: None,
        pod_labels: None,
        image_pull_secrets: None,
        topology_spread_constraints: None,
        affinity: None,
        priority_class_name: None,
        log_level: None,
        redelivery: None,
    }
}

pub(crate) fn sample_fleet() -> BotFleet {
    let mut fleet = BotFleet::new("bots", sample_spec());
    fleet.metadata = ObjectMeta {
        name: Some("bots".to_owned()),
        namespace: Some("sitg".to_owned()),
        uid: Some("0b1e6f5e-0000-4000-8000-000000000001".to_owned()),
        generation: Some(3),
        ..Default::default()
    };
    fleet
}

pub(crate) fn secret_with(pairs: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

pub(crate) fn sample_secret_values() -> SecretValues {
    SecretValues::from_pairs([
        ("GITHUB_WEBHOOK_SECRET", b"whsec-current".to_vec()),
        ("GITHUB_APP_PRIVATE_KEY", SAMPLE_PEM.as_bytes().to_vec()),
        ("BACKEND_INTERNAL_HMAC_SECRET", b"hmac-secret".to_vec()),
    ])
}

pub(crate) fn sample_view() -> ValidFleet {
    match validate(
        &sample_fleet(),
        sample_secret_values(),
        &crate::operator::crd::DefaultImage::default(),
    ) {
        Ok(view) => view,
        Err(e) => panic!("sample fleet is valid: {e}"),
    }
}
