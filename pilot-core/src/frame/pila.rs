//! PILA: authenticated key exchange (spec §3.5) and its V-FORK trailer (spec §3.6).
//!
//! ```text
//! [0..4)     "PILA"
//! [4..8)     sender node ID (u32 BE)
//! [8..40)    sender X25519 public key
//! [40..72)   sender Ed25519 public key
//! [72..136)  Ed25519 signature of "auth" ‖ node ‖ X25519 key
//! [136..)    optional trailer: uvarint caps [uvarint flags] (V-FORK only)
//! ```
//!
//! Decoding and verifying are separate steps: [`Pila::decode`] only reads the bytes, and
//! [`Pila::verify`] checks the frame against the Ed25519 key the registry holds for the
//! claimed node. A decoded but unverified PILA must not install a session.

use alloc::vec::Vec;
use core::fmt;

use super::MAGIC_PILA;
use crate::crypto::{
    keys_equal, verify_signature, CryptoError, Identity, ED25519_KEY_LEN, SIGNATURE_LEN,
    X25519_KEY_LEN,
};

/// Length of a PILA frame without trailer; V-FEB, V-MID and V-NEW send exactly this.
pub const PILA_LEN: usize = 4 + 4 + X25519_KEY_LEN + ED25519_KEY_LEN + SIGNATURE_LEN;
/// Length of the signed message: "auth" ‖ node ‖ X25519 key (spec §3.5).
pub const SIGNED_MESSAGE_LEN: usize = 4 + 4 + X25519_KEY_LEN;
/// Label at the start of the signed message; four bytes, no colon (spec §3.5).
pub const SIGNED_MESSAGE_LABEL: [u8; 4] = *b"auth";

/// Trailer capability bit: the peer runs the V-FORK gossip layer on port 1005 (spec §3.6).
pub const CAP_GOSSIP: u64 = 1;
/// Trailer flag: a recovery PILA asking for a reply (spec §3.6).
pub const FLAG_REQUEST: u64 = 1;
/// Trailer flag: a reply to a request, or the rejection of a PILK (spec §3.6).
pub const FLAG_RESPONSE: u64 = 2;

/// Longest uvarint encoding of a u64 (LEB128, 7 bits per byte).
const UVARINT_MAX_LEN: usize = 10;

/// Why a PILA frame was not decoded or not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilaError {
    /// Fewer than [`PILA_LEN`] bytes; dropped silently by every reference version.
    TooShort,
    /// The first four bytes are not `PILA`.
    BadMagic,
    /// The Ed25519 key in the frame is not the one the registry holds for the node.
    IdentityMismatch,
    /// The registry's Ed25519 key is not a valid public key.
    InvalidIdentityKey,
    /// The signature does not verify: the node ID or X25519 key was altered, or forged.
    BadSignature,
}

impl fmt::Display for PilaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PilaError::TooShort => "PILA frame shorter than 136 bytes",
            PilaError::BadMagic => "not a PILA frame",
            PilaError::IdentityMismatch => "PILA identity key differs from the registry's",
            PilaError::InvalidIdentityKey => "registry identity key is not a valid Ed25519 key",
            PilaError::BadSignature => "PILA signature does not verify",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PilaError {}

/// The V-FORK trailer of a PILA frame (spec §3.6). Not covered by the signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Trailer {
    /// Capability bitmap; only [`CAP_GOSSIP`] is defined.
    pub caps: u64,
    /// Key-exchange flags: [`FLAG_REQUEST`], [`FLAG_RESPONSE`].
    pub flags: u64,
}

impl Trailer {
    /// No capabilities, no flags: encodes to nothing. What this implementation sends.
    pub const NONE: Trailer = Trailer { caps: 0, flags: 0 };

    /// Reads the bytes after offset 136 with V-FORK's fallbacks: empty gives (0, 0); a
    /// malformed first uvarint gives (0, 0); a malformed second one gives flags 0; anything
    /// after the second uvarint is ignored.
    pub fn parse(bytes: &[u8]) -> Self {
        let Some((caps, used)) = read_uvarint(bytes) else {
            return Self::NONE;
        };
        let flags = bytes
            .get(used..)
            .and_then(read_uvarint)
            .map_or(0, |(flags, _)| flags);
        Self { caps, flags }
    }

    /// Appends the trailer: nothing when caps and flags are 0, else caps, then flags only if
    /// it is not 0 (spec §3.6).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.caps == 0 && self.flags == 0 {
            return;
        }
        write_uvarint(self.caps, out);
        if self.flags != 0 {
            write_uvarint(self.flags, out);
        }
    }

    /// Whether the sender asks for a PILA in reply.
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// Whether this PILA answers a request or rejects a PILK.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }
}

