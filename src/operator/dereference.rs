//! Dereference: read the Secrets a `BotFleet` points at and pick the referenced keys.
//!
//! The only I/O is [`fetch_referenced_secrets`]; choosing keys and reporting what is
//! missing is pure ([`secret_refs`], [`pick_values`]).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::crd::{BotFleetSpec, SecretKeyRef};
use super::error::Error;
use crate::contract::env;

/// One Secret reference of the spec: the worker variable it feeds, the spec field it
/// sits in, and the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretUse<'a> {
    /// Worker environment variable, e.g. `GITHUB_WEBHOOK_SECRET`.
    pub env: &'static str,
    /// Spec field path, for messages, e.g. `spec.github.webhookSecretRef`.
    pub field: &'static str,
    /// The reference itself.
    pub reference: &'a SecretKeyRef,
}

/// Every Secret reference of the spec, required ones first, in a fixed order.
pub fn secret_refs(spec: &BotFleetSpec) -> Vec<SecretUse<'_>> {
    let mut uses = vec![
        SecretUse {
            env: env::GITHUB_WEBHOOK_SECRET,
            field: "spec.github.webhookSecretRef",
            reference: &spec.github.webhook_secret_ref,
        },
        SecretUse {
            env: env::GITHUB_APP_PRIVATE_KEY,
            field: "spec.github.privateKeyRef",
            reference: &spec.github.private_key_ref,
        },
        SecretUse {
            env: env::BACKEND_INTERNAL_HMAC_SECRET,
            field: "spec.backend.hmacSecretRef",
            reference: &spec.backend.hmac_secret_ref,
        },
    ];
    if let Some(reference) = &spec.github.previous_webhook_secret_ref {
        uses.push(SecretUse {
            env: env::GITHUB_WEBHOOK_SECRET_PREVIOUS,
            field: "spec.github.previousWebhookSecretRef",
            reference,
        });
    }
    if let Some(reference) = &spec.backend.service_token_ref {
        uses.push(SecretUse {
            env: env::BACKEND_SERVICE_TOKEN,
            field: "spec.backend.serviceTokenRef",
            reference,
        });
    }
    uses
}

