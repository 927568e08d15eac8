//! The worker env Secret: the referenced secret values, copied under the worker's
//! variable names, and the checksum that rolls the pods when they change.

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::{child_meta, worker_env_secret_name};
use crate::operator::validate::ValidFleet;

/// Builds `<fleet>-worker-env`: one key per secret worker variable
/// (`GITHUB_WEBHOOK_SECRET`, `GITHUB_APP_PRIVATE_KEY`, `BACKEND_INTERNAL_HMAC_SECRET`,
/// and when referenced `GITHUB_WEBHOOK_SECRET_PREVIOUS`, `BACKEND_SERVICE_TOKEN`).
///
/// Copying (rather than pointing the pods at the user's Secrets) gives the pods one
/// consistent snapshot and lets the checksum annotation roll them on a change.
pub fn worker_env_secret(fleet: &ValidFleet) -> Secret {
    Secret {
        metadata: child_meta(fleet, worker_env_secret_name(&fleet.name)),
        type_: Some("Opaque".to_owned()),
        data: Some(
            fleet
                .secrets
                .iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Hex SHA-256 over the Secret's `data` (keys in order, each key and value
/// length-prefixed so no two different maps hash alike).
pub fn worker_env_checksum(secret: &Secret) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in secret.data.iter().flatten() {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.0.len() as u64).to_be_bytes());
        hasher.update(&value.0);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::dereference::SecretValues;
    use crate::operator::testing::sample_view;

    #[test]
    fn holds_exactly_the_secret_variables() {
        let s = worker_env_secret(&sample_view());
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let data = s.data.expect("data");
        let keys: Vec<_> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "BACKEND_INTERNAL_HMAC_SECRET",
                "GITHUB_APP_PRIVATE_KEY",
                "GITHUB_WEBHOOK_SECRET"
            ]
        );
        assert_eq!(data["GITHUB_WEBHOOK_SECRET"].0, b"whsec-current");
        assert!(s.string_data.is_none());
    }

    #[test]
    fn checksum_follows_the_values() {
        let mut view = sample_view();
        let first = worker_env_checksum(&worker_env_secret(&view));
        assert_eq!(first.len(), 64);
        assert_eq!(first, worker_env_checksum(&worker_env_secret(&view)));
        view.secrets = SecretValues::from_pairs(
            view.secrets
                .iter()
                .map(|(k, v)| {
                    let mut v = v.0.clone();
                    if k == "BACKEND_INTERNAL_HMAC_SECRET" {
                        v.push(b'!');
                    }
                    (k, v)
                })
                .collect::<Vec<_>>(),
        );
        assert_ne!(first, worker_env_checksum(&worker_env_secret(&view)));
    }

    #[test]
    fn checksum_is_not_fooled_by_moving_bytes_between_key_and_value() {
        let a = Secret {
            data: Some([("ab".to_owned(), k8s_openapi::ByteString(b"c".to_vec()))].into()),
            ..Default::default()
        };
        let b = Secret {
            data: Some([("a".to_owned(), k8s_openapi::ByteString(b"bc".to_vec()))].into()),
            ..Default::default()
        };
        assert_ne!(worker_env_checksum(&a), worker_env_checksum(&b));
    }
}
