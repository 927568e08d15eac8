//! Which build this process runs, as Prometheus sees it: the `sitg_bot_build_info`
//! gauge and the standard `process_*` metrics, registered by the worker and the operator
//! alike so one dashboard query finds every version running.

use prometheus::{IntGaugeVec, Opts, Registry};

/// The crate version (`Cargo.toml`), e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source revision the binary was built from: a 12-digit git commit, the image
/// build's `SITG_BUILD_REVISION`, or `unknown` (see `build.rs`).
pub const REVISION: &str = env!("SITG_BUILD_REVISION");

/// Registers `sitg_bot_build_info{version,revision}` (always 1) and, on Linux, the
/// `process_*` metrics of this process (CPU seconds, resident memory bytes, open file
/// descriptors and their limit, start time) into `registry`.
///
/// # Errors
/// A [`prometheus::Error`] if either is already registered in `registry`.
pub fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    let info = IntGaugeVec::new(
        Opts::new(
            "sitg_bot_build_info",
            "Always 1; the labels say which build of sitg-bot this process runs.",
        ),
        &["version", "revision"],
    )?;
    info.with_label_values(&[VERSION, REVISION]).set(1);
    registry.register(Box::new(info))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn build_info_and_process_metrics_are_exposed() {
        let registry = Registry::new();
        register(&registry).expect("registered");
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encoded");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains(&format!(
                "sitg_bot_build_info{{revision=\"{REVISION}\",version=\"{VERSION}\"}} 1"
            )),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_start_time_seconds "), "{text}");
        assert!(!REVISION.is_empty());
    }
}
