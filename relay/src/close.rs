//! WebSocket close codes the relay sends, and what each tells the client to do.
//!
//! Codes 4000–4999 are reserved by RFC 6455 for applications; the relay uses them for its own
//! verdicts. Standard codes are used where they already say the right thing.

use crate::auth::AuthError;
use crate::token::TokenError;

/// 1000: the peer (registry) ended the conversation normally.
pub const NORMAL: u16 = 1000;
/// 1009: a message exceeded the size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1011: the relay failed internally (e.g. could not bind a UDP socket, registry unreachable).
pub const INTERNAL_ERROR: u16 = 1011;
/// 1012: the relay is shutting down; reconnect (to another replica) and re-register.
pub const SERVICE_RESTART: u16 = 1012;
/// 4000: the client broke the protocol (malformed or unexpected message during auth).
pub const PROTOCOL_ERROR: u16 = 4000;
/// 4001: the public key or signature was rejected.
pub const BAD_SIGNATURE: u16 = 4001;
/// 4002: a token is required and none was sent.
pub const TOKEN_REQUIRED: u16 = 4002;
/// 4003: the token is malformed, forged, or for another identity.
pub const TOKEN_INVALID: u16 = 4003;
/// 4004: the token is genuine but expired; fetch a new one.
pub const TOKEN_EXPIRED: u16 = 4004;
/// 4008: authentication did not finish within the auth timeout.
pub const AUTH_TIMEOUT: u16 = 4008;
/// 4010: no datagram in either direction for the idle timeout.
pub const IDLE_TIMEOUT: u16 = 4010;
/// 4011: the client did not answer pings.
pub const PONG_TIMEOUT: u16 = 4011;
/// 4012: a write to the client did not complete within the write timeout: the client stopped
/// reading. Reconnect, and read promptly.
pub const WRITE_TIMEOUT: u16 = 4012;
/// 4029: too many sessions (for this identity, or on this relay).
pub const SESSION_LIMIT: u16 = 4029;

/// The close code for an authentication failure.
pub fn for_auth_error(err: &AuthError) -> u16 {
    match err {
        AuthError::Malformed => PROTOCOL_ERROR,
        AuthError::BadPublicKey | AuthError::BadSignature => BAD_SIGNATURE,
        AuthError::TokenMissing => TOKEN_REQUIRED,
        AuthError::Token(TokenError::Expired { .. }) => TOKEN_EXPIRED,
        AuthError::Token(_) => TOKEN_INVALID,
        AuthError::Timeout => AUTH_TIMEOUT,
        AuthError::MessageTooBig => MESSAGE_TOO_BIG,
    }
}
