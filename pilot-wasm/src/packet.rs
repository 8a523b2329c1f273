//! The Pilot packet (spec §2): encode from a plain object, decode into one.

use alloc::vec::Vec;

use pilot_core::packet::{Flags, Header, PacketRef, Protocol};
use wasm_bindgen::prelude::*;

use crate::addr::addr_from_js;
use crate::error::PilotError;
use crate::js::{bytes_field, get, uint_field, Obj};

#[wasm_bindgen(typescript_custom_section)]
const TS_PACKET: &str = r#"
/** A Pilot packet (spec §2). Addresses are canonical text on output; on input text or `{ network, node }`. */
export interface PilotPacket {
  /** SYN=1, ACK=2, FIN=4, RST=8; bits above 0x0F are dropped when encoding. */
  flags: number;
  /** 1 stream, 2 datagram, 3 control; other values pass through. */
  protocol: number;
  src: string | { network: number; node: number };
  dst: string | { network: number; node: number };
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  window: number;
  payload: Uint8Array;
}

/** A decoded packet: always text addresses, plus the version and checksum read. */
export interface DecodedPacket extends PilotPacket {
  src: string;
  dst: string;
  version: number;
  checksum: number;
  /** Bytes the packet occupied (34 + payload); later input bytes were not read. */
  length: number;
}
"#;

/// Encodes a packet object to its wire form (34-byte header with CRC-32, then payload).
///
/// `protocol`, `src` and `dst` are required; other numbers default to 0 and the payload to
/// empty.
#[wasm_bindgen(js_name = encodePacket)]
pub fn encode_packet(
    #[wasm_bindgen(
        unchecked_param_type = "Partial<PilotPacket> & Pick<PilotPacket, 'protocol' | 'src' | 'dst'>"
    )]
    packet: JsValue,
) -> Result<Vec<u8>, PilotError> {
    let header = header_from_js(&packet)?;
    let payload = bytes_field(&packet, "payload")?;
    let mut out = Vec::new();
    PacketRef::new(header, &payload).encode(&mut out)?;
    Ok(out)
}

/// Decodes a packet: length, declared length, checksum, then version (spec §2.2).
#[wasm_bindgen(js_name = decodePacket, unchecked_return_type = "DecodedPacket")]
pub fn decode_packet(bytes: &[u8]) -> Result<JsValue, PilotError> {
    let packet = PacketRef::decode(bytes)?;
    Ok(packet_object(&packet, bytes).build())
}

fn header_from_js(packet: &JsValue) -> Result<Header, PilotError> {
    let narrow = |key: &str, max: u64| uint_field(packet, key, max, Some(0));
    Ok(Header {
        // Wider values keep their low nibble, as the reference marshaller does (spec §2.1).
        flags: Flags::from_bits_truncate(narrow("flags", 0xFF)? as u8),
        protocol: Protocol::from(uint_field(packet, "protocol", 0xFF, None)? as u8),
        src: addr_from_js(&get(packet, "src"), "src")?,
        dst: addr_from_js(&get(packet, "dst"), "dst")?,
        src_port: narrow("srcPort", u16::MAX.into())? as u16,
        dst_port: narrow("dstPort", u16::MAX.into())? as u16,
        seq: narrow("seq", u32::MAX.into())? as u32,
        ack: narrow("ack", u32::MAX.into())? as u32,
        window: narrow("window", u16::MAX.into())? as u16,
    })
}

/// The JS view of a decoded packet; `wire` is the buffer it was decoded from.
pub(crate) fn packet_object(packet: &PacketRef<'_>, wire: &[u8]) -> Obj {
    let header = &packet.header;
    let checksum = wire
        .get(30..34)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes);
    Obj::new()
        .set("version", wire.first().map_or(0, |b| b >> 4))
        .set("flags", header.flags.bits())
        .set("protocol", u8::from(header.protocol))
        .set("src", alloc::string::ToString::to_string(&header.src))
        .set("dst", alloc::string::ToString::to_string(&header.dst))
        .set("srcPort", header.src_port)
        .set("dstPort", header.dst_port)
        .set("seq", header.seq)
        .set("ack", header.ack)
        .set("window", header.window)
        .set("checksum", checksum)
        .set("length", packet.encoded_len() as u32)
        .bytes("payload", packet.payload)
}
