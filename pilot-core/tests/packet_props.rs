//! Property tests for the packet header (spec §2): no panics on arbitrary bytes, encode/decode
//! round trips, trailing bytes ignored, and every single-bit corruption rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::addr::Addr;
use pilot_core::packet::{Flags, Header, PacketError, PacketRef, Protocol, HEADER_LEN};
use proptest::collection::vec;
use proptest::prelude::*;

fn any_addr() -> impl Strategy<Value = Addr> {
    (any::<u16>(), any::<u32>()).prop_map(|(network, node)| Addr::new(network, node))
}

fn any_header() -> impl Strategy<Value = Header> {
    (
        any::<u8>(),
        any::<u8>(),
        any_addr(),
        any_addr(),
        any::<(u16, u16, u32, u32, u16)>(),
    )
        .prop_map(
            |(flags, protocol, src, dst, (src_port, dst_port, seq, ack, window))| Header {
                flags: Flags::from_bits_truncate(flags),
                protocol: Protocol::from(protocol),
                src,
                dst,
                src_port,
                dst_port,
                seq,
                ack,
                window,
            },
        )
}

fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    PacketRef::new(header, payload).encode(&mut wire).unwrap();
    wire
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in vec(any::<u8>(), 0..200)) {
        let _ = PacketRef::decode(&bytes);
    }

    #[test]
    fn decode_of_arbitrary_bytes_reencodes_to_the_declared_prefix(bytes in vec(any::<u8>(), 34..120)) {
        // Random bytes almost never carry a valid CRC; fix one up so acceptance is exercised.
        let mut bytes = bytes;
        bytes[0] = (bytes[0] & 0x0F) | 0x10;
        let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) % (bytes.len() - 33);
        bytes[2..4].copy_from_slice(&u16::try_from(declared).unwrap().to_be_bytes());
        let mut zeroed = bytes[..HEADER_LEN + declared].to_vec();
        zeroed[30..34].fill(0);
        bytes[30..34].copy_from_slice(&crc32fast::hash(&zeroed).to_be_bytes());

        let packet = PacketRef::decode(&bytes).unwrap();
        let mut again = Vec::new();
        packet.encode(&mut again).unwrap();
        prop_assert_eq!(&again[..], &bytes[..HEADER_LEN + declared]);
    }

    #[test]
    fn encode_then_decode_round_trips(
        header in any_header(),
        payload in vec(any::<u8>(), 0..1500),
        trailing in vec(any::<u8>(), 0..8),
    ) {
        let mut wire = encode(header, &payload);
        prop_assert_eq!(wire.len(), HEADER_LEN + payload.len());
        wire.extend_from_slice(&trailing);
        let packet = PacketRef::decode(&wire).unwrap();
        prop_assert_eq!(packet.header, header);
        prop_assert_eq!(packet.payload, &payload[..]);
    }

    #[test]
    fn every_single_bit_flip_is_rejected(
        header in any_header(),
        payload in vec(any::<u8>(), 0..64),
        bit in any::<prop::sample::Index>(),
    ) {
        let mut wire = encode(header, &payload);
        let bit = bit.index(wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(PacketRef::decode(&wire).is_err());
    }

    #[test]
    fn any_cut_short_packet_is_rejected_as_short_or_truncated(
        header in any_header(),
        payload in vec(any::<u8>(), 1..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let wire = encode(header, &payload);
        let len = cut.index(wire.len());
        match PacketRef::decode(&wire[..len]) {
            Err(PacketError::TooShort { len: got }) => prop_assert!(got == len && len < HEADER_LEN),
            Err(PacketError::Truncated { have, need }) => {
                prop_assert_eq!(have, len);
                prop_assert_eq!(need, wire.len());
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn encode_appends_without_touching_existing_bytes(
        prefix in vec(any::<u8>(), 0..16),
        header in any_header(),
        payload in vec(any::<u8>(), 0..64),
    ) {
        let mut out = prefix.clone();
        PacketRef::new(header, &payload).encode(&mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &encode(header, &payload)[..]);
    }
}
