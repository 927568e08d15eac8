//! Log set-up: one JSON object per line on stdout (or readable text), written off the
//! request path by a background thread.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::contract::LogFormat;

/// Installs the global subscriber. Keep the returned guard alive for the life of the
/// process: dropping it flushes buffered lines.
///
/// The level comes from `RUST_LOG`, else `default_level` (`info` for workers; also when
/// `RUST_LOG` does not parse, which is logged as `log_filter_invalid`). Lines carry a timestamp, the
/// level, an `event` name and structured context; secrets never enter them because the
/// types holding secrets print `[redacted]`.
pub fn init(format: LogFormat, default_level: &str) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // Under a log flood, lose lines rather than stall webhook handling.
        .lossy(true)
        // The queue is allocated and touched whole at start: the default 128,000 lines
        // cost 4 MB of resident memory on an idle worker. 8,192 lines hold over a
        // second of log at thousands of webhooks per second; the writer drains faster.
        .buffered_lines_limit(8_192)
        .finish(std::io::stdout());
    // A filter that does not parse must not silence the process, nor pass unnoticed.
    let (filter, invalid) = match std::env::var(crate::contract::env::RUST_LOG) {
        Ok(raw) if !raw.trim().is_empty() => match EnvFilter::try_new(&raw) {
            Ok(filter) => (filter, None),
            Err(err) => (EnvFilter::new(default_level), Some(err.to_string())),
        },
        _ => (EnvFilter::new(default_level), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        // Colour only on a terminal; piped text stays plain.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
    };
    // Already installed (tests, dev mode): the existing subscriber keeps working.
    drop(result);
    if let Some(error) = invalid {
        tracing::warn!(
            event = "log_filter_invalid",
            variable = crate::contract::env::RUST_LOG,
            error = %error,
            default_level,
            "RUST_LOG does not parse; logging at the default level"
        );
    }
    guard
}
