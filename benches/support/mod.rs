//! Inputs shared by the benchmarks: GitHub's example `pull_request.opened` delivery.

use sitg_sandbox::examples::{Examples, default_dir};

/// The size the targets speak of ("a 25 KB signed pull_request.opened").
pub const BODY_BYTES: usize = 25_000;

/// GitHub's first example `pull_request.opened` delivery that names an installation,
/// serialised compactly as GitHub sends it (about 23.6 KB).
///
/// Panics with the fetch command when the npm package is not installed.
pub fn opened_example() -> Vec<u8> {
    let dir = default_dir();
    let examples = Examples::load(&dir).unwrap_or_else(|e| {
        panic!(
            "benchmarks need GitHub's example payloads: {e}\n\
             (install with: npm install --prefix /var/cache/sitg-bot/npm @octokit/webhooks-examples)"
        )
    });
    examples
        .of("pull_request", Some("opened"))
        .find(|e| e.payload.get("installation").is_some())
        .map(|e| e.body())
        .unwrap_or_else(|| {
            panic!(
                "no pull_request.opened example with an installation in {}",
                dir.display()
            )
        })
}

/// [`opened_example`] padded with trailing spaces (still valid JSON) to [`BODY_BYTES`].
pub fn opened_25k() -> Vec<u8> {
    let mut body = opened_example();
    if body.len() < BODY_BYTES {
        body.resize(BODY_BYTES, b' ');
    }
    body
}
