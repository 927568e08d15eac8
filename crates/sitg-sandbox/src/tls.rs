//! TLS set-up of the simulators' HTTP clients (example deliveries, tests).

/// Installs rustls' `ring` crypto provider as the process default.
///
/// reqwest is built without a bundled provider. Safe to call more than once: later
/// calls keep the first provider.
pub fn install_crypto_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
