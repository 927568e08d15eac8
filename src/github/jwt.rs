//! GitHub App authentication: the App's RS256 JSON Web Token.
//!
//! Per GitHub's docs ("Generating a JSON Web Token for a GitHub App"): claims `iat`,
//! `exp` (at most 10 minutes after `iat`) and `iss` (the App id), signed with RS256.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// Seconds `iat` is set in the past, because the host's clock may run ahead of GitHub's.
pub(crate) const IAT_BACKDATE_SECS: u64 = 60;
/// JWT lifetime from `iat`; GitHub rejects more than 600 s.
pub(crate) const JWT_LIFETIME_SECS: u64 = 9 * 60;
/// A cached JWT is replaced this long before its `exp`.
pub(crate) const JWT_REFRESH_MARGIN_SECS: u64 = 60;

/// The App private key could not be used. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing but whitespace was given.
    #[error("the GitHub App private key is empty")]
    Empty,
    /// Not a PEM block holding an RSA private key.
    #[error(
        "the GitHub App private key is not a PEM-encoded RSA private key (\"BEGIN RSA PRIVATE KEY\" PKCS#1 or \"BEGIN PRIVATE KEY\" PKCS#8)"
    )]
    NotRsaPrivateKeyPem,
    /// PEM parsed but signing with it failed (e.g. a public key or a damaged private key).
    #[error("the GitHub App private key cannot sign an RS256 JWT")]
    Unusable,
    /// A passphrase-protected PEM (`ENCRYPTED PRIVATE KEY`, or `Proc-Type: 4,ENCRYPTED`).
    #[error(
        "the GitHub App private key is encrypted; give the unencrypted PEM that GitHub generates (openssl rsa -in key.pem -out plain.pem)"
    )]
    Encrypted,
    /// An RSA modulus shorter than [`MIN_KEY_BITS`].
    #[error(
        "the GitHub App private key has {bits} bits; GitHub App keys have at least 2048 (generate a new one in the App's settings)"
    )]
    TooShort { bits: usize },
}

/// GitHub generates 2048-bit App keys; a shorter key is not one of them.
pub const MIN_KEY_BITS: usize = 2048;

/// Parses the App's private key once, for signing App JWTs.
///
/// Accepts PEM with real newlines or with literal `\n` escapes (as env files and
/// secret stores often carry it), PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
/// The key is proved usable by signing one throw-away JWT, so a bad key is caught at
/// start-up rather than at the first action.
///
/// # Errors
/// [`KeyError`], whose text never contains key material.
pub fn parse_app_private_key(pem: &SecretString) -> Result<EncodingKey, KeyError> {
    let normalised = normalise_pem(pem.expose());
    if normalised.is_empty() {
        return Err(KeyError::Empty);
    }
    if normalised.contains("ENCRYPTED") {
        return Err(KeyError::Encrypted);
    }
    let key = EncodingKey::from_rsa_pem(normalised.as_bytes())
        .map_err(|_| KeyError::NotRsaPrivateKeyPem)?;
    if let Some(bits) = modulus_bits(&normalised) {
        if bits < MIN_KEY_BITS {
            return Err(KeyError::TooShort { bits });
        }
    }
    sign(&key, &app_jwt_claims(0, 0)).map_err(|_| KeyError::Unusable)?;
    Ok(key)
}

/// Bits of the RSA modulus of a PKCS#1 or PKCS#8 PEM, when the `rsa` crate reads it.
fn modulus_bits(pem: &str) -> Option<usize> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    rsa::PrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|_| ()))
        .ok()
        .and_then(|key| usize::try_from(key.n().bit_width()).ok())
}

/// Undoes `\n` escapes and surrounding whitespace or quotes left by env files.
fn normalise_pem(raw: &str) -> String {
    let trimmed = raw.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(trimmed);
    unquoted.replace("\\r\\n", "\n").replace("\\n", "\n")
}

