//! The verification checklist (the seed's section 8), evaluated on what each replica
//! answered: pure, so every rule is tested without a network.

use super::scrape::Snapshot;

/// `sitg_bot_webhook_pull_request_forwarded_total`
pub const PULL_REQUEST_FORWARDED: &str = "sitg_bot_webhook_pull_request_forwarded_total";
/// `sitg_bot_webhook_installation_sync_forwarded_total`
pub const INSTALLATION_SYNC_FORWARDED: &str = "sitg_bot_webhook_installation_sync_forwarded_total";
/// `sitg_bot_outbox_actions_success_total`
pub const ACTIONS_SUCCESS: &str = "sitg_bot_outbox_actions_success_total";
/// `sitg_bot_outbox_actions_retryable_failure_total`
pub const ACTIONS_RETRYABLE: &str = "sitg_bot_outbox_actions_retryable_failure_total";
/// `sitg_bot_outbox_actions_failed_total`
pub const ACTIONS_FAILED: &str = "sitg_bot_outbox_actions_failed_total";
/// `sitg_bot_errors_total`
pub const ERRORS: &str = "sitg_bot_errors_total";
/// `sitg_bot_outbox_lag_seconds`
pub const OUTBOX_LAG: &str = "sitg_bot_outbox_lag_seconds";

/// The counters the checklist compares between the two scrapes.
const COUNTERS: [&str; 6] = [
    PULL_REQUEST_FORWARDED,
    INSTALLATION_SYNC_FORWARDED,
    ACTIONS_SUCCESS,
    ACTIONS_RETRYABLE,
    ACTIONS_FAILED,
    ERRORS,
];

/// What one replica answered.
#[derive(Debug, Clone)]
pub struct Observation {
    /// How the replica is named in the table and in failures (URL or pod name).
    pub replica: String,
    /// Why the replica could not even be asked (e.g. a pod that is not Ready); the
    /// other fields are then errors too.
    pub unavailable: Option<String>,
    /// `/healthz`: the HTTP status, or why no answer came.
    pub health: Result<u16, String>,
    /// The first and second `/metrics` scrape, or why each failed.
    pub first: Result<Snapshot, String>,
    pub second: Result<Snapshot, String>,
}

/// The thresholds of the checklist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Traffic flows during the window: forwarding and outbox success counters must
    /// move over the fleet.
    pub expect_traffic: bool,
    /// Largest share of a replica's reported actions (success + retryable + failed) in
    /// the window that may be failures (retryable + failed), 0..=1.
    pub max_failure_ratio: f64,
    /// Seconds between the scrapes, for the messages.
    pub interval_seconds: u64,
}

/// The changes of one replica's counters between the scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Deltas {
    pub pull_request_forwarded: f64,
    pub installation_sync_forwarded: f64,
    pub success: f64,
    pub retryable: f64,
    pub failed: f64,
    pub errors: f64,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub replica: String,
    /// `200`, `503`, `down`, `not ready`.
    pub health: String,
    /// `None` when either scrape failed.
    pub deltas: Option<Deltas>,
    /// `sitg_bot_outbox_lag_seconds` at the second scrape.
    pub lag_seconds: Option<f64>,
    /// Whether every per-replica check held.
    pub ok: bool,
}

/// The verdict: the table and every failed check, named.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub rows: Vec<Row>,
    pub failures: Vec<String>,
}

