//! The fields of a Stream packet the transport cares about (spec §2.1, §8).
//!
//! The node layer maps these to and from the 34-byte header: `flags` is the low nibble of
//! byte 0, `seq`/`ack`/`window` are the header fields of the same names, `payload` the packet
//! payload. Addresses and ports identify the connection and never reach this module.

use alloc::vec::Vec;

/// The header flags are the packet layer's (spec §2.1): one type on both sides of the mapping.
pub use crate::packet::Flags;

/// One stream segment. Received segments borrow their payload (`Segment<&[u8]>`); segments
/// produced by [`Connection::poll_transmit`](super::Connection::poll_transmit) own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<P = Vec<u8>> {
    /// Header flags.
    pub flags: Flags,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    /// Next byte expected from the peer; meaningful with [`Flags::ACK`].
    pub ack: u32,
    /// Free receive slots, in segments (spec §8.6).
    pub window: u16,
    /// Application bytes, or a SACK payload on a pure ACK (spec §8.5).
    pub payload: P,
}

impl<P: AsRef<[u8]>> Segment<P> {
    /// The same segment with a borrowed payload, as [`Connection::handle_segment`] takes it.
    ///
    /// [`Connection::handle_segment`]: super::Connection::handle_segment
    pub fn as_borrowed(&self) -> Segment<&[u8]> {
        Segment {
            flags: self.flags,
            seq: self.seq,
            ack: self.ack,
            window: self.window,
            payload: self.payload.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn flag_bits_match_the_header_nibble() {
        assert_eq!((Flags::SYN | Flags::ACK).bits(), 0x3);
        assert_eq!((Flags::FIN | Flags::ACK).bits(), 0x6);
        assert_eq!(Flags::RST.bits(), 0x8);
        assert_eq!(
            Flags::from_bits_truncate(0xF2),
            Flags::ACK,
            "version nibble is not a flag"
        );
        assert!((Flags::FIN | Flags::ACK).contains(Flags::FIN));
        assert!(!Flags::ACK.contains(Flags::FIN));
        assert_eq!(format!("{:?}", Flags::FIN | Flags::ACK), "ACK|FIN");
    }
}
