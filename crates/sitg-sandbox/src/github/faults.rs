//! Fault injection for the GitHub simulator: server errors, rate limits and latency,
//! scoped to an installation and/or a route, for the next N requests or a time window.
//!
//! Pure selection logic; the HTTP layer turns a [`Fault`] into GitHub's response.

use std::time::{Duration, Instant};

/// The REST routes the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// `POST /app/installations/{installation_id}/access_tokens` (App JWT)
    CreateInstallationToken,
    /// `GET /repos/{owner}/{repo}/installation` (App JWT)
    GetRepoInstallation,
    /// `GET /repos/{owner}/{repo}/issues/{issue_number}` (the issue of a pull request)
    GetIssue,
    /// `GET /repos/{owner}/{repo}/issues/{issue_number}/comments`, also reached through
    /// `GET /repositories/{repository_id}/issues/{issue_number}/comments` (pagination links)
    ListIssueComments,
    /// `POST /repos/{owner}/{repo}/issues/{issue_number}/comments`
    CreateIssueComment,
    /// `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`
    UpdateIssueComment,
    /// `DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}`
    DeleteIssueComment,
    /// `PATCH /repos/{owner}/{repo}/pulls/{pull_number}`
    UpdatePullRequest,
    /// `GET /installation/repositories`
    ListInstallationRepositories,
    /// `GET /app/hook/deliveries` (App JWT)
    ListHookDeliveries,
    /// `POST /app/hook/deliveries/{delivery_id}/attempts` (App JWT)
    RedeliverHookDelivery,
    /// `GET /app`: the authenticated App (App JWT)
    GetApp,
    /// Anything else (answered 404).
    Unknown,
}

impl Route {
    /// Every served route.
    pub const ALL: [Route; 12] = [
        Route::CreateInstallationToken,
        Route::GetRepoInstallation,
        Route::GetIssue,
        Route::ListIssueComments,
        Route::CreateIssueComment,
        Route::UpdateIssueComment,
        Route::DeleteIssueComment,
        Route::UpdatePullRequest,
        Route::ListInstallationRepositories,
        Route::ListHookDeliveries,
        Route::RedeliverHookDelivery,
        Route::GetApp,
    ];

    /// True for routes authenticated with the App JWT rather than an installation token.
    pub fn uses_app_jwt(self) -> bool {
        matches!(
            self,
            Self::CreateInstallationToken
                | Self::GetRepoInstallation
                | Self::ListHookDeliveries
                | Self::RedeliverHookDelivery
                | Self::GetApp
        )
    }

    /// The route from the request method and axum's matched path template.
    pub(crate) fn from_template(method: &str, template: &str) -> Self {
        match (method, template) {
            ("POST", "/app/installations/{installation_id}/access_tokens") => {
                Self::CreateInstallationToken
            }
            ("GET", "/repos/{owner}/{repo}/installation") => Self::GetRepoInstallation,
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}") => Self::GetIssue,
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
            | ("GET", "/repositories/{repository_id}/issues/{issue_number}/comments") => {
                Self::ListIssueComments
            }
            ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
                Self::CreateIssueComment
            }
            ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
                Self::UpdateIssueComment
            }
            ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
                Self::DeleteIssueComment
            }
            ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}") => Self::UpdatePullRequest,
            ("GET", "/installation/repositories") => Self::ListInstallationRepositories,
            ("GET", "/app/hook/deliveries") => Self::ListHookDeliveries,
            ("POST", "/app/hook/deliveries/{delivery_id}/attempts") => Self::RedeliverHookDelivery,
            ("GET", "/app") => Self::GetApp,
            _ => Self::Unknown,
        }
    }
}

/// What an injected fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The given status with GitHub's generic error body (500, 502, 503, 404, ...).
    Status(u16),
    /// 403 "You have exceeded a secondary rate limit", with `retry-after: N` when given.
    SecondaryRateLimit {
        /// Seconds for `retry-after`; None sends no such header.
        retry_after: Option<u64>,
    },
    /// Primary rate limit: `status` (403 or 429) with `x-ratelimit-remaining: 0` and
    /// `x-ratelimit-reset` `reset_after` from now.
    PrimaryRateLimit {
        /// 403 or 429.
        status: u16,
        /// Time until the limit resets.
        reset_after: Duration,
    },
    /// Delay the request, then serve it normally. Several latency rules add up.
    Latency(Duration),
    /// `status` with a body that quotes the request (line and every header, the
    /// `authorization` credential included), as some proxies and GitHub Enterprise
    /// front ends do: GitHub's JSON error shape with the quote in `message` when `json`,
    /// else a `text/html` page.
    EchoRequest {
        /// The answer's status (e.g. 403, 422, 502).
        status: u16,
        /// GitHub's JSON shape rather than an HTML page.
        json: bool,
    },
    /// Serve the request normally, but a list's last page (a single page included)
    /// carries `Link: <…page=1>; rel="next"`: pagination that never ends.
    /// Combines with other faults; only list routes have pages.
    LinkCycle,
}

/// When a rule stops applying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultLifetime {
    /// Until removed.
    Always,
    /// For this many more matching requests.
    NextRequests(u32),
    /// Until this instant.
    Until(Instant),
}

/// A fault and the requests it hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// The fault.
    pub fault: Fault,
    /// Only requests of this installation (token or path), when set.
    pub installation: Option<i64>,
    /// Only this route, when set.
    pub route: Option<Route>,
    /// How long the rule applies.
    pub lifetime: FaultLifetime,
}