impl Report {
    /// Whether the whole checklist held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Evaluates the checklist over every replica's observation.
pub fn evaluate(observations: &[Observation], policy: &Policy) -> Report {
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let mut fleet = Deltas::default();
    if observations.is_empty() {
        failures.push("no replica to check".to_owned());
    }
    for obs in observations {
        let before = failures.len();
        let row = evaluate_replica(obs, policy, &mut failures);
        if let Some(d) = row.deltas {
            fleet.pull_request_forwarded += d.pull_request_forwarded;
            fleet.installation_sync_forwarded += d.installation_sync_forwarded;
            fleet.success += d.success;
        }
        rows.push(Row {
            ok: failures.len() == before,
            ..row
        });
    }
    if policy.expect_traffic && !observations.is_empty() {
        let window = policy.interval_seconds;
        if fleet.pull_request_forwarded + fleet.installation_sync_forwarded <= 0.0 {
            failures.push(format!(
                "forwarding: neither {PULL_REQUEST_FORWARDED} nor {INSTALLATION_SYNC_FORWARDED} moved on any replica in {window} s while traffic was expected"
            ));
        }
        if fleet.success <= 0.0 {
            failures.push(format!(
                "outbox: {ACTIONS_SUCCESS} did not move on any replica in {window} s while traffic was expected"
            ));
        }
    }
    Report { rows, failures }
}

fn evaluate_replica(obs: &Observation, policy: &Policy, failures: &mut Vec<String>) -> Row {
    let name = &obs.replica;
    let mut row = Row {
        replica: name.clone(),
        health: String::new(),
        deltas: None,
        lag_seconds: None,
        ok: true,
    };
    if let Some(why) = &obs.unavailable {
        row.health = "not ready".to_owned();
        failures.push(format!("{name}: {why}"));
        return row;
    }
    match &obs.health {
        Ok(200) => row.health = "200".to_owned(),
        Ok(code) => {
            row.health = code.to_string();
            failures.push(format!("{name}: /healthz answered {code}, not 200"));
        }
        Err(why) => {
            row.health = "down".to_owned();
            failures.push(format!("{name}: /healthz: {why}"));
        }
    }
    let (first, second) = match (&obs.first, &obs.second) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => {
            failures.push(format!("{name}: /metrics: {why}"));
            return row;
        }
    };
    row.lag_seconds = second.get(OUTBOX_LAG);
    let missing: Vec<&str> = COUNTERS
        .iter()
        .copied()
        .filter(|m| first.get(m).is_none() || second.get(m).is_none())
        .collect();
    if !missing.is_empty() {
        failures.push(format!(
            "{name}: /metrics lacks {} (is this a sitg-bot worker?)",
            missing.join(", ")
        ));
        return row;
    }
    let delta = |m: &str| second.get(m).unwrap_or(0.0) - first.get(m).unwrap_or(0.0);
    let d = Deltas {
        pull_request_forwarded: delta(PULL_REQUEST_FORWARDED),
        installation_sync_forwarded: delta(INSTALLATION_SYNC_FORWARDED),
        success: delta(ACTIONS_SUCCESS),
        retryable: delta(ACTIONS_RETRYABLE),
        failed: delta(ACTIONS_FAILED),
        errors: delta(ERRORS),
    };
    row.deltas = Some(d);
    let went_back: Vec<&str> = COUNTERS
        .iter()
        .copied()
        .filter(|m| delta(m) < 0.0)
        .collect();
    if !went_back.is_empty() {
        failures.push(format!(
            "{name}: {} went down between the scrapes: the replica restarted",
            went_back.join(", ")
        ));
        return row;
    }
    if d.errors > 0.0 {
        failures.push(format!(
            "{name}: {ERRORS} grew by {} in {} s (must stay flat)",
            d.errors, policy.interval_seconds
        ));
    }
    let failed = d.retryable + d.failed;
    let reported = failed + d.success;
    if failed > 0.0 && failed > policy.max_failure_ratio * reported {
        failures.push(format!(
            "{name}: {failed} of {reported} actions reported in {} s were failures ({ACTIONS_RETRYABLE} +{}, {ACTIONS_FAILED} +{}), over the allowed {:.0}%",
            policy.interval_seconds,
            d.retryable,
            d.failed,
            policy.max_failure_ratio * 100.0
        ));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(values: &[(&str, f64)]) -> Snapshot {
        let mut text = String::new();
        for m in COUNTERS {
            let v = values
                .iter()
                .find(|(k, _)| *k == m)
                .map_or(0.0, |(_, v)| *v);
            text.push_str(&format!("# TYPE {m} counter\n{m} {v}\n"));
        }
        text.push_str(
            "# TYPE sitg_bot_outbox_lag_seconds gauge\nsitg_bot_outbox_lag_seconds 0.5\n",
        );
        Snapshot::parse(&text).unwrap()
    }

    fn obs(name: &str, first: &[(&str, f64)], second: &[(&str, f64)]) -> Observation {
        Observation {
            replica: name.to_owned(),
            unavailable: None,
            health: Ok(200),
            first: Ok(snapshot(first)),
            second: Ok(snapshot(second)),
        }
    }

    const TRAFFIC: Policy = Policy {
        expect_traffic: true,
        max_failure_ratio: 0.1,
        interval_seconds: 10,
    };
    const QUIET: Policy = Policy {
        expect_traffic: false,
        ..TRAFFIC
    };

    #[test]
    fn a_healthy_fleet_with_traffic_passes() {
        let r = evaluate(
            &[
                obs(
                    "a",
                    &[],
                    &[(PULL_REQUEST_FORWARDED, 5.0), (ACTIONS_SUCCESS, 3.0)],
                ),
                obs("b", &[], &[(INSTALLATION_SYNC_FORWARDED, 1.0)]),
            ],
            &TRAFFIC,
        );
        assert!(r.passed(), "{:?}", r.failures);
        assert!(r.rows.iter().all(|row| row.ok));
        assert_eq!(r.rows[0].deltas.unwrap().pull_request_forwarded, 5.0);
        assert_eq!(r.rows[0].lag_seconds, Some(0.5));
    }

    #[test]
    fn without_traffic_flat_counters_pass_and_with_it_they_fail() {
        let o = [obs("a", &[], &[])];
        assert!(evaluate(&o, &QUIET).passed());
        let r = evaluate(&o, &TRAFFIC);
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        assert!(r.failures[0].starts_with("forwarding:"));
        assert!(r.failures[1].starts_with("outbox:"));
        // The replica itself is fine: the failure is the fleet's.
        assert!(r.rows[0].ok);
    }

    #[test]
    fn growing_errors_fail_the_replica_by_name() {
        let r = evaluate(&[obs("b", &[(ERRORS, 2.0)], &[(ERRORS, 5.0)])], &QUIET);
        assert_eq!(
            r.failures,
            ["b: sitg_bot_errors_total grew by 3 in 10 s (must stay flat)"]
        );
        assert!(!r.rows[0].ok);
    }

    #[test]
    fn failures_above_the_ratio_fail_and_below_pass() {
        let few = obs(
            "a",
            &[],
            &[(ACTIONS_SUCCESS, 95.0), (ACTIONS_RETRYABLE, 5.0)],
        );
        assert!(evaluate(&[few], &QUIET).passed());
        let many = obs("a", &[], &[(ACTIONS_SUCCESS, 5.0), (ACTIONS_FAILED, 5.0)]);
        let r = evaluate(&[many], &QUIET);
        assert_eq!(r.failures.len(), 1);
        assert!(
            r.failures[0].contains("5 of 10 actions"),
            "{}",
            r.failures[0]
        );
    }

    #[test]
    fn a_down_or_unhealthy_replica_fails() {
        let mut down = obs("a", &[], &[]);
        down.health = Err("connection refused".to_owned());
        down.first = Err("connection refused".to_owned());
        down.second = Err("connection refused".to_owned());
        let mut sick = obs("b", &[], &[]);
        sick.health = Ok(503);
        let r = evaluate(&[down, sick], &QUIET);
        assert_eq!(
            r.failures,
            [
                "a: /healthz: connection refused",
                "a: /metrics: connection refused",
                "b: /healthz answered 503, not 200",
            ]
        );
        assert_eq!(r.rows[0].health, "down");
        assert_eq!(r.rows[1].health, "503");
    }

    #[test]
    fn a_restart_between_scrapes_is_named() {
        let r = evaluate(&[obs("a", &[(ACTIONS_SUCCESS, 9.0)], &[])], &QUIET);
        assert_eq!(r.failures.len(), 1);
        assert!(r.failures[0].contains("restarted"), "{}", r.failures[0]);
    }

    #[test]
    fn a_page_that_is_not_a_worker_fails() {
        let mut o = obs("a", &[], &[]);
        o.second = Ok(Snapshot::parse("other_total 1\n").unwrap());
        let r = evaluate(&[o], &QUIET);
        assert!(r.failures[0].contains("lacks"), "{:?}", r.failures);
    }

    #[test]
    fn no_replica_fails() {
        assert_eq!(evaluate(&[], &QUIET).failures, ["no replica to check"]);
    }
}
