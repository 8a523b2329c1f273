//! Tunnel frames (spec §3) and the beacon messages that share the tunnel socket (spec §7.2).
//!
//! A received datagram is demultiplexed by its first bytes: a first byte below 0x10 is a
//! beacon message, otherwise the first four bytes are a tunnel magic.

pub mod beacon;
pub mod fragment;
pub mod pila;
pub mod pilk;
pub mod pils;
pub mod plaintext;
pub mod punch;
pub mod tcp;

/// Magic of a plaintext packet frame (spec §3.2).
pub const MAGIC_PILT: [u8; 4] = *b"PILT";
/// Magic of an encrypted packet frame (spec §3.3).
pub const MAGIC_PILS: [u8; 4] = *b"PILS";
/// Magic of an anonymous key-exchange frame (spec §3.4).
pub const MAGIC_PILK: [u8; 4] = *b"PILK";
/// Magic of an authenticated key-exchange frame (spec §3.5).
pub const MAGIC_PILA: [u8; 4] = *b"PILA";
/// Magic of a NAT punch frame (spec §3.7).
pub const MAGIC_PILP: [u8; 4] = *b"PILP";
/// Magic of a tunnel fragment (spec §3.8).
pub const MAGIC_PILF: [u8; 4] = *b"PILF";

/// What the first bytes of a datagram say it is (spec §3.1). Length checks come later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Beacon message; the byte is its code (spec §7.2).
    Beacon(u8),
    /// `PILT` plaintext packet.
    Plaintext,
    /// `PILS` encrypted packet.
    Encrypted,
    /// `PILK` anonymous key exchange.
    KeyExchange,
    /// `PILA` authenticated key exchange.
    AuthKeyExchange,
    /// `PILP` NAT punch.
    Punch,
    /// `PILF` fragment.
    Fragment,
}

/// Classifies a datagram by its leading bytes; `None` for anything that is not Pilot traffic.
///
/// Beacon codes are accepted only in the defined range 0x01..=0x07.
pub fn classify(bytes: &[u8]) -> Option<FrameKind> {
    let first = *bytes.first()?;
    if first < 0x10 {
        return (0x01..=0x07)
            .contains(&first)
            .then_some(FrameKind::Beacon(first));
    }
    let magic: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    match magic {
        MAGIC_PILT => Some(FrameKind::Plaintext),
        MAGIC_PILS => Some(FrameKind::Encrypted),
        MAGIC_PILK => Some(FrameKind::KeyExchange),
        MAGIC_PILA => Some(FrameKind::AuthKeyExchange),
        MAGIC_PILP => Some(FrameKind::Punch),
        MAGIC_PILF => Some(FrameKind::Fragment),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_knows_every_magic_and_beacon_code() {
        assert_eq!(classify(b"PILS...."), Some(FrameKind::Encrypted));
        assert_eq!(classify(b"PILA"), Some(FrameKind::AuthKeyExchange));
        assert_eq!(classify(&[0x05, 0, 0, 0, 1]), Some(FrameKind::Beacon(0x05)));
        assert_eq!(classify(&[0x00]), None);
        assert_eq!(classify(&[0x08]), None);
        assert_eq!(classify(b"PIL"), None);
        assert_eq!(classify(b"GET / HTTP/1.1"), None);
        assert_eq!(classify(&[]), None);
    }
}
