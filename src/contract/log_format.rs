//! The `LOG_FORMAT` values, shared by the log set-up and every role's configuration.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default; what log pipelines ingest).
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

impl LogFormat {
    /// The `LOG_FORMAT` value: `json` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }

    /// Parses a `LOG_FORMAT` value (exact, lower case); `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "json" => Some(Self::Json),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}
