//! The operator's environment variables that the Helm chart sets: what the chart and
//! `sitg-bot operator` must agree on (`charts/sitg-bot/templates/deployment.yaml`
//! writes them, `crate::operator::OperatorOptions` reads them).

/// `SITG_OPERATOR_IMAGE_REPOSITORY`: repository of the operator's own image (the
/// chart's `image.repository`), the worker image repository of every `BotFleet`
/// without `spec.image.repository`. Unset or empty: `ghcr.io/sitg/sitg-bot`
/// (`crate::operator::crd::DEFAULT_IMAGE_REPOSITORY`).
pub const OPERATOR_IMAGE_REPOSITORY: &str = "SITG_OPERATOR_IMAGE_REPOSITORY";
/// `SITG_OPERATOR_IMAGE_TAG`: tag of the operator's own image (the chart's
/// `image.tag`, else its appVersion), the worker image tag of every `BotFleet`
/// without `spec.image.tag`. Unset or empty: the operator's version
/// (`crate::operator::crd::DEFAULT_IMAGE_TAG`).
pub const OPERATOR_IMAGE_TAG: &str = "SITG_OPERATOR_IMAGE_TAG";