/// Names of the Secrets a spec references, sorted and without duplicates; the
/// controller uses them to map Secret changes back to fleets.
pub fn referenced_secret_names(spec: &BotFleetSpec) -> Vec<&str> {
    let mut names: Vec<&str> = secret_refs(spec)
        .iter()
        .map(|u| u.reference.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Referenced Secret values keyed by worker environment variable.
///
/// `Debug` lists the variables only, never the values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretValues {
    values: BTreeMap<&'static str, ByteString>,
}

impl SecretValues {
    /// Builds from `(variable, value)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'static str, Vec<u8>)>) -> Self {
        Self {
            values: pairs.into_iter().map(|(k, v)| (k, ByteString(v))).collect(),
        }
    }

    /// The value for a worker variable, if referenced.
    pub fn get(&self, env: &str) -> Option<&ByteString> {
        self.values.get(env)
    }

    /// Variables and values in variable order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &ByteString)> {
        self.values.iter().map(|(k, v)| (*k, v))
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no variable is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// Picks the referenced keys out of the fetched Secrets (`None` = not found).
///
/// # Errors
/// [`Error::SecretNotFound`] or [`Error::SecretKeyNotFound`] for the first reference,
/// in [`secret_refs`] order, that cannot be satisfied.
pub fn pick_values(
    spec: &BotFleetSpec,
    secrets: &BTreeMap<String, Option<Secret>>,
) -> Result<SecretValues, Error> {
    let mut values = BTreeMap::new();
    for SecretUse {
        env,
        field,
        reference,
    } in secret_refs(spec)
    {
        let Some(Some(secret)) = secrets.get(&reference.name) else {
            return Err(Error::SecretNotFound {
                name: reference.name.clone(),
                field,
            });
        };
        // `stringData` is write-only; a Secret read back from the API server has
        // everything in `data`.
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .ok_or_else(|| Error::SecretKeyNotFound {
                name: reference.name.clone(),
                key: reference.key.clone(),
                field,
            })?;
        values.insert(env, value.clone());
    }
    Ok(SecretValues { values })
}

/// Reads every Secret the spec references (each once) and picks the referenced keys.
///
/// # Errors
/// Missing Secrets or keys as in [`pick_values`]; [`Error::Kube`] when a read fails
/// for another reason than "not found".
pub async fn fetch_referenced_secrets(
    api: &Api<Secret>,
    spec: &BotFleetSpec,
) -> Result<SecretValues, Error> {
    let mut fetched = BTreeMap::new();
    for name in referenced_secret_names(spec) {
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {name}"), e))?;
        fetched.insert(name.to_owned(), secret);
    }
    pick_values(spec, &fetched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::{sample_spec, secret_with};

    #[test]
    fn refs_cover_optional_keys_only_when_set() {
        let mut spec = sample_spec();
        let envs: Vec<_> = secret_refs(&spec).iter().map(|u| u.env).collect();
        assert_eq!(
            envs,
            [
                "GITHUB_WEBHOOK_SECRET",
                "GITHUB_APP_PRIVATE_KEY",
                "BACKEND_INTERNAL_HMAC_SECRET"
            ]
        );
        spec.github.previous_webhook_secret_ref = Some(SecretKeyRef {
            name: "old".into(),
            key: "w".into(),
        });
        spec.backend.service_token_ref = Some(SecretKeyRef {
            name: "bot".into(),
            key: "token".into(),
        });
        let envs: Vec<_> = secret_refs(&spec).iter().map(|u| u.env).collect();
        assert_eq!(envs.len(), 5);
        assert_eq!(referenced_secret_names(&spec), ["bot", "old"]);
    }

    #[test]
    fn picks_every_referenced_key() {
        let spec = sample_spec();
        let secrets = BTreeMap::from([(
            "bot".to_owned(),
            Some(secret_with(&[
                ("webhook", "whsec"),
                ("private-key", "PEM"),
                ("hmac", "hm"),
                ("unrelated", "x"),
            ])),
        )]);
        let values = pick_values(&spec, &secrets).expect("all present");
        assert_eq!(values.len(), 3);
        assert_eq!(
            values.get("GITHUB_WEBHOOK_SECRET").map(|b| &b.0[..]),
            Some(&b"whsec"[..])
        );
        assert_eq!(
            values.get("BACKEND_INTERNAL_HMAC_SECRET").map(|b| &b.0[..]),
            Some(&b"hm"[..])
        );
        assert!(values.get("unrelated").is_none());
        assert_eq!(
            format!("{values:?}"),
            "{\"BACKEND_INTERNAL_HMAC_SECRET\", \"GITHUB_APP_PRIVATE_KEY\", \"GITHUB_WEBHOOK_SECRET\"}"
        );
    }

    #[test]
    fn missing_secret_and_missing_key_are_told_apart() {
        let spec = sample_spec();
        let none = BTreeMap::from([("bot".to_owned(), None)]);
        match pick_values(&spec, &none) {
            Err(Error::SecretNotFound { name, field }) => {
                assert_eq!(name, "bot");
                assert_eq!(field, "spec.github.webhookSecretRef");
            }
            other => panic!("expected SecretNotFound, got {other:?}"),
        }
        let partial = BTreeMap::from([(
            "bot".to_owned(),
            Some(secret_with(&[("webhook", "w"), ("private-key", "p")])),
        )]);
        match pick_values(&spec, &partial) {
            Err(Error::SecretKeyNotFound { name, key, field }) => {
                assert_eq!((name.as_str(), key.as_str()), ("bot", "hmac"));
                assert_eq!(field, "spec.backend.hmacSecretRef");
            }
            other => panic!("expected SecretKeyNotFound, got {other:?}"),
        }
    }
}
