//! The authentication exchange at the start of a `/v1/relay` session (see `PROTOCOL.md`).
//!
//! The relay sends a challenge with a fresh random nonce and its clock; the client proves
//! possession of an Ed25519 key by signing `pilot-relay-auth-v1:<nonce hex>:<ts>` and may
//! attach an access token. Because the nonce is new for every connection, a recorded reply is
//! useless on any other connection.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::token::{self, TokenError, TokenKey, TokenSubject};

/// Domain separation label at the start of the signed string.
pub const AUTH_DOMAIN: &str = "pilot-relay-auth-v1";
/// Bytes of randomness in a challenge nonce.
pub const NONCE_BYTES: usize = 32;
/// Longest auth reply the relay parses.
pub const MAX_AUTH_REPLY_BYTES: usize = 1024;

/// First message of a session, relay → client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Challenge {
    /// Always `"challenge"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// [`NONCE_BYTES`] random bytes, lowercase hex.
    pub nonce: String,
    /// The relay's clock, unix seconds.
    pub ts: u64,
}

impl Challenge {
    /// A challenge with a fresh nonce drawn from `rng`.
    pub fn new(rng: &mut impl CryptoRngCore, now_unix: u64) -> Self {
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        Self {
            kind: "challenge".to_owned(),
            nonce: hex::encode(nonce),
            ts: now_unix,
        }
    }

    /// The exact string the client signs.
    pub fn signed_string(&self) -> String {
        signed_string(&self.nonce, self.ts)
    }
}

/// `pilot-relay-auth-v1:<nonce hex>:<ts decimal>`, the string a client signs.
pub fn signed_string(nonce_hex: &str, ts: u64) -> String {
    format!("{AUTH_DOMAIN}:{nonce_hex}:{ts}")
}

/// The client's answer to a [`Challenge`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthReply {
    /// Always `"auth"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Ed25519 public key, standard base64 (32 bytes).
    pub public_key: String,
    /// Ed25519 signature over [`Challenge::signed_string`], standard base64 (64 bytes).
    pub sig: String,
    /// Optional access token (see [`crate::token`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Message sent once the session is ready, relay → client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ready {
    /// Always `"ready"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Public UDP address of this session, `ip:port`.
    pub udp_addr: String,
    /// Largest frame the relay forwards.
    pub max_frame_bytes: usize,
    /// A session with no datagram in either direction for this long is closed.
    pub idle_timeout_secs: u64,
}

/// Whether sessions must present a token, and the key that checks it.
#[derive(Debug, Clone)]
pub enum TokenPolicy {
    /// No token needed (local development, `--open`). A token that is sent is still checked.
    Open(Option<TokenKey>),
    /// A valid token is required.
    Required(TokenKey),
}

/// Why authentication failed. Each maps to one close code (see [`crate::close`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The reply was not the expected JSON text message.
    Malformed,
    /// The public key is not a valid Ed25519 point.
    BadPublicKey,
    /// The signature does not verify.
    BadSignature,
    /// A token is required but none was sent.
    TokenMissing,
    /// The token was rejected.
    Token(TokenError),
    /// The reply did not arrive in time.
    Timeout,
    /// A message during authentication exceeded the WebSocket message size limit.
    MessageTooBig,
}

impl AuthError {
    /// Short label used in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadPublicKey => "bad_public_key",
            Self::BadSignature => "bad_signature",
            Self::TokenMissing => "token_missing",
            Self::Token(e) => e.as_str(),
            Self::Timeout => "timeout",
            Self::MessageTooBig => "message_too_big",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("auth reply is malformed"),
            Self::BadPublicKey => f.write_str("public key is not a valid Ed25519 key"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::TokenMissing => f.write_str("a token is required"),
            Self::Token(e) => write!(f, "{e}"),
            Self::Timeout => f.write_str("authentication timed out"),
            Self::MessageTooBig => f.write_str("message during authentication is too big"),
        }
    }
}

impl std::error::Error for AuthError {}

/// A successfully authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The client's Ed25519 public key.
    pub identity: [u8; 32],
    /// Tenant named by the token, if the token was a tenant token.
    pub tenant: Option<String>,
}

