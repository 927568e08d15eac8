//! `sitg-bot release --worker-id ID ACTION_ID…`: releases claimed actions by hand, for
//! a worker whose claim journal was lost with its node (ids from its `outbox_claimed`
//! log lines). Each action is reported `RETRYABLE_FAILURE` / `RELEASED_BY_OPERATOR`
//! ([`FailureCode::ReleasedByOperator`])
//! with that worker id, which puts it back to `PENDING` (contract §1.5).

use crate::backend::types::Outcome;
use crate::backend::{BackendClient, BackendConfig, CallPolicy};
use crate::contract::FailureCode;
use crate::secret::SecretString;

/// Options of `sitg-bot release`; the backend settings come from the worker's variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ReleaseArgs {
    /// The `WORKER_ID` that claimed the actions (the `worker_id` of its log lines).
    #[arg(long)]
    pub worker_id: String,
    /// Action ids to release (`action_ids` of the `outbox_claimed` log line).
    #[arg(required = true, num_args = 1..)]
    pub action_ids: Vec<String>,
    /// `BACKEND_BASE_URL`.
    #[arg(long, env = "BACKEND_BASE_URL")]
    pub backend_base_url: url::Url,
    /// `BACKEND_BOT_KEY_ID`.
    #[arg(long, env = "BACKEND_BOT_KEY_ID")]
    pub backend_bot_key_id: String,
    /// `BACKEND_INTERNAL_HMAC_SECRET`.
    #[arg(long, env = "BACKEND_INTERNAL_HMAC_SECRET", hide_env_values = true, value_parser = secret)]
    pub backend_internal_hmac_secret: SecretString,
    /// `BACKEND_SERVICE_TOKEN`, when the backend wants one.
    #[arg(long, env = "BACKEND_SERVICE_TOKEN", hide_env_values = true, value_parser = secret)]
    pub backend_service_token: Option<SecretString>,
}

fn secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::new(raw.trim()))
}

/// What became of one action.
#[derive(Debug)]
pub struct Released {
    /// The action id as given.
    pub action_id: String,
    /// The backend's new status (`PENDING`), or why it refused (409: not claimed by
    /// that worker, already reported).
    pub result: Result<String, String>,
}

/// Why the command could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("backend client: {0}")]
    Backend(#[from] crate::backend::BackendSetupError),
}

/// Reports each action in turn (each one's signature differs, so no two collide).
///
/// # Errors
/// The backend client could not be built; per-action failures are in the results.
pub async fn run(args: ReleaseArgs) -> Result<Vec<Released>, ReleaseError> {
    let backend = BackendClient::new(
        BackendConfig {
            base_url: args
                .backend_base_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            key_id: args.backend_bot_key_id.clone(),
            hmac_secret: args.backend_internal_hmac_secret.clone(),
            service_token: args.backend_service_token.clone().filter(|t| !t.is_empty()),
            user_agent: crate::worker::USER_AGENT.to_owned(),
        },
        &prometheus::Registry::new(),
    )?;
    let request = BackendClient::result_request(
        &args.worker_id,
        Outcome::RetryableFailure,
        Some(FailureCode::ReleasedByOperator.as_str()),
        Some("released by hand with sitg-bot release"),
    );
    let mut out = Vec::with_capacity(args.action_ids.len());
    for action_id in &args.action_ids {
        let result = backend
            .report_result(action_id, &request, CallPolicy::OUTBOX)
            .await
            .map(|status| status.map_or_else(|| "accepted".to_owned(), |s| s.status))
            .map_err(|e| e.to_string());
        out.push(Released {
            action_id: action_id.clone(),
            result,
        });
    }
    Ok(out)
}
