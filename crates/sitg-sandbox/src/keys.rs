//! RSA key pairs for a simulated GitHub App.
//!
//! GitHub hands an App's private key out as a PKCS#1 PEM ("BEGIN RSA PRIVATE KEY");
//! operators sometimes convert it to PKCS#8 ("BEGIN PRIVATE KEY"). Both forms are
//! produced so tests can feed either to the worker. Keys live in memory only.

use getrandom::SysRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{PrivateKey, PublicKey};

use crate::secret::SecretString;

/// Modulus size of GitHub App keys.
pub const APP_KEY_BITS: usize = 2048;

/// A freshly generated App key pair, all PEM-encoded with `\n` line endings.
#[derive(Clone, Debug)]
pub struct AppKeyPair {
    /// PKCS#1 private key, `-----BEGIN RSA PRIVATE KEY-----` (GitHub's download format).
    pub private_pem: SecretString,
    /// The same private key as PKCS#8, `-----BEGIN PRIVATE KEY-----`.
    pub private_pkcs8_pem: SecretString,
    /// SubjectPublicKeyInfo public key, `-----BEGIN PUBLIC KEY-----`; what
    /// [`crate::github::GitHubSimConfig::app_public_key_pem`] expects.
    pub public_pem: String,
}

/// Why a key pair could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// RSA key generation failed (entropy source or prime search).
    #[error("RSA key generation failed: {0}")]
    Generate(#[source] rsa::Error),
    /// PKCS#1 encoding of the private key failed.
    #[error("PKCS#1 encoding failed: {0}")]
    Pkcs1(#[source] rsa::pkcs1::Error),
    /// PKCS#8 encoding of the private or public key failed.
    #[error("PKCS#8 encoding failed: {0}")]
    Pkcs8(String),
}

/// Generates a new 2048-bit RSA App key from the OS random source.
///
/// Takes from a few hundred milliseconds to a few seconds; generate once per test
/// binary where possible.
///
/// Errors: [`KeyError`] when generation or encoding fails.
pub fn generate_app_key() -> Result<AppKeyPair, KeyError> {
    let private = PrivateKey::new(&mut SysRng, APP_KEY_BITS).map_err(KeyError::Generate)?;
    let public = PublicKey::from(&private);
    let pkcs1 = private
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(KeyError::Pkcs1)?;
    let pkcs8 = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
    Ok(AppKeyPair {
        private_pem: SecretString::new(pkcs1.as_str()),
        private_pkcs8_pem: SecretString::new(pkcs8.as_str()),
        public_pem,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
    use rsa::traits::PublicKeyParts;

    use super::*;

    /// One key per test binary: generation is the slow part of these tests.
    pub(crate) fn shared_key() -> &'static AppKeyPair {
        static KEY: OnceLock<AppKeyPair> = OnceLock::new();
        KEY.get_or_init(|| generate_app_key().expect("key generation"))
    }

    #[test]
    fn all_three_pems_describe_one_2048_bit_key() {
        let pair = shared_key();
        assert!(
            pair.private_pem
                .expose()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        assert!(
            pair.private_pkcs8_pem
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));

        let from_pkcs1 = PrivateKey::from_pkcs1_pem(pair.private_pem.expose()).unwrap();
        let from_pkcs8 = PrivateKey::from_pkcs8_pem(pair.private_pkcs8_pem.expose()).unwrap();
        let public = PublicKey::from_public_key_pem(&pair.public_pem).unwrap();
        assert_eq!(from_pkcs1, from_pkcs8);
        assert_eq!(PublicKey::from(&from_pkcs1), public);
        assert_eq!(public.size() * 8, APP_KEY_BITS);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let shown = format!("{:?}", shared_key());
        assert!(!shown.contains("PRIVATE KEY"));
        assert!(shown.contains("[redacted]"));
    }
}
