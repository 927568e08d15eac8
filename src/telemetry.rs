//! Log set-up: one JSON object per line on stdout (or readable text), written off the
//! request path by background threads, with every registered credential redacted
//! ([`crate::redact`]).
//!
//! Two queues feed stdout:
//!
//! - the **outbox records** (every event of `sitg_bot::outbox::*`: `outbox_claimed` with
//!   the claimed ids, `action_reported`, `action_left_claimed`, the claim journal's
//!   lines) go through a lossless queue of [`OUTBOX_QUEUE_LINES`] lines. They are the
//!   only record an operator has for releasing actions after a SIGKILL, so none is ever
//!   dropped: when stdout is so slow that the queue is full, the outbox task writing the
//!   record waits for stdout instead. Their volume is bounded by the actions claimed
//!   (a few lines per action), never by what clients send, so no client can make the
//!   worker wait on its log;
//! - **everything else** (webhook requests, GitHub and backend calls, …) goes through a
//!   lossy queue of [`GENERAL_QUEUE_LINES`] lines: under a log flood or a stalled stdout
//!   its lines are dropped rather than stalling webhook handling, and counted in
//!   `sitg_bot_log_lines_dropped_total` ([`register_metrics`]).
//!
//! Both queues write whole lines to the same stdout; lines of the two queues may
//! interleave out of order (each carries its timestamp).

use std::io::Write;
use std::sync::OnceLock;

use tracing::Metadata;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::contract::LogFormat;

/// Lines the lossy queue holds. It is allocated and touched whole at start: the
/// default 128,000 lines cost 4 MB of resident memory on an idle worker. 8,192 lines
/// hold over a second of log at thousands of webhooks per second; the writer drains
/// faster.
pub const GENERAL_QUEUE_LINES: usize = 8_192;

/// Lines the lossless outbox queue holds before an outbox task waits for stdout: the
/// records of hundreds of claims of 25 actions.
pub const OUTBOX_QUEUE_LINES: usize = 16_384;

/// Targets whose events are never dropped.
const LOSSLESS_TARGET_PREFIX: &str = "sitg_bot::outbox";

/// Lines dropped by the lossy queue since start, once [`init`] ran.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log writer threads alive; dropping it flushes the buffered lines.
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    _general: WorkerGuard,
    _outbox: WorkerGuard,
}

/// Whether an event goes through the lossless queue.
fn lossless(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with(LOSSLESS_TARGET_PREFIX)
}

/// Stdout behind the redaction of every line ([`crate::redact::redact`]). The log
/// queues hand each formatted line over in one `write_all`, so a credential is never
/// split across two calls.
struct RedactingStdout;

impl Write for RedactingStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` walks byte by
        // byte even when all is valid, which the formatter's lines always are. Measured
        // at about 2,000 instructions per log line (scripts/bench/profile.sh callgrind).
        let text = match std::str::from_utf8(buf) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(buf),
        };
        let redacted = crate::redact::redact(&text);
        std::io::stdout().lock().write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Installs the global subscriber. Keep the returned guard alive for the life of the
/// process: dropping it flushes buffered lines.
///
/// The level comes from `RUST_LOG`, else `default_level` (`info` for workers; also when
/// `RUST_LOG` does not parse, which is logged as `log_filter_invalid`). Lines carry a timestamp, the
/// level, an `event` name and structured context; secrets never enter them because the
/// types holding secrets print `[redacted]`, and every line is redacted of the
/// credentials registered in [`crate::redact`] before it is written.
pub fn init(format: LogFormat, default_level: &str) -> LogGuard {
    let (general, general_guard) = NonBlockingBuilder::default()
        // Under a log flood, lose lines rather than stall webhook handling.
        .lossy(true)
        .buffered_lines_limit(GENERAL_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(RedactingStdout);
    let (outbox, outbox_guard) = NonBlockingBuilder::default()
        // The outbox records are never dropped (see the module documentation).
        .lossy(false)
        .buffered_lines_limit(OUTBOX_QUEUE_LINES)
        .thread_name("log-writer-outbox")
        .finish(RedactingStdout);
    let _ = DROPPED.set(general.error_counter());
    let writer = outbox.with_filter(lossless).or_else(general);
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
    LogGuard {
        _general: general_guard,
        _outbox: outbox_guard,
    }
}

/// Registers `sitg_bot_log_lines_dropped_total` (counter: log lines the lossy queue
/// dropped because stdout did not keep up; outbox records are never among them) in
/// `registry`. Reads 0 when [`init`] did not run in this process.
///
/// # Errors
/// The registry's error when the name is already registered.
pub fn register_metrics(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    registry.register(Box::new(DroppedLines::new()?))
}

struct DroppedLines {
    desc: prometheus::core::Desc,
}

impl DroppedLines {
    const NAME: &'static str = "sitg_bot_log_lines_dropped_total";
    const HELP: &'static str =
        "Log lines dropped because stdout did not keep up (never outbox records)";

    fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            desc: prometheus::core::Desc::new(
                Self::NAME.to_owned(),
                Self::HELP.to_owned(),
                Vec::new(),
                std::collections::HashMap::new(),
            )?,
        })
    }
}

impl prometheus::core::Collector for DroppedLines {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let dropped = DROPPED.get().map_or(0, ErrorCounter::dropped_lines);
        let counter = prometheus::IntCounter::new(Self::NAME, Self::HELP);
        match counter {
            Ok(counter) => {
                counter.inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
                prometheus::core::Collector::collect(&counter)
            }
            Err(_) => Vec::new(),
        }
    }
}
