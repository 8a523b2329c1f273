//! Which datagrams the relay carries: Pilot tunnel frames that decode, and beacon messages
//! travelling in their own direction. Everything else is dropped, so the relay cannot be used
//! to reach DNS, WireGuard, HTTP or any other UDP service with a crafted first byte.
//!
//! The checks reuse pilot-core's decoders (spec `wire.md` §3.1 table, §7.2), so the relay
//! accepts exactly the frames a Pilot peer would not throw away for their shape alone.

use std::fmt;

use pilot_core::frame::beacon::BeaconMessage;
use pilot_core::frame::fragment::Fragment;
use pilot_core::frame::pila::Pila;
use pilot_core::frame::pilk::Pilk;
use pilot_core::frame::{classify, pils, punch, FrameKind};

use crate::metrics::Direction;

/// Length of the short punch frame: the bare `PILP` magic (spec §3.1).
const PILP_SHORT_BYTES: usize = 4;
/// Length of the long punch frame: magic and sender node ID (spec §3.1).
const PILP_LONG_BYTES: usize = 8;

/// Why a datagram is not carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRefusal {
    /// No tunnel magic and no beacon code: not Pilot traffic at all.
    NotPilot,
    /// A `PILT` plaintext frame; V-NEW peers drop them and the relay does not carry them.
    Plaintext,
    /// A tunnel magic or beacon code whose frame does not decode (too short, bad header).
    Malformed,
    /// A beacon message that never travels this way (e.g. a client sending a
    /// `DiscoverReply`, or any `Sync`).
    BeaconDirection,
}

impl FrameRefusal {
    /// Short label used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPilot => "not_pilot",
            Self::Plaintext => "plaintext",
            Self::Malformed => "malformed_frame",
            Self::BeaconDirection => "beacon_direction",
        }
    }
}

impl fmt::Display for FrameRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for FrameRefusal {}

/// Checks one tunnel frame (not a beacon message).
fn check_tunnel(frame: &[u8]) -> Result<(), FrameRefusal> {
    let decodes = match classify(frame) {
        None | Some(FrameKind::Beacon(_)) => return Err(FrameRefusal::NotPilot),
        Some(FrameKind::Plaintext) => return Err(FrameRefusal::Plaintext),
        Some(FrameKind::Encrypted) => pils::peek(frame).is_ok(),
        Some(FrameKind::KeyExchange) => Pilk::decode(frame).is_ok(),
        Some(FrameKind::AuthKeyExchange) => Pila::decode(frame).is_ok(),
        // spec §3.1: a punch is exactly 4 or 8 bytes; the decoder tolerates trailing bytes,
        // the relay does not carry them.
        Some(FrameKind::Punch) => {
            punch::decode(frame).is_ok()
                && matches!(frame.len(), PILP_SHORT_BYTES | PILP_LONG_BYTES)
        }
        Some(FrameKind::Fragment) => Fragment::decode(frame).is_ok(),
    };
    if decodes {
        Ok(())
    } else {
        Err(FrameRefusal::Malformed)
    }
}

