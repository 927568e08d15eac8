//! `sitg-bot probe URL`: one HTTP GET that succeeds on a 2xx answer.
//!
//! The image is distroless (no shell, no curl), so the chart's `helm test` Pod runs the
//! binary itself to check that the operator answers `/healthz`.

use std::time::Duration;

/// Arguments of `sitg-bot probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// URL to GET, e.g. `http://sitg-bot.sitg-system.svc:8080/healthz`.
    pub url: url::Url,
    /// Seconds the whole request may take, connection included (1–300).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_seconds: u64,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer: connection refused, DNS failure, timeout.
    #[error("GET {url}: no answer: {source}")]
    Unreachable {
        url: url::Url,
        #[source]
        source: reqwest::Error,
    },
    /// An answer outside 2xx.
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: url::Url,
        status: reqwest::StatusCode,
    },
}

/// GETs `args.url`; Ok with the HTTP status on 2xx.
///
/// # Errors
/// [`ProbeError::Unreachable`] without an answer within the timeout,
/// [`ProbeError::Status`] on any other status.
pub async fn run(args: &ProbeArgs) -> Result<reqwest::StatusCode, ProbeError> {
    crate::tls::install_crypto_provider();
    let unreachable = |source| ProbeError::Unreachable {
        url: args.url.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_seconds))
        .build()
        .map_err(unreachable)?;
    let response = client
        .get(args.url.clone())
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Status {
            url: args.url.clone(),
            status,
        })
    }
}
