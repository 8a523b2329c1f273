//! The Pilot packet: a 34-byte header, CRC-32 protected, followed by the payload (spec §2).
//!
//! Decoding borrows: [`PacketRef::decode`] returns the header by value and the payload as a
//! slice of the input. Encoding appends to a caller-owned `Vec<u8>`, so the send path
//! allocates nothing beyond that buffer.

use alloc::vec::Vec;
use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use crate::addr::Addr;

/// Length of the fixed header (spec §2.1).
pub const HEADER_LEN: usize = 34;

/// The only version this implementation emits or accepts (spec §2.2).
pub const VERSION: u8 = 1;

/// Largest payload the 16-bit length field can describe (spec §2.1).
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;

/// Offset of the CRC-32 inside the header (spec §2.3).
const CHECKSUM_OFFSET: usize = 30;

/// The low nibble of byte 0 holds the flags, the high nibble the version (spec §2.1).
const FLAGS_MASK: u8 = 0x0F;

/// Control flags of a packet (spec §2.1): a set over SYN, ACK, FIN and RST.
///
/// Only the low four bits exist on the wire; every constructor masks to them, which is how
/// the encoder drops out-of-range bits as the reference's marshaller does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// Opens a connection.
    pub const SYN: Flags = Flags(0x1);
    /// The acknowledgment number is valid.
    pub const ACK: Flags = Flags(0x2);
    /// The sender has finished sending.
    pub const FIN: Flags = Flags(0x4);
    /// Aborts the connection.
    pub const RST: Flags = Flags(0x8);

    /// The flags in the low four bits of `bits`; higher bits are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        Flags(bits & FLAGS_MASK)
    }

    /// The flag bits (always below 0x10).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    /// Prints the set flags as `SYN|ACK`, or `NONE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Flags, &str); 4] = [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ];
        if self.is_empty() {
            return f.write_str("NONE");
        }
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The transport protocol of a packet (spec §2.1, byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// 0x01: reliable byte stream (spec §8).
    Stream,
    /// 0x02: unreliable datagram (spec §8.11).
    Datagram,
    /// 0x03: control, e.g. ping and keepalive (spec §8.10).
    Control,
    /// Any other value. The decoder accepts it and leaves the policy to the caller, as the
    /// reference daemons ignore such packets rather than rejecting them at decode time.
    /// [`Protocol::from`] never produces `Other(1..=3)`.
    Other(u8),
}

impl From<u8> for Protocol {
    fn from(byte: u8) -> Self {
        match byte {
            0x01 => Protocol::Stream,
            0x02 => Protocol::Datagram,
            0x03 => Protocol::Control,
            other => Protocol::Other(other),
        }
    }
}

impl From<Protocol> for u8 {
    fn from(protocol: Protocol) -> u8 {
        match protocol {
            Protocol::Stream => 0x01,
            Protocol::Datagram => 0x02,
            Protocol::Control => 0x03,
            Protocol::Other(byte) => byte,
        }
    }
}

/// The header fields a sender chooses (spec §2.1).
///
/// Version, payload length and checksum are not stored: the encoder derives them and the
/// decoder checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Control flags.
    pub flags: Flags,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source virtual port.
    pub src_port: u16,
    /// Destination virtual port.
    pub dst_port: u16,
    /// Sequence number (Stream: byte sequence; Control ping: echoed).
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Receive window, in segments (spec §8.6).
    pub window: u16,
}

