//! PILT: a Pilot packet carried in the clear (spec §3.2).
//!
//! Layout: `"PILT" ‖ packet`, where the packet is the 34-byte header plus payload of spec §2.
//! This module only wraps and unwraps the bytes; parsing the packet is the `packet` module's
//! job.
//!
//! Policy, not codec: a V-NEW daemon with encryption enabled (its default) drops every inbound
//! PILT, direct or relay-delivered, and a V-FORK daemon never sends one while encrypting. So we
//! never send PILT to a peer that encrypts, and the engine drops inbound PILT when it encrypts
//! (spec §3.2, interop rule). The codec exists for plaintext-only peers and for tests.

use alloc::vec::Vec;

use super::{strip_magic, FrameError, MAGIC_PILT};

/// Length of the packet header that every PILT must carry (spec §2.1).
const PACKET_HEADER_LEN: usize = 34;

/// Smallest valid PILT frame in bytes: magic plus a bare packet header (spec §3.1).
pub const MIN_PILT_LEN: usize = MAGIC_PILT.len() + PACKET_HEADER_LEN;

/// Appends `"PILT" ‖ packet` to `out`.
pub fn encode(packet: &[u8], out: &mut Vec<u8>) {
    out.reserve(MAGIC_PILT.len() + packet.len());
    out.extend_from_slice(&MAGIC_PILT);
    out.extend_from_slice(packet);
}

/// Returns the packet bytes inside a PILT frame.
///
/// Checks the magic and the minimum length (spec §3.1); the packet itself is not parsed.
pub fn decode(frame: &[u8]) -> Result<&[u8], FrameError> {
    strip_magic(frame, MAGIC_PILT, MIN_PILT_LEN)
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
    fn encode_prepends_magic_and_decode_returns_the_packet() {
        let packet = [0x5a; PACKET_HEADER_LEN + 3];
        let mut frame = Vec::new();
        encode(&packet, &mut frame);
        assert_eq!(&frame[..4], b"PILT");
        assert_eq!(decode(&frame), Ok(&packet[..]));
    }

    #[test]
    fn a_frame_without_a_full_packet_header_is_too_short() {
        let mut frame = b"PILT".to_vec();
        frame.extend_from_slice(&[0; PACKET_HEADER_LEN - 1]);
        assert_eq!(
            decode(&frame),
            Err(FrameError::TooShort {
                min: MIN_PILT_LEN,
                len: MIN_PILT_LEN - 1
            })
        );
        frame.push(0);
        assert!(decode(&frame).is_ok());
    }

    #[test]
    fn another_magic_is_refused() {
        let mut frame = b"PILS".to_vec();
        frame.extend_from_slice(&[0; PACKET_HEADER_LEN]);
        assert_eq!(decode(&frame), Err(FrameError::BadMagic));
        assert_eq!(
            decode(b"PI"),
            Err(FrameError::TooShort {
                min: MIN_PILT_LEN,
                len: 2
            })
        );
    }
}
