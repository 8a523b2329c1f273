//! Fuzzes the packet codec (spec §2).
//!
//! 1. The input as a packet: an accepted packet must re-encode to exactly the bytes it was
//!    decoded from (header plus declared payload; trailing bytes are not part of it).
//! 2. The input as header fields plus payload: random bytes rarely carry a valid CRC, so this
//!    half drives encode → decode, which must give back the same header and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::addr::Addr;
use pilot_core::packet::{Flags, Header, PacketError, PacketRef, Protocol, MAX_PAYLOAD_LEN};

fn header_from(fields: &[u8; 28]) -> Header {
    #[rustfmt::skip]
    let [
        flags, protocol,
        s0, s1, s2, s3, s4, s5,
        d0, d1, d2, d3, d4, d5,
        sp0, sp1, dp0, dp1,
        q0, q1, q2, q3,
        a0, a1, a2, a3,
        w0, w1,
    ] = *fields;
    Header {
        flags: Flags::from_bits_truncate(flags),
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

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = PacketRef::decode(data) {
        let mut wire = Vec::new();
        packet
            .encode(&mut wire)
            .expect("a decoded payload fits the length field");
        assert_eq!(&wire[..], &data[..packet.encoded_len()]);
        assert_eq!(PacketRef::decode(&wire), Ok(packet));
    }

    if let Some((fields, payload)) = data.split_first_chunk::<28>() {
        let header = header_from(fields);
        let mut wire = Vec::new();
        let encoded = PacketRef::new(header, payload).encode(&mut wire);
        if payload.len() > MAX_PAYLOAD_LEN {
            assert_eq!(
                encoded,
                Err(PacketError::PayloadTooLarge { len: payload.len() })
            );
            assert!(wire.is_empty());
            return;
        }
        encoded.expect("a payload within the limit encodes");
        let decoded = PacketRef::decode(&wire).expect("own encoding decodes");
        assert_eq!(decoded.header, header);
        assert_eq!(decoded.payload, payload);
    }
});
