//! PILK: anonymous key exchange (spec §3.4).
//!
//! ```text
//! [0..4)   "PILK"
//! [4..8)   sender node ID (u32 BE)
//! [8..40)  sender X25519 public key
//! ```
//!
//! Nothing in a PILK is authenticated; prefer PILA whenever the peer's identity is known.

use alloc::vec::Vec;
use core::fmt;

use super::MAGIC_PILK;
use crate::crypto::X25519_KEY_LEN;

/// Length of a PILK frame; trailing bytes after it are ignored (spec §3.1).
pub const PILK_LEN: usize = 4 + 4 + X25519_KEY_LEN;

/// Why bytes are not a PILK frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilkError {
    /// Fewer than [`PILK_LEN`] bytes.
    TooShort,
    /// The first four bytes are not `PILK`.
    BadMagic,
}

impl fmt::Display for PilkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PilkError::TooShort => "PILK frame shorter than 40 bytes",
            PilkError::BadMagic => "not a PILK frame",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PilkError {}

/// A decoded PILK frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pilk {
    /// The sender's node ID.
    pub node: u32,
    /// The sender's X25519 tunnel public key.
    pub x25519_public: [u8; X25519_KEY_LEN],
}

impl Pilk {
    /// The 40-byte wire form.
    pub fn to_bytes(&self) -> [u8; PILK_LEN] {
        let mut out = [0u8; PILK_LEN];
        let (magic, rest) = out.split_at_mut(4);
        let (node, key) = rest.split_at_mut(4);
        magic.copy_from_slice(&MAGIC_PILK);
        node.copy_from_slice(&self.node.to_be_bytes());
        key.copy_from_slice(&self.x25519_public);
        out
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// Reads a PILK frame, ignoring bytes after the first 40.
    pub fn decode(bytes: &[u8]) -> Result<Self, PilkError> {
        if bytes.len() < PILK_LEN {
            return Err(PilkError::TooShort);
        }
        let (magic, rest) = bytes.split_first_chunk::<4>().ok_or(PilkError::TooShort)?;
        if *magic != MAGIC_PILK {
            return Err(PilkError::BadMagic);
        }
        let (node, rest) = rest.split_first_chunk::<4>().ok_or(PilkError::TooShort)?;
        let (key, _trailing) = rest
            .split_first_chunk::<X25519_KEY_LEN>()
            .ok_or(PilkError::TooShort)?;
        Ok(Self {
            node: u32::from_be_bytes(*node),
            x25519_public: *key,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const FRAME: &str =
        "50494c4b000123458520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    #[test]
    fn decodes_and_re_encodes_the_vector_frame() {
        let bytes = hex::decode(FRAME).unwrap();
        let pilk = Pilk::decode(&bytes).unwrap();
        assert_eq!(pilk.node, 0x0001_2345);
        assert_eq!(&pilk.x25519_public[..], &bytes[8..]);
        let mut out = Vec::new();
        pilk.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut bytes = hex::decode(FRAME).unwrap();
        let want = Pilk::decode(&bytes).unwrap();
        bytes.extend_from_slice(b"extra");
        assert_eq!(Pilk::decode(&bytes), Ok(want));
    }

    #[test]
    fn short_frame_and_wrong_magic_are_distinct_errors() {
        let bytes = hex::decode(FRAME).unwrap();
        assert_eq!(Pilk::decode(&bytes[..39]), Err(PilkError::TooShort));
        assert_eq!(Pilk::decode(&[]), Err(PilkError::TooShort));
        let mut wrong = bytes.clone();
        wrong[3] = b'A';
        assert_eq!(Pilk::decode(&wrong), Err(PilkError::BadMagic));
    }
}