impl FaultRule {
    /// A rule hitting every request until removed.
    pub fn new(fault: Fault) -> Self {
        Self {
            fault,
            installation: None,
            route: None,
            lifetime: FaultLifetime::Always,
        }
    }

    /// Restricts the rule to one installation.
    pub fn installation(mut self, id: i64) -> Self {
        self.installation = Some(id);
        self
    }

    /// Restricts the rule to one route.
    pub fn route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }

    /// Applies to the next `n` matching requests only.
    pub fn next(mut self, n: u32) -> Self {
        self.lifetime = FaultLifetime::NextRequests(n);
        self
    }

    /// Applies for `window` from now.
    pub fn for_duration(mut self, window: Duration) -> Self {
        self.lifetime = FaultLifetime::Until(Instant::now() + window);
        self
    }

    fn matches(&self, installation: Option<i64>, route: Route, now: Instant) -> bool {
        let alive = match self.lifetime {
            FaultLifetime::Always => true,
            FaultLifetime::NextRequests(n) => n > 0,
            FaultLifetime::Until(end) => now < end,
        };
        alive
            && self.route.is_none_or(|r| r == route)
            && self.installation.is_none_or(|i| installation == Some(i))
    }

    fn consume(&mut self) {
        if let FaultLifetime::NextRequests(n) = &mut self.lifetime {
            *n = n.saturating_sub(1);
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match self.lifetime {
            FaultLifetime::Always => false,
            FaultLifetime::NextRequests(n) => n == 0,
            FaultLifetime::Until(end) => now >= end,
        }
    }
}

/// Handle to remove an injected rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

/// What the faults decide for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Sum of matching latency rules.
    pub(crate) latency: Duration,
    /// The first matching non-latency fault, answered instead of the request.
    pub(crate) fault: Option<Fault>,
    /// A matching [`Fault::LinkCycle`] rule: the page's `Link` leads back to page 1.
    pub(crate) link_cycle: bool,
}

#[derive(Default)]
pub(crate) struct FaultSet {
    rules: Vec<(FaultId, FaultRule)>,
    next_id: u64,
}

impl FaultSet {
    pub(crate) fn add(&mut self, rule: FaultRule) -> FaultId {
        let id = FaultId(self.next_id);
        self.next_id += 1;
        self.rules.push((id, rule));
        id
    }

    pub(crate) fn remove(&mut self, id: FaultId) -> bool {
        let before = self.rules.len();
        self.rules.retain(|(rule_id, _)| *rule_id != id);
        self.rules.len() != before
    }

    /// Decides for one request and consumes the counted rules that applied: every
    /// matching latency rule, and the first matching other rule.
    pub(crate) fn decide(
        &mut self,
        installation: Option<i64>,
        route: Route,
        now: Instant,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        for (_, rule) in &mut self.rules {
            if !rule.matches(installation, route, now) {
                continue;
            }
            match rule.fault {
                Fault::Latency(delay) => {
                    verdict.latency += delay;
                    rule.consume();
                }
                Fault::LinkCycle => {
                    verdict.link_cycle = true;
                    rule.consume();
                }
                other if verdict.fault.is_none() => {
                    verdict.fault = Some(other);
                    rule.consume();
                }
                _ => {}
            }
        }
        self.rules.retain(|(_, rule)| !rule.expired(now));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_expire_after_n_matching_requests() {
        let mut set = FaultSet::default();
        set.add(FaultRule::new(Fault::Status(500)).installation(7).next(2));
        let now = Instant::now();
        let route = Route::CreateIssueComment;
        // Another installation does not consume the rule.
        assert_eq!(set.decide(Some(8), route, now).fault, None);
        assert_eq!(
            set.decide(Some(7), route, now).fault,
            Some(Fault::Status(500))
        );
        assert_eq!(
            set.decide(Some(7), route, now).fault,
            Some(Fault::Status(500))
        );
        assert_eq!(set.decide(Some(7), route, now).fault, None);
    }

    #[test]
    fn time_windows_end() {
        let mut set = FaultSet::default();
        set.add(FaultRule::new(Fault::Status(502)).for_duration(Duration::from_secs(5)));
        let now = Instant::now();
        assert!(set.decide(None, Route::Unknown, now).fault.is_some());
        let later = now + Duration::from_secs(6);
        assert!(set.decide(None, Route::Unknown, later).fault.is_none());
    }

    #[test]
    fn latency_adds_up_and_combines_with_one_fault() {
        let mut set = FaultSet::default();
        set.add(FaultRule::new(Fault::Latency(Duration::from_millis(20))));
        set.add(
            FaultRule::new(Fault::Latency(Duration::from_millis(5)))
                .route(Route::ListIssueComments),
        );
        let first = set.add(FaultRule::new(Fault::Status(500)).next(1));
        set.add(FaultRule::new(Fault::Status(502)).next(1));
        let v = set.decide(None, Route::ListIssueComments, Instant::now());
        assert_eq!(v.latency, Duration::from_millis(25));
        assert_eq!(v.fault, Some(Fault::Status(500)));
        let v = set.decide(None, Route::CreateIssueComment, Instant::now());
        assert_eq!(v.latency, Duration::from_millis(20));
        assert_eq!(v.fault, Some(Fault::Status(502)));
        assert!(!set.remove(first), "already expired");
    }

    #[test]
    fn templates_map_to_routes() {
        assert_eq!(
            Route::from_template(
                "GET",
                "/repositories/{repository_id}/issues/{issue_number}/comments"
            ),
            Route::ListIssueComments
        );
        assert_eq!(
            Route::from_template("POST", "/repos/{owner}/{repo}/installation"),
            Route::Unknown
        );
    }
}