/// Why a packet could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer than [`HEADER_LEN`] bytes.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The declared payload runs past the end of the buffer.
    Truncated {
        /// Bytes available.
        have: usize,
        /// Header plus declared payload.
        need: usize,
    },
    /// The CRC-32 does not match the header and declared payload.
    ChecksumMismatch {
        /// The checksum carried in the header.
        carried: u32,
        /// The checksum computed over the received bytes.
        computed: u32,
    },
    /// The version nibble is not [`VERSION`].
    UnsupportedVersion {
        /// The version nibble received.
        version: u8,
    },
    /// Encoding: the payload does not fit the 16-bit length field.
    PayloadTooLarge {
        /// The payload length asked for.
        len: usize,
    },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(f, "packet too short: {len} bytes (min {HEADER_LEN})")
            }
            Self::Truncated { have, need } => {
                write!(f, "packet truncated: have {have} bytes, need {need}")
            }
            Self::ChecksumMismatch { carried, computed } => write!(
                f,
                "checksum mismatch: carried {carried:#010x}, computed {computed:#010x}"
            ),
            Self::UnsupportedVersion { version } => {
                write!(
                    f,
                    "unsupported packet version {version} (expected {VERSION})"
                )
            }
            Self::PayloadTooLarge { len } => {
                write!(f, "payload of {len} bytes exceeds {MAX_PAYLOAD_LEN}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PacketError {}

/// A decoded packet whose payload borrows the received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef<'a> {
    /// The header fields.
    pub header: Header,
    /// The declared payload; bytes after it in the input are not part of the packet.
    pub payload: &'a [u8],
}

impl<'a> PacketRef<'a> {
    /// A packet with `header` carrying `payload` (checked at encode time).
    pub const fn new(header: Header, payload: &'a [u8]) -> Self {
        PacketRef { header, payload }
    }

    /// Decodes a packet from the start of `buf` (spec §2.2).
    ///
    /// Order of checks: length, declared length, checksum, then version. Bytes after the
    /// declared payload are ignored.
    pub fn decode(buf: &'a [u8]) -> Result<Self, PacketError> {
        let (header, rest) = buf
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(PacketError::TooShort { len: buf.len() })?;

        let payload_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let payload = rest.get(..payload_len).ok_or(PacketError::Truncated {
            have: buf.len(),
            need: HEADER_LEN + payload_len,
        })?;

        // spec §2.2: the checksum is verified before any field is trusted.
        let carried = u32::from_be_bytes([header[30], header[31], header[32], header[33]]);
        let computed = checksum(header, payload);
        if carried != computed {
            return Err(PacketError::ChecksumMismatch { carried, computed });
        }

        // spec §2.2: only version 1 since 2026-03-27 (V-FEB accepted any nibble).
        let version = header[0] >> 4;
        if version != VERSION {
            return Err(PacketError::UnsupportedVersion { version });
        }

        Ok(PacketRef {
            header: Header::from_bytes(header),
            payload,
        })
    }

    /// Bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the wire form (header with checksum, then payload) to `out`.
    ///
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        let payload_len =
            u16::try_from(self.payload.len()).map_err(|_| PacketError::PayloadTooLarge {
                len: self.payload.len(),
            })?;

        let mut header = self.header.to_bytes(payload_len);
        let crc = checksum(&header, self.payload);
        let [c0, c1, c2, c3] = crc.to_be_bytes();
        header[CHECKSUM_OFFSET] = c0;
        header[CHECKSUM_OFFSET + 1] = c1;
        header[CHECKSUM_OFFSET + 2] = c2;
        header[CHECKSUM_OFFSET + 3] = c3;

        out.reserve(self.encoded_len());
        out.extend_from_slice(&header);
        out.extend_from_slice(self.payload);
        Ok(())
    }
}

impl Header {
    /// The 34 header bytes with the checksum field zeroed.
    fn to_bytes(self, payload_len: u16) -> [u8; HEADER_LEN] {
        let [l0, l1] = payload_len.to_be_bytes();
        let [s0, s1, s2, s3, s4, s5] = self.src.to_bytes();
        let [d0, d1, d2, d3, d4, d5] = self.dst.to_bytes();
        let [sp0, sp1] = self.src_port.to_be_bytes();
        let [dp0, dp1] = self.dst_port.to_be_bytes();
        let [q0, q1, q2, q3] = self.seq.to_be_bytes();
        let [a0, a1, a2, a3] = self.ack.to_be_bytes();
        let [w0, w1] = self.window.to_be_bytes();
        #[rustfmt::skip]
        let bytes = [
            (VERSION << 4) | self.flags.bits(), self.protocol.into(), l0, l1,
            s0, s1, s2, s3, s4, s5,
            d0, d1, d2, d3, d4, d5,
            sp0, sp1, dp0, dp1,
            q0, q1, q2, q3,
            a0, a1, a2, a3,
            w0, w1,
            0, 0, 0, 0,
        ];
        bytes
    }

    /// Reads every field except version, length and checksum, which the decoder checked.
    fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Self {
        // Laid out as the table of spec §2.1; the array pattern proves every offset in bounds.
        #[rustfmt::skip]
        let [
            b0, protocol, _, _,
            s0, s1, s2, s3, s4, s5,
            d0, d1, d2, d3, d4, d5,
            sp0, sp1, dp0, dp1,
            q0, q1, q2, q3,
            a0, a1, a2, a3,
            w0, w1,
            _, _, _, _,
        ] = *bytes;
        Header {
            flags: Flags::from_bits_truncate(b0),
            protocol: Protocol::from(protocol),
            src: Addr::from_bytes([s0, s1, s2, s3, s4, s5]),
            dst: Addr::from_bytes([d0, d1, d2, d3, d4, d5]),
            src_port: u16::from_be_bytes([sp0, sp1]),
            dst_port: u16::from_be_bytes([dp0, dp1]),
            seq: u32::from_be_bytes([q0, q1, q2, q3]),
            ack: u32::from_be_bytes([a0, a1, a2, a3]),
            window: u16::from_be_bytes([w0, w1]),
        }
    }
}

