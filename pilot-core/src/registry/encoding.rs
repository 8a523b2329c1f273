//! Ed25519 keys and signatures as the registry writes them: standard base64 with padding
//! (spec §9.3, §9.5).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RegistryError;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// An Ed25519 public key as carried in `"public_key"` fields.
///
/// Holds the raw 32 bytes; whether they are a valid curve point is checked when a signature
/// is verified, so a registry can still echo a key it cannot use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_BYTES]);

/// An Ed25519 signature as carried in `"signature"` fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_BYTES]);

impl PublicKey {
    /// Decodes the standard-base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, RegistryError> {
        decode_fixed(text)
            .map(PublicKey)
            .ok_or(RegistryError::InvalidPublicKey)
    }

    /// The standard-base64 text form: what goes on the wire and into `register:` challenges.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl Signature {
    /// Decodes the standard-base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, RegistryError> {
        decode_fixed(text)
            .map(Signature)
            .ok_or(RegistryError::InvalidSignatureEncoding)
    }

    /// The standard-base64 text form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// Decodes standard base64 into exactly `N` bytes. The engine rejects non-canonical trailing
/// bits, so every value has one accepted spelling.
fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes: Vec<u8> = STANDARD.decode(text).ok()?;
    bytes.as_slice().try_into().ok()
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

/// Visitor for a base64 string of exactly `N` bytes.
struct FixedBase64<const N: usize>(&'static str);

impl<const N: usize> Visitor<'_> for FixedBase64<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as standard base64 of {N} bytes", self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        decode_fixed(text).ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(FixedBase64("an Ed25519 public key"))
            .map(PublicKey)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(FixedBase64("an Ed25519 signature"))
            .map(Signature)
    }
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

    #[test]
    fn public_key_round_trips_through_base64_and_json() {
        let key = PublicKey([7; 32]);
        let text = key.to_base64();
        assert_eq!(text, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
        assert_eq!(PublicKey::from_base64(&text).unwrap(), key);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"");
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    }

    #[test]
    fn wrong_lengths_and_alphabets_are_rejected() {
        // 31 bytes, 33 bytes, URL-safe alphabet, missing padding, non-canonical trailing bits.
        let cases = [
            STANDARD.encode([1u8; 31]),
            STANDARD.encode([1u8; 33]),
            String::from("_____________________________________________w=="),
            String::from("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"),
            String::from("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwd="),
        ];
        for text in &cases {
            assert_eq!(
                PublicKey::from_base64(text),
                Err(RegistryError::InvalidPublicKey),
                "{text}"
            );
            assert!(
                serde_json::from_value::<PublicKey>(serde_json::Value::from(text.as_str()))
                    .is_err()
            );
        }
        assert!(serde_json::from_str::<PublicKey>("12").is_err());
    }

    #[test]
    fn signature_needs_exactly_64_bytes() {
        let sig = Signature([0xA5; 64]);
        assert_eq!(Signature::from_base64(&sig.to_base64()).unwrap(), sig);
        assert_eq!(
            Signature::from_base64(&STANDARD.encode([0u8; 63])),
            Err(RegistryError::InvalidSignatureEncoding)
        );
    }
}
