//! PILS: an encrypted Pilot packet (spec §3.3, §4.3, §4.4).
//!
//! ```text
//! [0..4)    "PILS"
//! [4..8)    sender node ID (u32 BE), also the AEAD associated data
//! [8..20)   nonce: 4-byte prefix ‖ u64 counter BE
//! [20..)    AES-256-GCM ciphertext of the packet, then the 16-byte tag
//! ```
//!
//! A receiver [`peek`]s the header to pick the session by sender node, then [`open`]s the frame
//! with that session's key. Only a successful open yields an [`AuthenticatedNonce`], the one
//! value the replay window accepts (spec §5.2: authenticate before the window).

use alloc::vec::Vec;
use core::fmt;

use super::MAGIC_PILS;
use crate::crypto::{CryptoError, Nonce, SendState, SessionKey, NONCE_LEN, TAG_LEN};
use crate::replay::AuthenticatedNonce;

/// Bytes before the ciphertext: magic, sender node, nonce.
pub const PILS_HEADER_LEN: usize = 4 + 4 + NONCE_LEN;
/// Shortest PILS frame: header and tag around an empty ciphertext (spec §3.1).
pub const PILS_MIN_LEN: usize = PILS_HEADER_LEN + TAG_LEN;
/// Bytes a PILS frame adds to the packet it carries (spec §3.3).
pub const PILS_OVERHEAD: usize = PILS_MIN_LEN;
/// Largest packet a PILS frame carries: the 34-byte header and a 65535-byte payload (spec §2.1).
pub const MAX_SEALED_PACKET_LEN: usize = 34 + 65_535;

/// Why a PILS frame was not sealed or not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilsError {
    /// Fewer than [`PILS_MIN_LEN`] bytes; dropped before any crypto.
    TooShort,
    /// The first four bytes are not `PILS`.
    BadMagic,
    /// Authentication failed: wrong key, altered header or ciphertext, or a V-FEB frame.
    Authentication,
    /// The packet to seal is longer than [`MAX_SEALED_PACKET_LEN`].
    PacketTooLarge,
    /// The session's send counter is exhausted; re-derive the session (spec §4.3).
    NonceExhausted,
}

impl fmt::Display for PilsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PilsError::TooShort => "PILS frame shorter than 36 bytes",
            PilsError::BadMagic => "not a PILS frame",
            PilsError::Authentication => "PILS frame failed authentication",
            PilsError::PacketTooLarge => "packet too large for a PILS frame",
            PilsError::NonceExhausted => "send counter exhausted",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PilsError {}

/// The cleartext header of a PILS frame. Nothing in it is authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PilsHeader {
    /// The node the frame claims to come from; selects the session key.
    pub sender_node: u32,
    /// The nonce the frame claims; trust it only after [`open`] succeeds.
    pub nonce: Nonce,
}

/// A PILS frame that authenticated and was decrypted in place.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The sender node, authenticated as the AEAD associated data (spec §4.4).
    pub sender_node: u32,
    /// The authenticated nonce, to be checked against the replay window next.
    pub nonce: AuthenticatedNonce,
    /// The decrypted Pilot packet (spec §2), a slice of the frame buffer.
    pub packet: &'a [u8],
}

/// Reads the header without decrypting, so the caller can look up the sender's session.
pub fn peek(frame: &[u8]) -> Result<PilsHeader, PilsError> {
    if frame.len() < PILS_MIN_LEN {
        return Err(PilsError::TooShort);
    }
    let (magic, rest) = frame.split_first_chunk::<4>().ok_or(PilsError::TooShort)?;
    if *magic != MAGIC_PILS {
        return Err(PilsError::BadMagic);
    }
    let (node, rest) = rest.split_first_chunk::<4>().ok_or(PilsError::TooShort)?;
    let (nonce, _) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(PilsError::TooShort)?;
    Ok(PilsHeader {
        sender_node: u32::from_be_bytes(*node),
        nonce: Nonce::from_bytes(nonce),
    })
}

/// Encrypts `packet` as a PILS frame from `sender_node` and appends the frame to `out`.
///
/// Takes the next nonce from `send` (counters start at 1) and binds the sender node as AAD
/// (spec §4.4). Encrypts in place inside `out`: no allocation beyond growing `out`. On error
/// `out` is left as it was. Returns the nonce used.
pub fn seal(
    key: &SessionKey,
    send: &mut SendState,
    sender_node: u32,
    packet: &[u8],
    out: &mut Vec<u8>,
) -> Result<Nonce, PilsError> {
    if packet.len() > MAX_SEALED_PACKET_LEN {
        return Err(PilsError::PacketTooLarge);
    }
    let nonce = send.next_nonce().map_err(|_| PilsError::NonceExhausted)?;
    let aad = sender_node.to_be_bytes();

    let start = out.len();
    out.reserve(PILS_OVERHEAD + packet.len());
    out.extend_from_slice(&MAGIC_PILS);
    out.extend_from_slice(&aad);
    out.extend_from_slice(&nonce.to_bytes());
    out.extend_from_slice(packet);

    let sealed = match out.get_mut(start + PILS_HEADER_LEN..) {
        Some(body) => key.seal_in_place(&nonce, &aad, body),
        // Unreachable: the packet was appended just above.
        None => Err(CryptoError::SealFailed),
    };
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(nonce)
        }
        Err(_) => {
            out.truncate(start);
            Err(PilsError::PacketTooLarge)
        }
    }
}

