//! Validate: turn a `BotFleet` and its dereferenced Secret values into a checked,
//! typed view that the builders consume. Pure; no client.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use super::crd::{AutoscalingMode, BotFleet, DefaultImage, LogLevel, PullPolicy};
use super::dereference::{SecretValues, secret_refs};
use super::error::Error;
use crate::contract::env;

/// How the fleet's replica count is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// The operator sets the Deployment's `replicas`.
    Fixed(i32),
    /// An `autoscaling/v2` HorizontalPodAutoscaler owns `replicas`.
    Autoscaled {
        /// Lower bound of the pod count.
        min_replicas: i32,
        /// Upper bound of the pod count.
        max_replicas: i32,
        /// Average [`crate::contract::metrics::OUTBOX_LAG_SECONDS`] per pod the autoscaler aims for.
        target_outbox_lag_seconds: i32,
    },
    /// An autoscaler outside the operator (`autoscaling.mode: external`, e.g. KEDA)
    /// owns `replicas`: the operator neither sets them nor creates an autoscaler.
    External,
}

/// Non-secret worker settings, each the value of one worker environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// `GITHUB_APP_ID`.
    pub github_app_id: i64,
    /// `GITHUB_API_BASE_URL`.
    pub github_api_base_url: String,
    /// `BACKEND_BASE_URL`.
    pub backend_base_url: String,
    /// `BACKEND_BOT_KEY_ID`.
    pub backend_bot_key_id: String,
    /// `OUTBOX_POLLING_ENABLED`.
    pub outbox_polling_enabled: bool,
    /// `OUTBOX_POLL_INTERVAL_MS`, milliseconds.
    pub outbox_poll_interval_ms: i32,
    /// `OUTBOX_CLAIM_LIMIT`, actions per claim.
    pub outbox_claim_limit: i32,
}

/// A checked fleet: everything the builders need, nothing they must re-check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidFleet {
    /// Fleet name; children are named after it.
    pub name: String,
    /// Namespace of the fleet and of every child.
    pub namespace: String,
    /// Controller owner reference put on every child.
    pub owner: OwnerReference,
    /// `repository:tag` of the worker image.
    pub image: String,
    /// Image pull policy.
    pub pull_policy: PullPolicy,
    /// Non-secret settings.
    pub settings: WorkerSettings,
    /// Secret values keyed by worker variable.
    pub secrets: SecretValues,
    /// Replica policy.
    pub scaling: Scaling,
    /// Worker container resources (spec value or the defaults).
    pub resources: ResourceRequirements,
    /// Pod node selector.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod tolerations.
    pub tolerations: Option<Vec<Toleration>>,
    /// Extra pod annotations.
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra pod labels (the API server's CEL rule keeps the operator's own out).
    pub pod_labels: BTreeMap<String, String>,
    /// `imagePullSecrets` of the worker pods.
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Spread constraints as the spec gives them; `None` means the operator's default
    /// spread over nodes and zones (see the deployment builder).
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Pod affinity.
    pub affinity: Option<Affinity>,
    /// PriorityClass name of the worker pods.
    pub priority_class_name: Option<String>,
    /// `RUST_LOG` of the workers, when the spec sets one.
    pub log_level: Option<LogLevel>,
    /// `behavior` of the operator's HorizontalPodAutoscaler, as the spec gives it.
    pub hpa_behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// Checks a fleet and its Secret values; the image parts the fleet does not pin come