/// CRC-32/IEEE over the header with its checksum field zeroed, then the payload (spec §2.3).
fn checksum(header: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
    let mut zeroed = *header;
    zeroed[CHECKSUM_OFFSET..].fill(0);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&zeroed);
    hasher.update(payload);
    hasher.finalize()
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
    use alloc::format;
    use alloc::vec;

    fn syn_header() -> Header {
        Header {
            flags: Flags::SYN,
            protocol: Protocol::Stream,
            src: Addr::REGISTRY,
            dst: Addr::BEACON,
            src_port: 49152,
            dst_port: 1000,
            seq: 0,
            ack: 0,
            window: 512,
        }
    }

    fn encode(packet: &PacketRef<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        packet.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn spec_2_4_syn_matches_worked_example() {
        let wire = encode(&PacketRef::new(syn_header(), &[]));
        assert_eq!(
            hex::encode(&wire),
            "11010000000000000001000000000002c00003e800000000000000000200145ed874"
        );
    }

    #[test]
    fn spec_2_4_data_segment_matches_worked_example() {
        let header = Header {
            flags: Flags::ACK,
            seq: 1,
            ack: 1,
            window: 502,
            ..syn_header()
        };
        let wire = encode(&PacketRef::new(header, b"hello"));
        assert_eq!(
            hex::encode(&wire),
            "12010005000000000001000000000002c00003e8000000010000000101f65ee872c868656c6c6f"
        );
    }

    #[test]
    fn decode_round_trips_and_ignores_trailing_bytes() {
        let mut wire = encode(&PacketRef::new(syn_header(), b"abc"));
        wire.extend_from_slice(b"trailing");
        let packet = PacketRef::decode(&wire).unwrap();
        assert_eq!(packet.header, syn_header());
        assert_eq!(packet.payload, b"abc");
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = b"PILT".to_vec();
        PacketRef::new(syn_header(), &[]).encode(&mut out).unwrap();
        assert_eq!(&out[..4], b"PILT");
        assert_eq!(PacketRef::decode(&out[4..]).unwrap().header, syn_header());
    }

    #[test]
    fn short_and_truncated_inputs_are_distinct_verdicts() {
        let wire = encode(&PacketRef::new(syn_header(), b"abc"));
        assert_eq!(
            PacketRef::decode(&wire[..33]),
            Err(PacketError::TooShort { len: 33 })
        );
        assert_eq!(
            PacketRef::decode(&wire[..36]),
            Err(PacketError::Truncated { have: 36, need: 37 })
        );
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let wire = encode(&PacketRef::new(syn_header(), b"abc"));
        for byte in 0..wire.len() {
            // Bytes 2..4 are the length: flipping them changes the verdict to truncation or
            // to a checksum over fewer bytes, both rejections.
            let mut bad = wire.clone();
            bad[byte] ^= 0x01;
            assert!(
                PacketRef::decode(&bad).is_err(),
                "flip in byte {byte} accepted"
            );
        }
    }

    #[test]
    fn version_other_than_one_is_rejected_after_the_checksum() {
        let mut wire = encode(&PacketRef::new(syn_header(), &[]));
        wire[0] = 0x21;
        // Wrong checksum first: the checksum verdict wins.
        assert!(matches!(
            PacketRef::decode(&wire),
            Err(PacketError::ChecksumMismatch { .. })
        ));
        wire[30..34].fill(0);
        let crc = checksum(wire[..34].try_into().unwrap(), &[]);
        wire[30..34].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            PacketRef::decode(&wire),
            Err(PacketError::UnsupportedVersion { version: 2 })
        );
    }

    #[test]
    fn oversized_payload_is_refused_and_output_untouched() {
        let payload = vec![0u8; MAX_PAYLOAD_LEN + 1];
        let mut out = vec![7u8];
        assert_eq!(
            PacketRef::new(syn_header(), &payload).encode(&mut out),
            Err(PacketError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
        assert_eq!(out, [7]);
        let max = vec![0u8; MAX_PAYLOAD_LEN];
        let mut out = Vec::new();
        PacketRef::new(syn_header(), &max).encode(&mut out).unwrap();
        assert_eq!(
            PacketRef::decode(&out).unwrap().payload.len(),
            MAX_PAYLOAD_LEN
        );
    }

    #[test]
    fn flags_mask_to_low_nibble_and_print_by_name() {
        assert_eq!(Flags::from_bits_truncate(0x1F).bits(), 0x0F);
        assert_eq!(format!("{:?}", Flags::SYN | Flags::ACK), "SYN|ACK");
        assert_eq!(format!("{:?}", Flags::NONE), "NONE");
    }

    #[test]
    fn unknown_protocol_round_trips() {
        assert_eq!(Protocol::from(7), Protocol::Other(7));
        assert_eq!(u8::from(Protocol::Other(7)), 7);
        assert_eq!(Protocol::from(3), Protocol::Control);
    }
}