/// Checks a datagram travelling `dir` (outbound: client → network; inbound: network →
/// client).
///
/// Beacon messages (spec §7.2) must decode, be exactly their canonical encoding, and go
/// their own way: a client sends Discover
/// (0x01), PunchRequest (0x03) and Relay (0x05); it receives DiscoverReply (0x02),
/// PunchCommand (0x04) and RelayDeliver (0x06). Sync (0x07) is beacon-to-beacon and never
/// passes. The frame inside Relay/RelayDeliver must itself be a carried tunnel frame.
pub fn check(frame: &[u8], dir: Direction) -> Result<(), FrameRefusal> {
    if !matches!(classify(frame), Some(FrameKind::Beacon(_))) {
        return check_tunnel(frame);
    }
    let message = BeaconMessage::decode(frame).map_err(|_| FrameRefusal::Malformed)?;
    // The decoder tolerates trailing bytes after fixed-layout messages, which would let a
    // foreign payload with a first byte of 0x01..0x07 through (a DNS query decodes as a
    // Discover). Control messages must therefore be exactly their own encoding. Relay and
    // RelayDeliver end in a frame, which is checked below instead of copied.
    let exact = match message {
        BeaconMessage::Relay { .. } | BeaconMessage::RelayDeliver { .. } => true,
        _ => {
            let mut canonical = Vec::with_capacity(frame.len());
            message.encode(&mut canonical);
            canonical == frame
        }
    };
    if !exact {
        return Err(FrameRefusal::Malformed);
    }
    match (dir, message) {
        (Direction::Outbound, BeaconMessage::Relay { frame, .. })
        | (Direction::Inbound, BeaconMessage::RelayDeliver { frame, .. }) => check_tunnel(frame),
        (
            Direction::Outbound,
            BeaconMessage::Discover { .. } | BeaconMessage::PunchRequest { .. },
        )
        | (
            Direction::Inbound,
            BeaconMessage::DiscoverReply { .. } | BeaconMessage::PunchCommand { .. },
        ) => Ok(()),
        _ => Err(FrameRefusal::BeaconDirection),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    const OUT: Direction = Direction::Outbound;
    const IN: Direction = Direction::Inbound;

    /// `m` padded with zeros to `len`; a PILF gets the header of the last fragment of two
    /// (spec §3.8: only the last chunk may be short).
    fn magic(m: &[u8; 4], len: usize) -> Vec<u8> {
        let mut v = m.to_vec();
        v.resize(len, 0);
        if m == b"PILF" {
            if let Some(header) = v.get_mut(12..14) {
                header.copy_from_slice(&[1, 2]);
            }
        }
        v
    }

    fn both(frame: &[u8]) -> [Result<(), FrameRefusal>; 2] {
        [check(frame, OUT), check(frame, IN)]
    }

    #[test]
    fn foreign_protocols_with_a_beacon_like_first_byte_are_refused() {
        // A DNS query whose ID starts with 0x01, a WireGuard initiation (type 1), HTTP
        // behind a 0x01 prefix.
        let dns = [
            0x01, 0x23, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p',
            b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
        ];
        let mut wireguard = vec![0x01, 0, 0, 0];
        wireguard.resize(148, 0x5a);
        let http = b"\x01GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for payload in [&dns[..], &wireguard, http] {
            for r in both(payload) {
                assert!(r.is_err(), "{payload:?}");
            }
        }
        assert_eq!(check(&dns, OUT), Err(FrameRefusal::Malformed));
        assert_eq!(check(&wireguard, OUT), Err(FrameRefusal::Malformed));
        assert_eq!(both(b"hello"), [Err(FrameRefusal::NotPilot); 2]);
        assert_eq!(both(b""), [Err(FrameRefusal::NotPilot); 2]);
    }

    #[test]
    fn tunnel_frames_must_meet_their_minimum_length() {
        let table: [(&[u8; 4], usize); 4] =
            [(b"PILS", 36), (b"PILK", 40), (b"PILA", 136), (b"PILF", 15)];
        for (m, min) in table {
            assert_eq!(both(&magic(m, min)), [Ok(()); 2], "{m:?} at {min}");
            assert_eq!(
                both(&magic(m, min - 1)),
                [Err(FrameRefusal::Malformed); 2],
                "{m:?} at {}",
                min - 1
            );
        }
    }

    #[test]
    fn fragment_header_must_be_valid() {
        // Index 1 of 2 with a short chunk is valid; index 2 of 2, count 1, or a short
        // non-last chunk are not.
        let ok = magic(b"PILF", 20);
        assert_eq!(check(&ok, OUT), Ok(()));
        let mut count_one = ok.clone();
        count_one[13] = 1;
        assert_eq!(check(&count_one, OUT), Err(FrameRefusal::Malformed));
        let mut short_first = ok.clone();
        short_first[12] = 0;
        assert_eq!(check(&short_first, OUT), Err(FrameRefusal::Malformed));
        let mut bad = ok.clone();
        bad[12] = 2;
        assert_eq!(check(&bad, OUT), Err(FrameRefusal::Malformed));
    }

    #[test]
    fn punch_is_four_or_eight_bytes() {
        for (len, want) in [
            (4, Ok(())),
            (5, Err(FrameRefusal::Malformed)),
            (7, Err(FrameRefusal::Malformed)),
            (8, Ok(())),
            (9, Err(FrameRefusal::Malformed)),
        ] {
            assert_eq!(both(&magic(b"PILP", len)), [want; 2], "{len}");
        }
    }

    #[test]
    fn plaintext_is_refused_both_ways() {
        assert_eq!(both(&magic(b"PILT", 60)), [Err(FrameRefusal::Plaintext); 2]);
    }

    #[test]
    fn beacon_messages_only_travel_their_own_direction() {
        let discover = [0x01, 0, 0, 0, 7];
        let discover_reply = [0x02, 4, 8, 8, 8, 8, 0x1f, 0x90];
        let punch_request = [0x03, 0, 0, 0, 1, 0, 0, 0, 2];
        let punch_command = [0x04, 4, 8, 8, 8, 8, 0x1f, 0x90];
        let mut relay = vec![0x05, 0, 0, 0, 1, 0, 0, 0, 2];
        relay.extend_from_slice(&magic(b"PILS", 40));
        let mut deliver = vec![0x06, 0, 0, 0, 1];
        deliver.extend_from_slice(&magic(b"PILS", 40));
        let sync = [0x07, 0, 0, 0, 1, 0, 0];
        for m in [&discover[..], &punch_request, &relay] {
            assert_eq!(check(m, OUT), Ok(()), "{m:?}");
            assert_eq!(check(m, IN), Err(FrameRefusal::BeaconDirection), "{m:?}");
        }
        for m in [&discover_reply[..], &punch_command, &deliver] {
            assert_eq!(check(m, IN), Ok(()), "{m:?}");
            assert_eq!(check(m, OUT), Err(FrameRefusal::BeaconDirection), "{m:?}");
        }
        for r in both(&sync) {
            assert!(r.is_err());
        }
    }

    #[test]
    fn relayed_frame_inside_a_beacon_message_is_validated() {
        let mut relay = vec![0x05, 0, 0, 0, 1, 0, 0, 0, 2];
        relay.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(check(&relay, OUT), Err(FrameRefusal::NotPilot));
        assert_eq!(check(&[0x01], OUT), Err(FrameRefusal::Malformed));
    }
}