/// from `default_image` (the operator's own image).
///
/// # Errors
/// [`Error::InvalidSpec`] for an inconsistent spec or a fleet without namespace or
/// uid; [`Error::InvalidSecretValue`] for an empty or non-UTF-8 value, or a private
/// key that is not PEM.
pub fn validate(
    fleet: &BotFleet,
    secrets: SecretValues,
    default_image: &DefaultImage,
) -> Result<ValidFleet, Error> {
    let spec = &fleet.spec;
    let name = fleet.name_any();
    let namespace = fleet
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("a BotFleet must be namespaced".into()))?;
    let owner = fleet
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("the BotFleet has no uid yet".into()))?;
    let owner = OwnerReference {
        block_owner_deletion: Some(true),
        ..owner
    };

    for use_ in secret_refs(spec) {
        let value = secrets
            .get(use_.env)
            .ok_or_else(|| Error::SecretKeyNotFound {
                name: use_.reference.name.clone(),
                key: use_.reference.key.clone(),
                field: use_.field,
            })?;
        let problem = check_secret_value(use_.env, &value.0);
        if let Some(problem) = problem {
            return Err(Error::InvalidSecretValue {
                name: use_.reference.name.clone(),
                key: use_.reference.key.clone(),
                field: use_.field,
                problem,
            });
        }
    }

    let scaling = match &spec.autoscaling {
        Some(a) if a.enabled => {
            if a.min_replicas > a.max_replicas {
                return Err(Error::InvalidSpec(format!(
                    "autoscaling.minReplicas ({}) exceeds autoscaling.maxReplicas ({})",
                    a.min_replicas, a.max_replicas
                )));
            }
            if !spec.outbox.polling_enabled {
                return Err(Error::InvalidSpec(
                    "autoscaling on outbox lag needs outbox.pollingEnabled: true".into(),
                ));
            }
            match a.mode {
                AutoscalingMode::External => Scaling::External,
                AutoscalingMode::Hpa => Scaling::Autoscaled {
                    min_replicas: a.min_replicas,
                    max_replicas: a.max_replicas,
                    target_outbox_lag_seconds: a.target_outbox_lag_seconds,
                },
            }
        }
        _ => Scaling::Fixed(spec.replicas),
    };

    Ok(ValidFleet {
        name,
        namespace,
        owner,
        image: spec.image.reference(default_image),
        pull_policy: spec.image.pull_policy,
        settings: WorkerSettings {
            github_app_id: spec.github.app_id,
            github_api_base_url: spec.github.api_base_url.clone(),
            backend_base_url: spec.backend.base_url.clone(),
            backend_bot_key_id: spec.backend.bot_key_id.clone(),
            outbox_polling_enabled: spec.outbox.polling_enabled,
            outbox_poll_interval_ms: spec.outbox.poll_interval_ms,
            outbox_claim_limit: spec.outbox.claim_limit,
        },
        secrets,
        scaling,
        resources: spec.resources.clone().unwrap_or_else(default_resources),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        pod_annotations: spec.pod_annotations.clone().unwrap_or_default(),
        pod_labels: spec.pod_labels.clone().unwrap_or_default(),
        image_pull_secrets: spec.image_pull_secrets.clone(),
        topology_spread_constraints: spec.topology_spread_constraints.clone(),
        affinity: spec.affinity.clone(),
        priority_class_name: spec.priority_class_name.clone(),
        log_level: spec.log_level,
        hpa_behavior: spec.autoscaling.as_ref().and_then(|a| a.behavior.clone()),
    })
}

/// What is wrong with a Secret value for worker variable `var`, if anything.
///
/// The worker reads its environment as UTF-8 strings and parses the App key as PEM,
/// so such mistakes surface here as a `Degraded` fleet instead of crash-looping pods.
fn check_secret_value(var: &str, value: &[u8]) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(value) else {
        return Some("is not UTF-8 text");
    };
    if text.trim().is_empty() {
        return Some("is empty");
    }
    if var == env::GITHUB_APP_PRIVATE_KEY
        && !(text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----"))
    {
        return Some("is not a PEM private key");
    }
    None
}

