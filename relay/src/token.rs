//! Stateless access tokens: `v1.<subject>.<expiry unix seconds>.<base64url HMAC-SHA256>`.
//!
//! The relay keeps no token database. Whoever holds the key (the operator, or a service of
//! theirs) mints tokens; the relay recomputes the MAC and checks the expiry. The subject is
//! either a tenant name, which any identity may present, or the 64-hex-digit Ed25519 public
//! key of the one identity the token is for.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Version label that starts every token.
pub const TOKEN_VERSION: &str = "v1";
/// Domain separation prefix of the MAC input, so a token MAC is never valid for anything else.
const MAC_DOMAIN: &str = "pilot-relay-token-v1";
/// Shortest key the relay accepts (HMAC-SHA256 wants at least the hash output size).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest subject (tenant name or hex identity).
pub const MAX_SUBJECT_BYTES: usize = 64;
/// Longest token string that is even parsed.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Length of an identity subject: the public key in lowercase hex.
const IDENTITY_SUBJECT_BYTES: usize = 64;

/// Why a token was not accepted, or could not be minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not four dot-separated fields, bad characters, or too long.
    Malformed,
    /// The first field is not `v1`.
    UnsupportedVersion,
    /// The MAC does not match: forged, altered, or made with another key.
    BadMac,
    /// The token is genuine but its expiry has passed.
    Expired {
        /// Expiry time carried by the token (unix seconds).
        expired_at_unix: u64,
    },
    /// The token names an identity other than the one that authenticated.
    WrongIdentity,
    /// The key is shorter than [`MIN_KEY_BYTES`].
    KeyTooShort,
}

impl TokenError {
    /// Short label used in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::UnsupportedVersion => "token_version",
            Self::BadMac => "token_bad_mac",
            Self::Expired { .. } => "token_expired",
            Self::WrongIdentity => "token_wrong_identity",
            Self::KeyTooShort => "token_key_too_short",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("token is malformed"),
            Self::UnsupportedVersion => f.write_str("token version is not v1"),
            Self::BadMac => f.write_str("token MAC does not verify"),
            Self::Expired { expired_at_unix } => write!(f, "token expired at {expired_at_unix}"),
            Self::WrongIdentity => f.write_str("token is for another identity"),
            Self::KeyTooShort => write!(f, "token key must be at least {MIN_KEY_BYTES} bytes"),
        }
    }
}

impl std::error::Error for TokenError {}

/// The secret HMAC key; wiped from memory on drop and never printed.
#[derive(Clone)]
pub struct TokenKey(Zeroizing<Vec<u8>>);