/// Checks a reply against the challenge that was sent and the token policy.
pub fn verify_reply(
    challenge: &Challenge,
    reply_text: &str,
    policy: &TokenPolicy,
    now_unix: u64,
) -> Result<Authenticated, AuthError> {
    if reply_text.len() > MAX_AUTH_REPLY_BYTES {
        return Err(AuthError::Malformed);
    }
    let reply: AuthReply = serde_json::from_str(reply_text).map_err(|_| AuthError::Malformed)?;
    if reply.kind != "auth" {
        return Err(AuthError::Malformed);
    }

    let key_bytes: [u8; 32] = STANDARD
        .decode(&reply.public_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(AuthError::BadPublicKey)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| AuthError::BadPublicKey)?;
    let sig_bytes: [u8; 64] = STANDARD
        .decode(&reply.sig)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(AuthError::BadSignature)?;
    let sig = Signature::from_bytes(&sig_bytes);

    // The token (an HMAC) is checked before the signature (a curve operation), so that
    // clients without a valid token cost the relay as little as possible.
    let tenant = match (policy, reply.token.as_deref()) {
        (TokenPolicy::Required(_), None) => return Err(AuthError::TokenMissing),
        (TokenPolicy::Open(_), None) => None,
        (TokenPolicy::Open(None), Some(_)) => None,
        (TokenPolicy::Required(k) | TokenPolicy::Open(Some(k)), Some(t)) => {
            let claims = token::verify(k, t, now_unix).map_err(AuthError::Token)?;
            match claims.subject {
                TokenSubject::Tenant(name) => Some(name),
                TokenSubject::Identity(id) if id == key_bytes => None,
                TokenSubject::Identity(_) => {
                    return Err(AuthError::Token(TokenError::WrongIdentity))
                }
            }
        }
    };
    // `verify_strict` also rejects small-order keys and non-canonical signatures.
    key.verify_strict(challenge.signed_string().as_bytes(), &sig)
        .map_err(|_| AuthError::BadSignature)?;
    Ok(Authenticated {
        identity: key_bytes,
        tenant,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn reply(sk: &SigningKey, ch: &Challenge, token: Option<String>) -> String {
        let sig = sk.sign(ch.signed_string().as_bytes());
        serde_json::to_string(&AuthReply {
            kind: "auth".into(),
            public_key: STANDARD.encode(sk.verifying_key().as_bytes()),
            sig: STANDARD.encode(sig.to_bytes()),
            token,
        })
        .unwrap()
    }

    fn setup() -> (SigningKey, Challenge, TokenKey) {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut secret = [0u8; 32];
        rand_chacha::rand_core::RngCore::fill_bytes(&mut rng, &mut secret);
        let sk = SigningKey::from_bytes(&secret);
        let ch = Challenge::new(&mut rng, 1_700_000_000);
        (sk, ch, TokenKey::new(vec![9; 32]).unwrap())
    }

    #[test]
    fn challenge_nonce_is_fresh_hex() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = Challenge::new(&mut rng, 5);
        let b = Challenge::new(&mut rng, 5);
        assert_eq!(a.nonce.len(), 2 * NONCE_BYTES);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(
            a.signed_string(),
            format!("pilot-relay-auth-v1:{}:5", a.nonce)
        );
    }

    #[test]
    fn valid_reply_with_tenant_token_authenticates() {
        let (sk, ch, key) = setup();
        let tok = token::mint(&key, "acme", ch.ts + 60).unwrap();
        let auth = verify_reply(
            &ch,
            &reply(&sk, &ch, Some(tok)),
            &TokenPolicy::Required(key),
            ch.ts,
        )
        .unwrap();
        assert_eq!(auth.identity, *sk.verifying_key().as_bytes());
        assert_eq!(auth.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn signature_over_another_challenge_is_rejected() {
        let (sk, ch, _) = setup();
        let mut other = ch.clone();
        other.ts += 1;
        let text = reply(&sk, &other, None);
        assert_eq!(
            verify_reply(&ch, &text, &TokenPolicy::Open(None), ch.ts),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn token_rules_are_enforced() {
        let (sk, ch, key) = setup();
        let required = TokenPolicy::Required(key.clone());
        assert_eq!(
            verify_reply(&ch, &reply(&sk, &ch, None), &required, ch.ts),
            Err(AuthError::TokenMissing)
        );
        let other_identity = token::mint(&key, &"00".repeat(32), ch.ts + 60).unwrap();
        assert_eq!(
            verify_reply(
                &ch,
                &reply(&sk, &ch, Some(other_identity)),
                &required,
                ch.ts
            ),
            Err(AuthError::Token(TokenError::WrongIdentity))
        );
        let own = hex::encode(sk.verifying_key().as_bytes());
        let own_token = token::mint(&key, &own, ch.ts + 60).unwrap();
        assert!(verify_reply(&ch, &reply(&sk, &ch, Some(own_token)), &required, ch.ts).is_ok());
    }

    #[test]
    fn token_is_checked_before_the_signature() {
        let (sk, ch, key) = setup();
        let mut other = ch.clone();
        other.ts += 1;
        let bad_sig_no_token = reply(&sk, &other, None);
        assert_eq!(
            verify_reply(&ch, &bad_sig_no_token, &TokenPolicy::Required(key), ch.ts),
            Err(AuthError::TokenMissing)
        );
    }

    #[test]
    fn malformed_replies_are_rejected() {
        let (_, ch, _) = setup();
        let open = TokenPolicy::Open(None);
        for text in [
            "",
            "{}",
            "null",
            r#"{"type":"auth","public_key":"x","sig":"y"}"#,
        ] {
            assert!(verify_reply(&ch, text, &open, 0).is_err(), "{text}");
        }
        let big = "x".repeat(MAX_AUTH_REPLY_BYTES + 1);
        assert_eq!(verify_reply(&ch, &big, &open, 0), Err(AuthError::Malformed));
    }
}