/// Reads one unsigned LEB128 value; `None` when truncated or over 64 bits, as Go's
/// `binary.Uvarint` reports. Non-minimal encodings are accepted, as there.
fn read_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(UVARINT_MAX_LEN) {
        let group = u64::from(byte & 0x7f);
        // The tenth byte may only contribute the top bit of a u64.
        if i == UVARINT_MAX_LEN - 1 && byte > 1 {
            return None;
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends `value` as unsigned LEB128.
fn write_uvarint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        // Truncation intended: the low seven bits plus the continuation bit.
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A PILA frame: decoded from the wire or built and signed locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pila {
    /// The sender's node ID (covered by the signature).
    pub node: u32,
    /// The sender's X25519 tunnel public key (covered by the signature).
    pub x25519_public: [u8; X25519_KEY_LEN],
    /// The Ed25519 identity key the sender claims.
    pub ed25519_public: [u8; ED25519_KEY_LEN],
    /// Ed25519 signature of [`Pila::signed_message`].
    pub signature: [u8; SIGNATURE_LEN],
    /// The V-FORK trailer; [`Trailer::NONE`] when absent.
    pub trailer: Trailer,
}

impl Pila {
    /// Builds and signs the PILA announcing `x25519_public` for `node`.
    pub fn sign(
        identity: &Identity,
        node: u32,
        x25519_public: &[u8; X25519_KEY_LEN],
        trailer: Trailer,
    ) -> Self {
        let message = signed_message(node, x25519_public);
        Self {
            node,
            x25519_public: *x25519_public,
            ed25519_public: identity.public_key(),
            signature: identity.sign(&message),
            trailer,
        }
    }

    /// The 40 signed bytes: "auth" ‖ node (u32 BE) ‖ X25519 key (spec §3.5).
    pub fn signed_message(&self) -> [u8; SIGNED_MESSAGE_LEN] {
        signed_message(self.node, &self.x25519_public)
    }

    /// Appends the wire form (136 bytes, plus the trailer if any) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(PILA_LEN + 2);
        out.extend_from_slice(&MAGIC_PILA);
        out.extend_from_slice(&self.node.to_be_bytes());
        out.extend_from_slice(&self.x25519_public);
        out.extend_from_slice(&self.ed25519_public);
        out.extend_from_slice(&self.signature);
        self.trailer.encode(out);
    }

    /// Reads a PILA frame without verifying it. Bytes after offset 136 are the trailer.
    pub fn decode(bytes: &[u8]) -> Result<Self, PilaError> {
        if bytes.len() < PILA_LEN {
            return Err(PilaError::TooShort);
        }
        let (magic, rest) = bytes.split_first_chunk::<4>().ok_or(PilaError::TooShort)?;
        if *magic != MAGIC_PILA {
            return Err(PilaError::BadMagic);
        }
        let (node, rest) = rest.split_first_chunk::<4>().ok_or(PilaError::TooShort)?;
        let (x25519_public, rest) = rest
            .split_first_chunk::<X25519_KEY_LEN>()
            .ok_or(PilaError::TooShort)?;
        let (ed25519_public, rest) = rest
            .split_first_chunk::<ED25519_KEY_LEN>()
            .ok_or(PilaError::TooShort)?;
        let (signature, trailer) = rest
            .split_first_chunk::<SIGNATURE_LEN>()
            .ok_or(PilaError::TooShort)?;
        Ok(Self {
            node: u32::from_be_bytes(*node),
            x25519_public: *x25519_public,
            ed25519_public: *ed25519_public,
            signature: *signature,
            trailer: Trailer::parse(trailer),
        })
    }

    /// Accepts the frame only if its Ed25519 key is `registry_key` (the key the registry
    /// holds for [`Pila::node`], compared in constant time) and the signature verifies.
    pub fn verify(&self, registry_key: &[u8; ED25519_KEY_LEN]) -> Result<(), PilaError> {
        if !keys_equal(&self.ed25519_public, registry_key) {
            return Err(PilaError::IdentityMismatch);
        }
        verify_signature(registry_key, &self.signed_message(), &self.signature).map_err(|e| match e
        {
            CryptoError::InvalidPublicKey => PilaError::InvalidIdentityKey,
            _ => PilaError::BadSignature,
        })
    }
}

fn signed_message(node: u32, x25519_public: &[u8; X25519_KEY_LEN]) -> [u8; SIGNED_MESSAGE_LEN] {
    let mut message = [0u8; SIGNED_MESSAGE_LEN];
    let (label, rest) = message.split_at_mut(4);
    let (node_bytes, key) = rest.split_at_mut(4);
    label.copy_from_slice(&SIGNED_MESSAGE_LABEL);
    node_bytes.copy_from_slice(&node.to_be_bytes());
    key.copy_from_slice(x25519_public);
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use alloc::{format, vec};

    // spec §4.6: RFC 8032 TEST 1 identity, RFC 7748 Alice X25519 key.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const X25519: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const SIGNATURE_NODE_1: &str = "880af5e2ce0d44fc98432c2ff8c867567f42f442cd9e00c298199823844f1e7d54c5560c7c7480b2f90855b73178c665295538bd30e521f794c494e793e7610d";

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn worked_example(trailer: Trailer) -> (Identity, Pila) {
        let id = Identity::from_seed(&h(SEED));
        let pila = Pila::sign(&id, 1, &h(X25519), trailer);
        (id, pila)
    }

    fn encoded(pila: &Pila) -> Vec<u8> {
        let mut out = Vec::new();
        pila.encode(&mut out);
        out
    }

    #[test]
    fn signs_the_spec_worked_example() {
        let (id, pila) = worked_example(Trailer::NONE);
        assert_eq!(
            hex::encode(pila.signed_message()),
            format!("6175746800000001{X25519}")
        );
        assert_eq!(pila.signature, h::<64>(SIGNATURE_NODE_1));
        let bytes = encoded(&pila);
        assert_eq!(bytes.len(), PILA_LEN);
        assert_eq!(&bytes[40..72], &id.public_key());
        assert_eq!(Pila::decode(&bytes), Ok(pila));
        assert_eq!(pila.verify(&id.public_key()), Ok(()));
    }

    #[test]
    fn trailer_is_emitted_by_the_fork_rules() {
        let cases = [
            (0, 0, vec![]),
            (CAP_GOSSIP, 0, vec![0x01]),
            (CAP_GOSSIP, FLAG_REQUEST, vec![0x01, 0x01]),
            (CAP_GOSSIP, FLAG_RESPONSE, vec![0x01, 0x02]),
            (0, FLAG_REQUEST, vec![0x00, 0x01]),
            (300, 3, vec![0xac, 0x02, 0x03]),
        ];
        for (caps, flags, want) in cases {
            let (_, pila) = worked_example(Trailer { caps, flags });
            let bytes = encoded(&pila);
            assert_eq!(&bytes[PILA_LEN..], &want[..], "caps {caps} flags {flags}");
            assert_eq!(
                Pila::decode(&bytes).unwrap().trailer,
                Trailer { caps, flags }
            );
        }
    }

    #[test]
    fn trailer_parse_falls_back_like_the_fork() {
        let t = |caps, flags| Trailer { caps, flags };
        assert_eq!(Trailer::parse(&[]), t(0, 0));
        // Truncated first uvarint.
        assert_eq!(Trailer::parse(&[0x80]), t(0, 0));
        // Overflowing first uvarint (11 continuation bytes).
        assert_eq!(Trailer::parse(&[0xff; 11]), t(0, 0));
        // Tenth byte above 1 overflows u64.
        assert_eq!(
            Trailer::parse(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            t(0, 0)
        );
        // Largest u64 is accepted.
        assert_eq!(
            Trailer::parse(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            t(u64::MAX, 0)
        );
        // Malformed second uvarint keeps caps.
        assert_eq!(Trailer::parse(&[0x01, 0x80]), t(1, 0));
        // Anything after the second uvarint is ignored.
        assert_eq!(Trailer::parse(&[0x01, 0x02, 0xff, 0xff]), t(1, 2));
        // Non-minimal encodings are read as Go reads them.
        assert_eq!(Trailer::parse(&[0x81, 0x00]), t(1, 0));
    }

    #[test]
    fn trailer_flags_are_named() {
        let t = Trailer {
            caps: 0,
            flags: FLAG_REQUEST | FLAG_RESPONSE,
        };
        assert!(t.is_request() && t.is_response());
        assert!(!Trailer::NONE.is_request() && !Trailer::NONE.is_response());
    }

    #[test]
    fn verification_distinguishes_identity_mismatch_from_bad_signature() {
        let (id, pila) = worked_example(Trailer::NONE);
        let other = Identity::from_seed(&[7; 32]);
        assert_eq!(
            pila.verify(&other.public_key()),
            Err(PilaError::IdentityMismatch)
        );

        let mut altered_node = pila;
        altered_node.node = 2;
        assert_eq!(
            altered_node.verify(&id.public_key()),
            Err(PilaError::BadSignature)
        );

        let mut altered_key = pila;
        altered_key.x25519_public[0] ^= 1;
        assert_eq!(
            altered_key.verify(&id.public_key()),
            Err(PilaError::BadSignature)
        );

        let mut altered_sig = pila;
        altered_sig.signature[10] ^= 0x10;
        assert_eq!(
            altered_sig.verify(&id.public_key()),
            Err(PilaError::BadSignature)
        );
    }

    #[test]
    fn trailer_is_not_signed() {
        let (id, pila) = worked_example(Trailer {
            caps: CAP_GOSSIP,
            flags: FLAG_REQUEST,
        });
        let mut changed = pila;
        changed.trailer = Trailer::NONE;
        assert_eq!(changed.verify(&id.public_key()), Ok(()));
    }

    #[test]
    fn invalid_registry_key_is_its_own_verdict() {
        let (_, mut pila) = worked_example(Trailer::NONE);
        // No curve point has y = 2.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        pila.ed25519_public = bad;
        assert_eq!(pila.verify(&bad), Err(PilaError::InvalidIdentityKey));
    }

    #[test]
    fn short_frame_and_wrong_magic_are_distinct_errors() {
        let (_, pila) = worked_example(Trailer::NONE);
        let bytes = encoded(&pila);
        assert_eq!(
            Pila::decode(&bytes[..PILA_LEN - 1]),
            Err(PilaError::TooShort)
        );
        let mut wrong = bytes.clone();
        wrong[3] = b'K';
        assert_eq!(Pila::decode(&wrong), Err(PilaError::BadMagic));
    }
}
