//! Prometheus metrics of the GitHub client.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::rate_limit::RateLimitKind;

/// A GitHub REST call, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    CreateInstallationToken,
    GetRepoInstallation,
    ClosePullRequest,
    GetPullRequest,
    GetIssue,
    ListComments,
    CreateComment,
    UpdateComment,
    DeleteComment,
    ListInstallationRepositories,
    ListHookDeliveries,
    RedeliverHookDelivery,
    GetApp,
}

impl Route {
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::CreateInstallationToken => "create_installation_token",
            Self::GetRepoInstallation => "get_repo_installation",
            Self::ClosePullRequest => "close_pull_request",
            Self::GetPullRequest => "get_pull_request",
            Self::GetIssue => "get_issue",
            Self::ListComments => "list_comments",
            Self::CreateComment => "create_comment",
            Self::UpdateComment => "update_comment",
            Self::DeleteComment => "delete_comment",
            Self::ListInstallationRepositories => "list_installation_repositories",
            Self::ListHookDeliveries => "list_hook_deliveries",
            Self::RedeliverHookDelivery => "redeliver_hook_delivery",
            Self::GetApp => "get_app",
        }
    }
}

/// `2xx` … `5xx`, or `error` when no HTTP answer arrived.
pub(crate) fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

pub(crate) struct GitHubMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    token_mints: IntCounter,
    rate_limited: IntCounterVec,
}

impl GitHubMetrics {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "sitg_bot_github_requests_total",
                "GitHub REST requests sent, by route and HTTP status class",
            ),
            &["route", "status_class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sitg_bot_github_request_duration_seconds",
                "Time from sending a GitHub REST request to having its whole answer",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route"],
        )?;
        let token_mints = IntCounter::new(
            "sitg_bot_github_installation_token_mints_total",
            "Installation access tokens minted (successful POST /app/installations/{id}/access_tokens)",
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "sitg_bot_github_rate_limited_total",
                "GitHub answers refusing a request for a rate limit, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(token_mints.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        // Make both kinds visible at 0 before the first refusal.
        for kind in [RateLimitKind::Primary, RateLimitKind::Secondary] {
            rate_limited.with_label_values(&[kind.as_label()]);
        }
        Ok(Self {
            requests,
            duration,
            token_mints,
            rate_limited,
        })
    }

    pub(crate) fn observe_request(&self, route: Route, status: Option<u16>, seconds: f64) {
        self.requests
            .with_label_values(&[route.as_label(), status_class(status)])
            .inc();
        self.duration
            .with_label_values(&[route.as_label()])
            .observe(seconds);
    }

    pub(crate) fn token_minted(&self) {
        self.token_mints.inc();
    }

    pub(crate) fn rate_limited(&self, kind: RateLimitKind) {
        self.rate_limited
            .with_label_values(&[kind.as_label()])
            .inc();
    }
}