impl TokenKey {
    /// Wraps raw key bytes; at least [`MIN_KEY_BYTES`] are required.
    pub fn new(bytes: Vec<u8>) -> Result<Self, TokenError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_KEY_BYTES {
            return Err(TokenError::KeyTooShort);
        }
        Ok(Self(bytes))
    }

    fn mac(&self) -> Result<HmacSha256, TokenError> {
        // HMAC accepts keys of any length, so this does not fail in practice.
        HmacSha256::new_from_slice(&self.0).map_err(|_| TokenError::KeyTooShort)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Who a verified token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSubject {
    /// A tenant; any identity may use the token.
    Tenant(String),
    /// Exactly this Ed25519 public key.
    Identity([u8; 32]),
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// Who the token was issued to.
    pub subject: TokenSubject,
    /// Expiry, unix seconds.
    pub expires_unix: u64,
}

fn subject_is_valid(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_BYTES
        && subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `subject` names an identity: exactly 64 hex digits, in either case. Uppercase
/// counts too, so that no spelling of a public key can be read as a tenant name (a tenant
/// token is usable by every identity).
fn is_identity_subject(subject: &str) -> bool {
    subject.len() == IDENTITY_SUBJECT_BYTES && subject.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_subject(subject: &str) -> TokenSubject {
    let mut key = [0u8; 32];
    if is_identity_subject(subject) && hex::decode_to_slice(subject, &mut key).is_ok() {
        return TokenSubject::Identity(key);
    }
    TokenSubject::Tenant(subject.to_owned())
}

/// Parses the expiry field, which must be the canonical decimal form that [`mint`] writes:
/// digits only (no sign), no leading zero unless the value is 0. The MAC covers the value
/// re-serialised, so without this one token would have many accepted spellings.
fn parse_canonical_expiry(expiry: &str) -> Result<u64, TokenError> {
    let canonical = expiry.bytes().all(|b| b.is_ascii_digit())
        && !expiry.is_empty()
        && (expiry == "0" || !expiry.starts_with('0'));
    if !canonical {
        return Err(TokenError::Malformed);
    }
    expiry.parse().map_err(|_| TokenError::Malformed)
}

fn mac_input(mac: &mut HmacSha256, subject: &str, expires_unix: u64) {
    mac.update(MAC_DOMAIN.as_bytes());
    mac.update(b":");
    mac.update(subject.as_bytes());
    mac.update(b":");
    mac.update(expires_unix.to_string().as_bytes());
}

/// Mints a token for `subject` (tenant name, or hex public key) valid until `expires_unix`.
/// A public key is written in lowercase hex whatever case it was given in.
pub fn mint(key: &TokenKey, subject: &str, expires_unix: u64) -> Result<String, TokenError> {
    if !subject_is_valid(subject) {
        return Err(TokenError::Malformed);
    }
    let lowered;
    let subject = if is_identity_subject(subject) {
        lowered = subject.to_ascii_lowercase();
        lowered.as_str()
    } else {
        subject
    };
    let mut mac = key.mac()?;
    mac_input(&mut mac, subject, expires_unix);
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{TOKEN_VERSION}.{subject}.{expires_unix}.{tag}"))
}

/// Verifies a token's MAC, then its expiry against `now_unix`. The MAC is checked first so
/// that a forged token never learns more than "bad MAC".
pub fn verify(key: &TokenKey, token: &str, now_unix: u64) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut fields = token.split('.');
    let (Some(version), Some(subject), Some(expiry), Some(tag), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if version != TOKEN_VERSION {
        return Err(TokenError::UnsupportedVersion);
    }
    if !subject_is_valid(subject) {
        return Err(TokenError::Malformed);
    }
    let expires_unix = parse_canonical_expiry(expiry)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;

    let mut mac = key.mac()?;
    mac_input(&mut mac, subject, expires_unix);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&tag).map_err(|_| TokenError::BadMac)?;

    if now_unix >= expires_unix {
        return Err(TokenError::Expired {
            expired_at_unix: expires_unix,
        });
    }
    Ok(TokenClaims {
        subject: parse_subject(subject),
        expires_unix,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(byte: u8) -> TokenKey {
        TokenKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn minted_token_verifies_until_expiry() {
        let token = mint(&key(1), "acme", 1_000).unwrap();
        assert!(token.starts_with("v1.acme.1000."));
        let claims = verify(&key(1), &token, 999).unwrap();
        assert_eq!(claims.subject, TokenSubject::Tenant("acme".into()));
        assert_eq!(
            verify(&key(1), &token, 1_000),
            Err(TokenError::Expired {
                expired_at_unix: 1_000
            })
        );
    }

    #[test]
    fn other_key_or_altered_fields_fail_the_mac() {
        let token = mint(&key(1), "acme", 1_000).unwrap();
        assert_eq!(verify(&key(2), &token, 0), Err(TokenError::BadMac));
        let longer = token.replacen(".1000.", ".9000.", 1);
        assert_eq!(verify(&key(1), &longer, 0), Err(TokenError::BadMac));
        let other = token.replacen(".acme.", ".acmf.", 1);
        assert_eq!(verify(&key(1), &other, 0), Err(TokenError::BadMac));
    }

    #[test]
    fn identity_subject_is_recognised() {
        let hex_key = "ab".repeat(32);
        let token = mint(&key(1), &hex_key, 10).unwrap();
        let claims = verify(&key(1), &token, 0).unwrap();
        assert_eq!(claims.subject, TokenSubject::Identity([0xab; 32]));
    }

    #[test]
    fn uppercase_hex_subject_is_minted_as_the_lowercase_identity() {
        let upper = "AB".repeat(32);
        let token = mint(&key(1), &upper, 10).unwrap();
        assert!(token.starts_with(&format!("v1.{}.", "ab".repeat(32))));
        let claims = verify(&key(1), &token, 0).unwrap();
        assert_eq!(claims.subject, TokenSubject::Identity([0xab; 32]));
    }

    #[test]
    fn uppercase_hex_subject_is_parsed_as_an_identity_not_a_tenant() {
        // A token carrying the key in uppercase (e.g. minted before subjects were
        // normalised) binds that identity instead of acting as a tenant token.
        let upper = "Ab".repeat(32);
        let mut mac = key(1).mac().unwrap();
        mac_input(&mut mac, &upper, 10);
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let token = format!("v1.{upper}.10.{tag}");
        let claims = verify(&key(1), &token, 0).unwrap();
        assert_eq!(claims.subject, TokenSubject::Identity([0xab; 32]));
    }

    #[test]
    fn non_canonical_expiry_is_malformed() {
        let token = mint(&key(1), "acme", 1_000).unwrap();
        for respelled in [".01000.", ".+1000.", ".0001000.", ". 1000.", ".1000 ."] {
            let t = token.replacen(".1000.", respelled, 1);
            assert_eq!(verify(&key(1), &t, 0), Err(TokenError::Malformed), "{t}");
        }
        assert!(verify(&key(1), &token, 0).is_ok());
        let zero = mint(&key(1), "acme", 0).unwrap();
        assert_eq!(
            verify(&key(1), &zero, 0),
            Err(TokenError::Expired { expired_at_unix: 0 })
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for t in [
            "",
            "v1",
            "v1.a.b.c",
            "v1..1.x",
            "v1.a.1.!!",
            "v1.a.1.x.y",
            "v1.a b.1.x",
        ] {
            assert_eq!(verify(&key(1), t, 0), Err(TokenError::Malformed), "{t}");
        }
        assert_eq!(
            verify(&key(1), "v2.a.1.AAAA", 0),
            Err(TokenError::UnsupportedVersion)
        );
        assert_eq!(mint(&key(1), "a.b", 1), Err(TokenError::Malformed));
    }

    #[test]
    fn short_keys_are_rejected() {
        assert_eq!(
            TokenKey::new(vec![0; 31]).map(|_| ()),
            Err(TokenError::KeyTooShort)
        );
        assert_eq!(format!("{:?}", key(7)), "TokenKey(<redacted>)");
    }
}
