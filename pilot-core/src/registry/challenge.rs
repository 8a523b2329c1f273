//! The ASCII challenge strings that registry requests sign (spec §9.3, §9.5), and helpers that
//! sign and verify them.
//!
//! spec §0.2: a challenge is signed as its raw UTF-8 bytes, no terminator, no length. Node and
//! network IDs are written in decimal. The same helpers serve a client (sign) and a registry
//! (verify against the key it has on file).

use alloc::format;
use alloc::string::String;

use crate::crypto::{verify_signature, CryptoError, Identity};

use super::{PublicKey, RegistryError, Signature, PUBLIC_KEY_BYTES};

/// `register:<listen_addr>:<public_key>`: proof of possession on registration (spec §9.3).
///
/// The key appears in its base64 text form, exactly as sent in `"public_key"`.
pub fn register(listen_addr: &str, public_key: &PublicKey) -> String {
    format!("register:{listen_addr}:{public_key}")
}

/// `resolve:<requester>:<node>` (spec §9.4).
pub fn resolve(requester: u32, node: u32) -> String {
    format!("resolve:{requester}:{node}")
}

/// `heartbeat:<id>`, or `heartbeat:<id>:<listen_addr>` when the heartbeat carries one
/// (spec §9.5).
pub fn heartbeat(node: u32, listen_addr: Option<&str>) -> String {
    match listen_addr {
        Some(addr) => format!("heartbeat:{node}:{addr}"),
        None => format!("heartbeat:{node}"),
    }
}

/// `deregister:<id>`.
pub fn deregister(node: u32) -> String {
    format!("deregister:{node}")
}

/// `set_visibility:<id>`.
pub fn set_visibility(node: u32) -> String {
    format!("set_visibility:{node}")
}

/// `set_hostname:<id>`.
pub fn set_hostname(node: u32) -> String {
    format!("set_hostname:{node}")
}

/// `set_tags:<id>`.
pub fn set_tags(node: u32) -> String {
    format!("set_tags:{node}")
}

/// `report_trust:<id>:<peer>`.
pub fn report_trust(node: u32, peer: u32) -> String {
    format!("report_trust:{node}:{peer}")
}

/// `revoke_trust:<id>:<peer>`.
pub fn revoke_trust(node: u32, peer: u32) -> String {
    format!("revoke_trust:{node}:{peer}")
}

/// `punch:<a>:<b>`.
pub fn punch(node_a: u32, node_b: u32) -> String {
    format!("punch:{node_a}:{node_b}")
}

/// `join_network:<id>:<net>`.
pub fn join_network(node: u32, network: u16) -> String {
    format!("join_network:{node}:{network}")
}

/// `leave_network:<id>:<net>`.
pub fn leave_network(node: u32, network: u16) -> String {
    format!("leave_network:{node}:{network}")
}

/// `poll_handshakes:<id>`.
pub fn poll_handshakes(node: u32) -> String {
    format!("poll_handshakes:{node}")
}

/// `handshake:<from>:<to>`: signed by `request_handshake` and by every port-444 trust
/// handshake message (spec §9.6), `to` being the node addressed.
pub fn handshake(from: u32, to: u32) -> String {
    format!("handshake:{from}:{to}")
}

/// `respond:<node>:<peer>`: `respond_handshake`, `node` answering `peer`'s request.
pub fn respond(node: u32, peer: u32) -> String {
    format!("respond:{node}:{peer}")
}

/// `rotate:<id>`, signed with the key being replaced.
pub fn rotate(node: u32) -> String {
    format!("rotate:{node}")
}

/// Signs a challenge with the node's identity key.
pub fn sign(identity: &Identity, challenge: &str) -> Signature {
    Signature(identity.sign(challenge.as_bytes()))
}

/// Checks `signature` over `challenge` against a 32-byte Ed25519 public key.
///
/// Uses strict verification (canonical encodings, no small-order keys): signatures made by
/// honest Go or Rust signers always pass it, while the malleable forms plain RFC 8032
/// verification tolerates are refused.
pub fn verify(
    public_key: &[u8; PUBLIC_KEY_BYTES],
    challenge: &str,
    signature: &Signature,
) -> Result<(), RegistryError> {
    verify_signature(public_key, challenge.as_bytes(), &signature.0).map_err(|e| match e {
        CryptoError::InvalidPublicKey => RegistryError::InvalidPublicKey,
        _ => RegistryError::BadSignature,
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    fn key(seed: u8) -> Identity {
        Identity::from_seed(&[seed; 32])
    }

    #[test]
    fn challenge_strings_are_exact() {
        let pk = PublicKey([0; 32]);
        assert_eq!(
            register("203.0.113.7:41000", &pk),
            "register:203.0.113.7:41000:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
        assert_eq!(
            register("", &pk),
            "register::AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
        assert_eq!(resolve(7, 4_294_967_295), "resolve:7:4294967295");
        assert_eq!(heartbeat(42, None), "heartbeat:42");
        assert_eq!(heartbeat(42, Some("1.2.3.4:5")), "heartbeat:42:1.2.3.4:5");
        assert_eq!(deregister(9), "deregister:9");
        assert_eq!(set_visibility(9), "set_visibility:9");
        assert_eq!(set_hostname(9), "set_hostname:9");
        assert_eq!(set_tags(9), "set_tags:9");
        assert_eq!(report_trust(1, 2), "report_trust:1:2");
        assert_eq!(revoke_trust(1, 2), "revoke_trust:1:2");
        assert_eq!(punch(3, 4), "punch:3:4");
        assert_eq!(join_network(5, 65535), "join_network:5:65535");
        assert_eq!(leave_network(5, 1), "leave_network:5:1");
        assert_eq!(poll_handshakes(0), "poll_handshakes:0");
        assert_eq!(handshake(10, 20), "handshake:10:20");
        assert_eq!(respond(20, 10), "respond:20:10");
        assert_eq!(rotate(11), "rotate:11");
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let signer = key(1);
        let public = signer.public_key();
        let sig = sign(&signer, &resolve(1, 2));
        assert_eq!(verify(&public, "resolve:1:2", &sig), Ok(()));
    }

    #[test]
    fn verify_rejects_other_challenge_other_key_and_flipped_bit() {
        let signer = key(1);
        let public = signer.public_key();
        let sig = sign(&signer, "resolve:1:2");
        assert_eq!(
            verify(&public, "resolve:2:1", &sig),
            Err(RegistryError::BadSignature)
        );
        let other = key(2).public_key();
        assert_eq!(
            verify(&other, "resolve:1:2", &sig),
            Err(RegistryError::BadSignature)
        );
        let mut flipped = sig;
        flipped.0[10] ^= 1;
        assert_eq!(
            verify(&public, "resolve:1:2", &flipped),
            Err(RegistryError::BadSignature)
        );
    }

    #[test]
    fn verify_rejects_a_key_that_is_not_a_curve_point() {
        let sig = sign(&key(1), "x");
        // y = 2 has no x on the curve, so these bytes do not decompress.
        let mut bogus = [0u8; 32];
        bogus[0] = 2;
        assert_eq!(
            verify(&bogus, "x", &sig),
            Err(RegistryError::InvalidPublicKey)
        );
    }
}