/// Claims of a GitHub App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppJwtClaims {
    /// Issued at, UTC epoch seconds (backdated by [`IAT_BACKDATE_SECS`]).
    pub iat: u64,
    /// Expiry, UTC epoch seconds.
    pub exp: u64,
    /// The App id, as a string (GitHub accepts the App id or the client id here).
    pub iss: String,
}

/// The claims for a JWT signed at `now_unix_secs`.
pub(crate) fn app_jwt_claims(app_id: u64, now_unix_secs: u64) -> AppJwtClaims {
    let iat = now_unix_secs.saturating_sub(IAT_BACKDATE_SECS);
    AppJwtClaims {
        iat,
        exp: iat + JWT_LIFETIME_SECS,
        iss: app_id.to_string(),
    }
}

fn sign(key: &EncodingKey, claims: &AppJwtClaims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, key)
}

pub(crate) fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct CachedJwt {
    token: SecretString,
    refresh_after: u64,
}

/// Signs App JWTs with a key parsed once, reusing each JWT until shortly before `exp`.
pub(crate) struct AppJwtSigner {
    app_id: u64,
    key: EncodingKey,
    cached: Mutex<Option<CachedJwt>>,
}

impl AppJwtSigner {
    pub(crate) fn new(app_id: u64, key: EncodingKey) -> Self {
        Self {
            app_id,
            key,
            cached: Mutex::new(None),
        }
    }

    /// A JWT valid for at least [`JWT_REFRESH_MARGIN_SECS`] more.
    ///
    /// Signing happens under the lock (no `.await` inside), so concurrent callers share
    /// one signature.
    pub(crate) fn bearer(&self) -> Result<SecretString, jsonwebtoken::errors::Error> {
        self.bearer_at(now_unix_secs())
    }

    /// [`Self::bearer`] with the wall clock given, in UTC epoch seconds.
    pub(crate) fn bearer_at(&self, now: u64) -> Result<SecretString, jsonwebtoken::errors::Error> {
        let mut cached = self.cached.lock();
        if let Some(c) = cached.as_ref().filter(|c| now < c.refresh_after) {
            return Ok(c.token.clone());
        }
        let claims = app_jwt_claims(self.app_id, now);
        let token = SecretString::new(sign(&self.key, &claims)?);
        crate::redact::remember_rotating("app_jwt", token.expose());
        *cached = Some(CachedJwt {
            token: token.clone(),
            refresh_after: claims.exp - JWT_REFRESH_MARGIN_SECS,
        });
        Ok(token)
    }

