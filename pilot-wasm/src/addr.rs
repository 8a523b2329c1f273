//! Addresses (spec §1): text ↔ binary for addresses and socket addresses.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use pilot_core::addr::{Addr, SocketAddr};
use wasm_bindgen::prelude::*;

use crate::error::PilotError;
use crate::js::Obj;

#[wasm_bindgen(typescript_custom_section)]
const TS_ADDR: &str = r#"
/** A parsed Pilot address (spec §1). */
export interface PilotAddr {
  /** 16-bit network ID. */
  network: number;
  /** 32-bit node ID. */
  node: number;
  /** Canonical text, `N:NNNN.HHHH.LLLL` with upper-case hex. */
  text: string;
  /** Whether the node is 0xFFFFFFFF, the broadcast node of its network. */
  broadcast: boolean;
  /** The 6-byte wire form. */
  bytes: Uint8Array;
}

/** A parsed Pilot socket address: an address and a virtual port. */
export interface PilotSocketAddr extends PilotAddr {
  /** 16-bit virtual port. */
  port: number;
}
"#;

/// The JS view of an address.
pub(crate) fn addr_object(addr: Addr) -> Obj {
    Obj::new()
        .set("network", addr.network)
        .set("node", addr.node)
        .set("text", addr.to_string())
        .set("broadcast", addr.is_broadcast())
        .bytes("bytes", &addr.to_bytes())
}

/// Parses address text strictly by spec §1.2.
#[wasm_bindgen(js_name = parseAddr, unchecked_return_type = "PilotAddr")]
pub fn parse_addr(text: &str) -> Result<JsValue, PilotError> {
    let addr: Addr = text.parse()?;
    Ok(addr_object(addr).build())
}

/// Parses `<addr>:<port>`, splitting at the last `:`.
#[wasm_bindgen(js_name = parseSocketAddr, unchecked_return_type = "PilotSocketAddr")]
pub fn parse_socket_addr(text: &str) -> Result<JsValue, PilotError> {
    let socket: SocketAddr = text.parse()?;
    Ok(addr_object(socket.addr).set("port", socket.port).build())
}

/// Canonical text of the address `network`/`node`.
#[wasm_bindgen(js_name = formatAddr)]
pub fn format_addr(network: u16, node: u32) -> String {
    Addr::new(network, node).to_string()
}

/// Canonical text of `<addr>:<port>`.
#[wasm_bindgen(js_name = formatSocketAddr)]
pub fn format_socket_addr(network: u16, node: u32, port: u16) -> String {
    SocketAddr::new(Addr::new(network, node), port).to_string()
}

/// The 6-byte wire form of `network`/`node`.
#[wasm_bindgen(js_name = encodeAddr)]
pub fn encode_addr(network: u16, node: u32) -> Vec<u8> {
    Addr::new(network, node).to_bytes().to_vec()
}

/// Reads the first 6 bytes as an address; later bytes are not read.
#[wasm_bindgen(js_name = decodeAddr, unchecked_return_type = "PilotAddr")]
pub fn decode_addr(bytes: &[u8]) -> Result<JsValue, PilotError> {
    Ok(addr_object(Addr::decode(bytes)?).build())
}

/// An address given either as text or as `{ network, node }`.
pub(crate) fn addr_from_js(value: &JsValue, what: &str) -> Result<Addr, PilotError> {
    if let Some(text) = value.as_string() {
        return Ok(text.parse()?);
    }
    if value.is_object() {
        let network = crate::js::uint_field(value, "network", u16::MAX.into(), None)?;
        let node = crate::js::uint_field(value, "node", u32::MAX.into(), None)?;
        let network = u16::try_from(network).map_err(|_| PilotError::range("network"))?;
        let node = u32::try_from(node).map_err(|_| PilotError::range("node"))?;
        return Ok(Addr::new(network, node));
    }
    Err(PilotError::range(alloc::format!(
        "{what} must be address text or {{ network, node }}"
    )))
}
