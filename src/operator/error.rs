//! Errors of one reconcile pass, with the bounded metric label and the `Degraded`
//! reason each maps to.

/// Why a reconcile pass of a `BotFleet` failed.
///
/// Messages name Secrets and keys but never carry a Secret's value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Secret referenced by the spec does not exist in the fleet's namespace.
    #[error("Secret {name:?} referenced by {field} does not exist")]
    SecretNotFound {
        /// Secret name.
        name: String,
        /// Spec field holding the reference, e.g. `spec.backend.hmacSecretRef`.
        field: &'static str,
    },
    /// A referenced Secret exists but has no such key.
    #[error("Secret {name:?} has no key {key:?} (referenced by {field})")]
    SecretKeyNotFound {
        /// Secret name.
        name: String,
        /// Missing key.
        key: String,
        /// Spec field holding the reference.
        field: &'static str,
    },
    /// A referenced Secret value is unusable (empty, not UTF-8, not a PEM key).
    #[error("Secret {name:?} key {key:?} (referenced by {field}) {problem}")]
    InvalidSecretValue {
        /// Secret name.
        name: String,
        /// Key whose value is unusable.
        key: String,
        /// Spec field holding the reference.
        field: &'static str,
        /// What is wrong with the value, without the value.
        problem: &'static str,
    },
    /// The spec is inconsistent in a way the schema cannot express or did not check
    /// (for example a CRD from an older release is installed).
    #[error("invalid BotFleet: {0}")]
    InvalidSpec(String),
    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing, e.g. `applying Deployment sitg/bots`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Wraps a client error with what the operator was doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// The value of the `error` label of `sitg_bot_operator_reconcile_errors_total`:
    /// one fixed word per variant, so the label set stays bounded.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => "secret_not_found",
            Self::SecretKeyNotFound { .. } => "secret_key_not_found",
            Self::InvalidSecretValue { .. } => "invalid_secret_value",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::Kube { .. } => "kube_api",
        }
    }

    /// The `Degraded` condition reason when the error is the fleet's own fault (a
    /// user can fix it by editing the fleet or its Secrets); `None` for transient or
    /// internal failures, which are retried without marking the fleet degraded.
    pub fn degraded_reason(&self) -> Option<&'static str> {
        match self {
            Self::SecretNotFound { .. } => Some("SecretNotFound"),
            Self::SecretKeyNotFound { .. } => Some("SecretKeyNotFound"),
            Self::InvalidSecretValue { .. } => Some("InvalidSecretValue"),
            Self::InvalidSpec(_) => Some("InvalidSpec"),
            Self::Kube { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_reasons_are_fixed_words() {
        let missing = Error::SecretNotFound {
            name: "bot".into(),
            field: "spec.github.webhookSecretRef",
        };
        assert_eq!(missing.metric_label(), "secret_not_found");
        assert_eq!(missing.degraded_reason(), Some("SecretNotFound"));
        assert_eq!(
            missing.to_string(),
            "Secret \"bot\" referenced by spec.github.webhookSecretRef does not exist"
        );
        let invalid = Error::InvalidSpec("x".into());
        assert_eq!(invalid.metric_label(), "invalid_spec");
        assert_eq!(invalid.degraded_reason(), Some("InvalidSpec"));
        let conflict = Error::kube(
            "applying Deployment sitg/bots",
            kube::Error::Api(Box::new(kube::core::Status {
                code: 409,
                reason: "Conflict".into(),
                ..kube::core::Status::default()
            })),
        );
        assert_eq!(conflict.metric_label(), "kube_api");
        assert_eq!(conflict.degraded_reason(), None);
    }
}