    /// Forgets the cached JWT, e.g. after GitHub answered 401 to it.
    pub(crate) fn evict(&self) {
        *self.cached.lock() = None;
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Throw-away RSA keys generated at test time (never committed).

    use std::sync::OnceLock;

    use rsa::PrivateKey;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    pub(crate) struct TestKey {
        pub pkcs1_pem: String,
        pub pkcs8_pem: String,
        pub public_pem: String,
    }

    /// One 2048-bit key per test binary: generation is the slow part.
    pub(crate) fn test_key() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let private = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
            TestKey {
                pkcs1_pem: private.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
                pkcs8_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
                public_pem: private
                    .to_public_key()
                    .to_pkcs1_pem(LineEnding::LF)
                    .unwrap(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::test_keys::test_key;
    use super::*;

    fn decode(token: &str) -> AppJwtClaims {
        let key = DecodingKey::from_rsa_pem(test_key().public_pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&["4242"]);
        validation.set_required_spec_claims(&["iat", "exp", "iss"]);
        jsonwebtoken::decode::<AppJwtClaims>(token, &key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn claims_are_backdated_and_short_lived() {
        let c = app_jwt_claims(4242, 1_700_000_000);
        assert_eq!(c.iss, "4242");
        assert_eq!(c.iat, 1_700_000_000 - 60);
        assert!(c.exp > 1_700_000_000 && c.exp - c.iat <= 600);
    }

    #[test]
    fn signed_jwt_verifies_with_the_public_key() {
        let key = parse_app_private_key(&SecretString::new(test_key().pkcs1_pem.clone())).unwrap();
        let signer = AppJwtSigner::new(4242, key);
        let before = now_unix_secs();
        let token = signer.bearer().unwrap();
        let claims = decode(token.expose());
        assert_eq!(claims.iss, "4242");
        assert!(claims.iat <= before - IAT_BACKDATE_SECS + 1 && claims.iat + 120 >= before);
        assert!(claims.exp - claims.iat <= 600);
        assert!(claims.exp > before + 60, "usable for a while after signing");
    }

    #[test]
    fn jwt_is_reused_until_a_minute_before_exp_or_eviction() {
        let key = parse_app_private_key(&SecretString::new(test_key().pkcs8_pem.clone())).unwrap();
        let signer = AppJwtSigner::new(4242, key);
        let t = 1_700_000_000;
        let first = signer.bearer_at(t).unwrap();
        // iat differs with the signing second, so a re-signed JWT would differ.
        let refresh_at = t - IAT_BACKDATE_SECS + JWT_LIFETIME_SECS - JWT_REFRESH_MARGIN_SECS;
        assert_eq!(signer.bearer_at(refresh_at - 1).unwrap(), first);
        let second = signer.bearer_at(refresh_at).unwrap();
        assert_ne!(second, first);
        assert_eq!(signer.bearer_at(refresh_at + 5).unwrap(), second);
        signer.evict();
        assert_ne!(signer.bearer_at(refresh_at + 5).unwrap(), second);
    }

    #[test]
    fn pkcs1_pkcs8_and_escaped_newlines_are_accepted() {
        let k = test_key();
        for pem in [&k.pkcs1_pem, &k.pkcs8_pem] {
            assert!(parse_app_private_key(&SecretString::new(pem.clone())).is_ok());
            let escaped = pem.trim_end().replace('\n', "\\n");
            assert!(!escaped.contains('\n'));
            assert!(parse_app_private_key(&SecretString::new(escaped.clone())).is_ok());
            let quoted = format!("\"{escaped}\"\n");
            assert!(parse_app_private_key(&SecretString::new(quoted)).is_ok());
            let crlf = pem.replace('\n', "\r\n");
            assert!(parse_app_private_key(&SecretString::new(crlf)).is_ok());
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let k = test_key();
        assert_eq!(
            parse_app_private_key(&SecretString::new("  \n")).unwrap_err(),
            KeyError::Empty
        );
        let not_pem = "MIIEowIBAAKCAQEAsecretsecretsecret";
        let err = parse_app_private_key(&SecretString::new(not_pem)).unwrap_err();
        assert_eq!(err, KeyError::NotRsaPrivateKeyPem);
        assert!(!err.to_string().contains("secretsecret"));
        // A public key parses as PEM but cannot sign.
        let err = parse_app_private_key(&SecretString::new(k.public_pem.clone())).unwrap_err();
        assert_eq!(err, KeyError::Unusable);
        // A damaged body.
        let damaged = k.pkcs1_pem.replacen("MII", "MIX", 1);
        assert!(parse_app_private_key(&SecretString::new(damaged)).is_err());
    }

    #[test]
    fn encrypted_and_short_keys_are_named_as_such() {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
        let short = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        assert_eq!(
            parse_app_private_key(&SecretString::new(short)).unwrap_err(),
            KeyError::TooShort { bits: 1024 }
        );
        // The 2048-bit keys GitHub generates pass, in both encodings.
        let k = test_key();
        for pem in [&k.pkcs1_pem, &k.pkcs8_pem] {
            assert!(parse_app_private_key(&SecretString::new(pem.clone())).is_ok());
        }
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0w\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        for pem in [encrypted, legacy] {
            let err = parse_app_private_key(&SecretString::new(pem)).unwrap_err();
            assert_eq!(err, KeyError::Encrypted);
            assert!(err.to_string().contains("encrypted"));
        }
    }
}
