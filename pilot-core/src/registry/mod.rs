//! Registry protocol codecs (spec §9.1–§9.5): framing, typed JSON requests and responses, and
//! the signed challenge strings.
//!
//! Sans-IO like the rest of the crate: the driver owns the TCP/TLS connection to the
//! registry, writes what [`Request::encode`] returns, feeds received bytes to a
//! [`FrameReader`] and hands each body to [`Response::decode`]. A registry (such as a local
//! test registry) uses the same types the other way round: [`Request::decode`],
//! [`SignedRequest::verify`], [`Response::encode`].
//!
//! ```
//! use pilot_core::crypto::Identity;
//! use pilot_core::registry::{encode_frame, FrameReader, Request, Resolve, Response};
//!
//! let key = Identity::from_seed(&[1; 32]);
//! let frame = Request::Resolve(Resolve::signed(7, 42, &key)).encode()?;
//! # let _ = frame;
//! // … the driver writes `frame`, then feeds whatever the registry sends back:
//! let answer = encode_frame(br#"{"type":"error","error":"no such node"}"#)?;
//! let (first, rest) = answer.split_at(3);
//! let mut reader = FrameReader::new();
//! reader.push(first);
//! assert_eq!(reader.next_message()?, None);
//! reader.push(rest);
//! let body = reader.next_message()?.expect("a whole message");
//! assert_eq!(Response::decode(&body)?.error_text(), Some("no such node"));
//! # Ok::<(), pilot_core::registry::RegistryError>(())
//! ```
//!
//! The port-444 trust handshake, which signs the same `handshake:<from>:<to>` challenge, is
//! in [`crate::trust`].

pub mod challenge;
mod encoding;
mod framing;
mod json;
mod request;
mod response;

use alloc::string::{String, ToString};
use core::fmt;

pub use encoding::{PublicKey, Signature, PUBLIC_KEY_BYTES, SIGNATURE_BYTES};
pub use framing::{
    encode_frame, encode_message, FrameReader, LENGTH_PREFIX_BYTES, MAX_MESSAGE_BYTES,
};
pub use request::{
    CheckTrust, Deregister, Endpoint, Heartbeat, ListNodes, Lookup, PollHandshakes, Register,
    ReportTrust, Request, RequestHandshake, Resolve, RespondHandshake, RevokeTrust, SetHostname,
    SetVisibility, SignedRequest,
};
pub use response::{
    CheckTrustOk, HeartbeatOk, ListNodesOk, ListedNode, LookupOk, PollHandshakesOk, RegisterOk,
    RelayedHandshakeRequest, RelayedHandshakeResponse, ResolveOk, Response, SetHostnameOk,
};

/// Why a registry message could not be framed, parsed or authenticated.
///
/// A registry's `{"type":"error"}` answer is not an error here: it decodes to
/// [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A length prefix (or a message to send) exceeds [`MAX_MESSAGE_BYTES`]. Terminal for a
    /// [`FrameReader`]: the connection must be closed.
    MessageTooLarge {
        /// The declared or attempted body length.
        declared: u64,
    },
    /// The body is not JSON, or not a single JSON object.
    MalformedJson(String),
    /// A JSON object without `"type"` (spec §9.1: malformed).
    MissingType,
    /// `"type"` names a message this codec does not know.
    UnknownType(String),
    /// A known message type with a missing or ill-typed field (including keys and signatures
    /// that are not base64 of the right length).
    InvalidMessage {
        /// The `"type"` being parsed (empty if `"type"` itself was unreadable).
        message_type: String,
        /// serde's description of the problem.
        detail: String,
    },
    /// A public key that is not base64 of 32 bytes, or not a usable curve point.
    InvalidPublicKey,
    /// A signature that is not base64 of 64 bytes.
    InvalidSignatureEncoding,
    /// A request that must be signed carries no signature.
    MissingSignature,
    /// A well-formed signature that does not verify over the request's challenge.
    BadSignature,
    /// Serializing a message failed (not expected for this crate's types).
    Encode(String),
}

impl RegistryError {
    fn encode(err: serde_json::Error) -> Self {
        RegistryError::Encode(err.to_string())
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::MessageTooLarge { declared } => {
                write!(
                    f,
                    "registry message of {declared} bytes exceeds {MAX_MESSAGE_BYTES}"
                )
            }
            RegistryError::MalformedJson(detail) => write!(f, "malformed registry JSON: {detail}"),
            RegistryError::MissingType => f.write_str("registry message has no \"type\""),
            RegistryError::UnknownType(ty) => write!(f, "unknown registry message type {ty:?}"),
            RegistryError::InvalidMessage {
                message_type,
                detail,
            } => {
                write!(f, "invalid registry message {message_type:?}: {detail}")
            }
            RegistryError::InvalidPublicKey => f.write_str("invalid Ed25519 public key"),
            RegistryError::InvalidSignatureEncoding => {
                f.write_str("signature is not base64 of 64 bytes")
            }
            RegistryError::MissingSignature => f.write_str("request is not signed"),
            RegistryError::BadSignature => f.write_str("signature verification failed"),
            RegistryError::Encode(detail) => write!(f, "cannot encode registry message: {detail}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RegistryError {}

#[cfg(test)]
mod tests;