/// Worker container resources when the spec sets none: the worker is an I/O-bound
/// HTTP service that stays well under these.
pub fn default_resources() -> ResourceRequirements {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("256Mi".to_owned()),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{AutoscalingMode, AutoscalingSpec};
    use crate::operator::testing::{sample_fleet, sample_secret_values};

    #[test]
    fn valid_fleet_carries_the_settings() {
        let fleet = sample_fleet();
        let view =
            validate(&fleet, sample_secret_values(), &DefaultImage::default()).expect("valid");
        assert_eq!(view.name, "bots");
        assert_eq!(view.namespace, "sitg");
        assert_eq!(view.owner.kind, "BotFleet");
        assert_eq!(view.owner.api_version, "sitg.io/v1alpha1");
        assert_eq!(view.owner.controller, Some(true));
        assert_eq!(view.owner.block_owner_deletion, Some(true));
        assert_eq!(view.image, "ghcr.io/sitg/sitg-bot:1.2.3");
        assert_eq!(view.scaling, Scaling::Fixed(2));
        assert_eq!(view.settings.github_app_id, 4242);
        assert_eq!(view.settings.outbox_claim_limit, 25);
        assert_eq!(view.resources, default_resources());
    }

    #[test]
    fn an_unpinned_image_is_the_operators_own() {
        let mut fleet = sample_fleet();
        fleet.spec.image.repository = None;
        fleet.spec.image.tag = None;
        let operator = DefaultImage::new(Some("ghcr.io/sitg/sitg-bot"), Some("0.1.0-next"));
        let view = validate(&fleet, sample_secret_values(), &operator).expect("valid");
        assert_eq!(view.image, "ghcr.io/sitg/sitg-bot:0.1.0-next");
        // The pinned tag of the sample wins over the operator's.
        let view = validate(&sample_fleet(), sample_secret_values(), &operator).expect("valid");
        assert_eq!(view.image, "ghcr.io/sitg/sitg-bot:1.2.3");
    }

    #[test]
    fn autoscaling_block_switches_the_policy() {
        let mut fleet = sample_fleet();
        fleet.spec.autoscaling = Some(AutoscalingSpec {
            enabled: true,
            mode: AutoscalingMode::Hpa,
            min_replicas: 3,
            max_replicas: 9,
            target_outbox_lag_seconds: 20,
            behavior: None,
        });
        let view =
            validate(&fleet, sample_secret_values(), &DefaultImage::default()).expect("valid");
        assert_eq!(
            view.scaling,
            Scaling::Autoscaled {
                min_replicas: 3,
                max_replicas: 9,
                target_outbox_lag_seconds: 20
            }
        );
        if let Some(a) = fleet.spec.autoscaling.as_mut() {
            a.enabled = false;
        }
        let view =
            validate(&fleet, sample_secret_values(), &DefaultImage::default()).expect("valid");
        assert_eq!(view.scaling, Scaling::Fixed(2));
        if let Some(a) = fleet.spec.autoscaling.as_mut() {
            a.enabled = true;
            a.mode = AutoscalingMode::External;
        }
        let view =
            validate(&fleet, sample_secret_values(), &DefaultImage::default()).expect("valid");
        assert_eq!(view.scaling, Scaling::External);
    }

    #[test]
    fn invalid_combinations_are_refused() {
        let mut fleet = sample_fleet();
        fleet.spec.autoscaling = Some(AutoscalingSpec {
            enabled: true,
            mode: AutoscalingMode::Hpa,
            min_replicas: 5,
            max_replicas: 2,
            target_outbox_lag_seconds: 20,
            behavior: None,
        });
        assert!(matches!(
            validate(&fleet, sample_secret_values(), &DefaultImage::default()),
            Err(Error::InvalidSpec(m)) if m.contains("minReplicas (5) exceeds")
        ));
        fleet.spec.autoscaling = Some(AutoscalingSpec {
            enabled: true,
            mode: AutoscalingMode::Hpa,
            min_replicas: 2,
            max_replicas: 5,
            target_outbox_lag_seconds: 20,
            behavior: None,
        });
        fleet.spec.outbox.polling_enabled = false;
        assert!(matches!(
            validate(&fleet, sample_secret_values(), &DefaultImage::default()),
            Err(Error::InvalidSpec(m)) if m.contains("pollingEnabled")
        ));
    }

    #[test]
    fn unusable_secret_values_are_refused_without_echoing_them() {
        let fleet = sample_fleet();
        let values = SecretValues::from_pairs([
            ("GITHUB_WEBHOOK_SECRET", b"whsec".to_vec()),
            ("GITHUB_APP_PRIVATE_KEY", b"hunter2-not-a-key".to_vec()),
            ("BACKEND_INTERNAL_HMAC_SECRET", b"hm".to_vec()),
        ]);
        let err = validate(&fleet, values, &DefaultImage::default()).expect_err("not PEM");
        assert_eq!(err.degraded_reason(), Some("InvalidSecretValue"));
        let text = err.to_string();
        assert!(text.contains("is not a PEM private key"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let empty = SecretValues::from_pairs([
            ("GITHUB_WEBHOOK_SECRET", b"  ".to_vec()),
            (
                "GITHUB_APP_PRIVATE_KEY",
                b"-----BEGIN PRIVATE KEY-----".to_vec(),
            ),
            ("BACKEND_INTERNAL_HMAC_SECRET", b"hm".to_vec()),
        ]);
        assert!(
            validate(&fleet, empty, &DefaultImage::default())
                .expect_err("empty")
                .to_string()
                .contains("is empty")
        );
        let binary = SecretValues::from_pairs([
            ("GITHUB_WEBHOOK_SECRET", vec![0xff, 0xfe]),
            (
                "GITHUB_APP_PRIVATE_KEY",
                b"-----BEGIN PRIVATE KEY-----".to_vec(),
            ),
            ("BACKEND_INTERNAL_HMAC_SECRET", b"hm".to_vec()),
        ]);
        assert!(
            validate(&fleet, binary, &DefaultImage::default())
                .expect_err("binary")
                .to_string()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn a_fleet_without_uid_cannot_own_children() {
        let mut fleet = sample_fleet();
        fleet.metadata.uid = None;
        assert!(matches!(
            validate(&fleet, sample_secret_values(), &DefaultImage::default()),
            Err(Error::InvalidSpec(_))
        ));
    }
}
