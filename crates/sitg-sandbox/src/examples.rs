//! GitHub's own example webhook payloads, from the npm package
//! `@octokit/webhooks-examples` (fetched by `scripts/fetch-fixtures.sh`, never copied
//! into the repository), and a signer that delivers them the way GitHub does.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Where `scripts/fetch-fixtures.sh` installs the package.
pub const DEFAULT_PACKAGE_DIR: &str =
    "/var/cache/sitg-bot/npm/node_modules/@octokit/webhooks-examples";

/// The package directory: `SITG_WEBHOOK_EXAMPLES` when set, else [`DEFAULT_PACKAGE_DIR`].
pub fn default_dir() -> PathBuf {
    std::env::var_os("SITG_WEBHOOK_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PACKAGE_DIR))
}

/// The examples could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    #[error(
        "GitHub's example payloads are not at {0}: run scripts/fetch-fixtures.sh (npm install of @octokit/webhooks-examples) or set SITG_WEBHOOK_EXAMPLES"
    )]
    Missing(PathBuf),
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not the expected index: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct IndexEntry {
    name: String,
    examples: Vec<serde_json::Value>,
}

/// One example: the event name (`X-GitHub-Event`) and the payload.
#[derive(Debug, Clone)]
pub struct Example {
    pub event: String,
    pub payload: serde_json::Value,
}

impl Example {
    /// The payload's `action`, if it has one.
    pub fn action(&self) -> Option<&str> {
        self.payload.get("action").and_then(|a| a.as_str())
    }

    /// The payload as GitHub sends it (compact JSON).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload).unwrap_or_default()
    }
}

/// Every example of the package's `api.github.com/index.json`.
#[derive(Debug, Clone)]
pub struct Examples {
    pub all: Vec<Example>,
}

impl Examples {
    /// Reads `{package_dir}/api.github.com/index.json`.
    pub fn load(package_dir: &Path) -> Result<Self, ExamplesError> {
        let path = package_dir.join("api.github.com").join("index.json");
        if !path.exists() {
            return Err(ExamplesError::Missing(package_dir.to_path_buf()));
        }
        let text = std::fs::read(&path).map_err(|source| ExamplesError::Read {
            path: path.clone(),
            source,
        })?;
        let index: Vec<IndexEntry> = serde_json::from_slice(&text)
            .map_err(|source| ExamplesError::Parse { path, source })?;
        let all = index
            .into_iter()
            .flat_map(|entry| {
                let event = entry.name;
                entry.examples.into_iter().map(move |payload| Example {
                    event: event.clone(),
                    payload,
                })
            })
            .collect();
        Ok(Self { all })
    }

    /// The examples of one event, optionally of one action.
    pub fn of<'a>(
        &'a self,
        event: &'a str,
        action: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Example> + 'a {
        self.all
            .iter()
            .filter(move |e| e.event == event && (action.is_none() || e.action() == action))
    }
}

/// `X-Hub-Signature-256` for `body`, computed as GitHub does (contract §3). Written
/// here on its own, apart from the worker's verifier, so tests check one against the
/// other.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The answer of a worker to one delivery.
#[derive(Debug, Clone)]
pub struct DeliveryAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// POSTs `body` to `url` as GitHub would: `X-GitHub-Event`, `X-GitHub-Delivery`,
/// `X-Hub-Signature-256` (with `secret`), `content-type: application/json`.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    event: &str,
    delivery_id: &str,
    body: Vec<u8>,
) -> Result<DeliveryAnswer, reqwest::Error> {
    let signature = github_signature(secret, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/sandbox")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery_id)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(DeliveryAnswer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_vector_matches() {
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn a_missing_package_says_how_to_fetch_it() {
        let err = Examples::load(Path::new("/nonexistent/examples")).unwrap_err();
        assert!(
            err.to_string().contains("scripts/fetch-fixtures.sh"),
            "{err}"
        );
    }
}