/// Authenticates and decrypts a PILS frame in place under the sender's session key.
///
/// The AAD is the sender node read from the header (spec §4.4). On failure the frame bytes
/// are unchanged and no nonce comes out, so an unauthenticated frame can never reach the
/// replay window (spec §5.2).
pub fn open<'a>(key: &SessionKey, frame: &'a mut [u8]) -> Result<Opened<'a>, PilsError> {
    let header = peek(frame)?;
    let (body, tag) = frame
        .get_mut(PILS_HEADER_LEN..)
        .and_then(|rest| rest.split_last_chunk_mut::<TAG_LEN>())
        .ok_or(PilsError::TooShort)?;
    key.open_in_place(&header.nonce, &header.sender_node.to_be_bytes(), body, tag)
        .map_err(|_| PilsError::Authentication)?;
    Ok(Opened {
        sender_node: header.sender_node,
        nonce: AuthenticatedNonce::new(header.nonce.prefix, header.nonce.counter),
        packet: body,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use alloc::vec;

    // spec §4.6: the SYN of §2.4 as node 1, prefix 01020304, counter 1, V-FORK+ key.
    const KEY: &str = "3e765a2f49fe2a9185dd5d57c08a3525060d2d2c2b2a356fadef25f614d38662";
    const SYN: &str =
        "1101 0000 000000000001 000000000002 c000 03e8 00000000 00000000 0200 145ed874";
    const FRAME: &str = "50494c5300000001010203040000000000000001\
        5fcf952c7c62e03c63e28e3d57b851da52b6f8909e7af6a078620a036ee6ea86\
        0380e5485bad17db4a6ca076d85bdb11e063";

    fn key() -> SessionKey {
        SessionKey::from_bytes(&hex::decode(KEY).unwrap().try_into().unwrap())
    }

    fn syn() -> Vec<u8> {
        hex::decode(SYN.replace(' ', "")).unwrap()
    }

    #[test]
    fn seals_the_spec_worked_example_with_counter_one() {
        let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
        let mut out = Vec::new();
        let nonce = seal(&key(), &mut send, 1, &syn(), &mut out).unwrap();
        assert_eq!(nonce.counter, 1);
        assert_eq!(hex::encode(&out), FRAME);
        assert_eq!(out.len(), syn().len() + PILS_OVERHEAD);
    }

    #[test]
    fn seal_appends_after_existing_bytes() {
        let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
        let mut out = b"prefix".to_vec();
        seal(&key(), &mut send, 1, &syn(), &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(hex::encode(&out[6..]), FRAME);
    }

    #[test]
    fn opens_the_spec_worked_example() {
        let mut frame = hex::decode(FRAME).unwrap();
        let opened = open(&key(), &mut frame).unwrap();
        assert_eq!(opened.sender_node, 1);
        assert_eq!(opened.nonce.prefix(), [1, 2, 3, 4]);
        assert_eq!(opened.nonce.counter(), 1);
        assert_eq!(opened.packet, &syn()[..]);
    }

    #[test]
    fn peek_reads_the_header_without_the_key() {
        let frame = hex::decode(FRAME).unwrap();
        let header = peek(&frame).unwrap();
        assert_eq!(header.sender_node, 1);
        assert_eq!(
            header.nonce,
            Nonce {
                prefix: [1, 2, 3, 4],
                counter: 1
            }
        );
    }

    #[test]
    fn failed_open_leaves_the_frame_unchanged() {
        let mut frame = hex::decode(FRAME).unwrap();
        let last = frame.len() - 1;
        frame[last] ^= 1;
        let before = frame.clone();
        assert_eq!(open(&key(), &mut frame), Err(PilsError::Authentication));
        assert_eq!(frame, before);
    }

    #[test]
    fn sender_node_is_bound_as_aad() {
        let mut frame = hex::decode(FRAME).unwrap();
        frame[7] = 2;
        assert_eq!(open(&key(), &mut frame), Err(PilsError::Authentication));
    }

    #[test]
    fn short_frames_and_wrong_magic_are_errors() {
        let frame = hex::decode(FRAME).unwrap();
        let mut short = frame[..PILS_MIN_LEN - 1].to_vec();
        assert_eq!(open(&key(), &mut short), Err(PilsError::TooShort));
        assert_eq!(peek(&[]), Err(PilsError::TooShort));
        let mut wrong = frame.clone();
        wrong[3] = b'T';
        assert_eq!(open(&key(), &mut wrong), Err(PilsError::BadMagic));
    }

    #[test]
    fn empty_packet_seals_to_a_minimum_length_frame_that_opens() {
        let mut send = SendState::with_fixed_prefix_for_replay([5; 4]);
        let mut out = Vec::new();
        seal(&key(), &mut send, 9, &[], &mut out).unwrap();
        assert_eq!(out.len(), PILS_MIN_LEN);
        assert_eq!(open(&key(), &mut out).unwrap().packet, &[] as &[u8]);
    }

    #[test]
    fn exhausted_counter_and_oversized_packet_leave_out_unchanged() {
        let mut send = SendState::with_fixed_prefix_and_counter_for_replay([0; 4], u64::MAX);
        let mut out = b"keep".to_vec();
        assert_eq!(
            seal(&key(), &mut send, 1, &syn(), &mut out),
            Err(PilsError::NonceExhausted)
        );
        let mut send = SendState::with_fixed_prefix_for_replay([0; 4]);
        let huge = vec![0u8; MAX_SEALED_PACKET_LEN + 1];
        assert_eq!(
            seal(&key(), &mut send, 1, &huge, &mut out),
            Err(PilsError::PacketTooLarge)
        );
        assert_eq!(out, b"keep");
        assert_eq!(
            send.last_counter(),
            0,
            "a refused packet does not use a nonce"
        );
    }
}
