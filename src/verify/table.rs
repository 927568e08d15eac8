//! The per-replica table `sitg-bot verify` prints.

use std::fmt::Write;

use super::checklist::{Report, Row};

const HEADER: [&str; 10] = [
    "REPLICA",
    "HEALTHZ",
    "PR FWD",
    "INST FWD",
    "OUTBOX OK",
    "RETRYABLE",
    "FAILED",
    "ERRORS",
    "LAG S",
    "CHECK",
];

fn cells(row: &Row) -> [String; 10] {
    let delta = |f: fn(&super::checklist::Deltas) -> f64| {
        row.deltas
            .as_ref()
            .map_or("-".to_owned(), |d| format!("+{}", f(d)))
    };
    [
        row.replica.clone(),
        row.health.clone(),
        delta(|d| d.pull_request_forwarded),
        delta(|d| d.installation_sync_forwarded),
        delta(|d| d.success),
        delta(|d| d.retryable),
        delta(|d| d.failed),
        delta(|d| d.errors),
        row.lag_seconds
            .map_or("-".to_owned(), |l| format!("{l:.1}")),
        if row.ok { "ok" } else { "FAIL" }.to_owned(),
    ]
}

/// The table (one line per replica; counter columns are the change between the two
/// scrapes, `LAG S` the gauge at the second) followed by the verdict and each failure.
pub fn render(report: &Report, interval_seconds: u64) -> String {
    let rows: Vec<[String; 10]> = report.rows.iter().map(cells).collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let _ = write!(text, "{cell:<w$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADER.map(str::to_owned));
    for row in &rows {
        line(row);
    }
    let _ = writeln!(out, "(counters: change over {interval_seconds} s)");
    if report.passed() {
        out.push_str("checklist: passed\n");
    } else {
        let _ = writeln!(out, "checklist: FAILED ({}):", report.failures.len());
        for failure in &report.failures {
            let _ = writeln!(out, "  - {failure}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::checklist::Deltas;

    #[test]
    fn columns_line_up_and_failures_are_listed() {
        let report = Report {
            rows: vec![
                Row {
                    replica: "http://127.0.0.1:3101".to_owned(),
                    health: "200".to_owned(),
                    deltas: Some(Deltas {
                        success: 12.0,
                        ..Deltas::default()
                    }),
                    lag_seconds: Some(0.0),
                    ok: true,
                },
                Row {
                    replica: "b".to_owned(),
                    health: "down".to_owned(),
                    deltas: None,
                    lag_seconds: None,
                    ok: false,
                },
            ],
            failures: vec!["b: /healthz: refused".to_owned()],
        };
        let text = render(&report, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("REPLICA                HEALTHZ  PR FWD"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("http://127.0.0.1:3101  200      +0"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("+12        +0         +0      +0      0.0    ok"),
            "{text}"
        );
        assert!(lines[2].ends_with("FAIL"), "{text}");
        assert_eq!(lines[4], "checklist: FAILED (1):");
        assert_eq!(lines[5], "  - b: /healthz: refused");
    }
}
