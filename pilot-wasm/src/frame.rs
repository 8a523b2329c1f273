//! Tunnel frames without keys (spec §3, §7): classification, PILK, PILA decoding, the beacon
//! relay envelope and TCP framing.

use alloc::vec::Vec;

use js_sys::Array;
use pilot_core::frame::beacon::{parse_relay_deliver, wrap_relay, BeaconMessage};
use pilot_core::frame::pila::{Pila, Trailer};
use pilot_core::frame::pilk::Pilk;
use pilot_core::frame::tcp;
use pilot_core::frame::{classify, FrameKind};
use wasm_bindgen::prelude::*;

use crate::error::PilotError;
use crate::js::{array, Obj};

#[wasm_bindgen(typescript_custom_section)]
const TS_FRAME: &str = r#"
/** What the leading bytes of a datagram say it is (spec §3.1). */
export type FrameKind = "beacon" | "PILT" | "PILS" | "PILK" | "PILA" | "PILP" | "PILF";

/** A classified datagram; `beaconCode` is set for beacon messages (0x01..=0x07). */
export interface Classified {
  kind: FrameKind;
  beaconCode?: number;
}

/** A decoded PILK frame (anonymous key exchange, spec §3.4). */
export interface DecodedPilk {
  node: number;
  x25519Public: Uint8Array;
}

/** The V-FORK trailer of a PILA frame (spec §3.6); not covered by the signature. */
export interface PilaTrailer {
  caps: bigint;
  flags: bigint;
  /** The sender asks for a PILA in reply (flag 1). */
  request: boolean;
  /** This PILA answers a request or rejects a PILK (flag 2). */
  response: boolean;
}

/** A decoded, NOT yet verified PILA frame (spec §3.5). */
export interface DecodedPila {
  node: number;
  x25519Public: Uint8Array;
  ed25519Public: Uint8Array;
  signature: Uint8Array;
  trailer: PilaTrailer;
}

/** A RelayDeliver envelope opened: the claimed (unauthenticated) sender and the inner frame. */
export interface RelayDelivered {
  sender: number;
  frame: Uint8Array;
}
"#;

/// Classifies a datagram by its first bytes; `null` for anything that is not Pilot traffic.
#[wasm_bindgen(js_name = classifyFrame, unchecked_return_type = "Classified | null")]
pub fn classify_frame(bytes: &[u8]) -> JsValue {
    let Some(kind) = classify(bytes) else {
        return JsValue::NULL;
    };
    let name = match kind {
        FrameKind::Beacon(code) => {
            return Obj::new()
                .set("kind", "beacon")
                .set("beaconCode", code)
                .build()
        }
        FrameKind::Plaintext => "PILT",
        FrameKind::Encrypted => "PILS",
        FrameKind::KeyExchange => "PILK",
        FrameKind::AuthKeyExchange => "PILA",
        FrameKind::Punch => "PILP",
        FrameKind::Fragment => "PILF",
    };
    Obj::new().set("kind", name).build()
}

/// Encodes a 40-byte PILK frame announcing `x25519_public` for `node`.
#[wasm_bindgen(js_name = encodePilk)]
pub fn encode_pilk(node: u32, x25519_public: &[u8]) -> Result<Vec<u8>, PilotError> {
    let pilk = Pilk {
        node,
        x25519_public: array("x25519Public", x25519_public)?,
    };
    Ok(pilk.to_bytes().to_vec())
}

/// Decodes a PILK frame; bytes after the first 40 are ignored.
#[wasm_bindgen(js_name = decodePilk, unchecked_return_type = "DecodedPilk")]
pub fn decode_pilk(bytes: &[u8]) -> Result<JsValue, PilotError> {
    let pilk = Pilk::decode(bytes)?;
    Ok(Obj::new()
        .set("node", pilk.node)
        .bytes("x25519Public", &pilk.x25519_public)
        .build())
}

/// Decodes a PILA frame WITHOUT verifying it; use `handlePila` to accept one.
#[wasm_bindgen(js_name = decodePila, unchecked_return_type = "DecodedPila")]
pub fn decode_pila(bytes: &[u8]) -> Result<JsValue, PilotError> {
    let pila = Pila::decode(bytes)?;
    Ok(Obj::new()
        .set("node", pila.node)
        .bytes("x25519Public", &pila.x25519_public)
        .bytes("ed25519Public", &pila.ed25519_public)
        .bytes("signature", &pila.signature)
        .set("trailer", trailer_object(pila.trailer))
        .build())
}

/// Checks a PILA frame against the Ed25519 key the registry holds for its node.
///
/// Throws `PILA_IDENTITY_MISMATCH`, `PILA_INVALID_IDENTITY_KEY` or `PILA_BAD_SIGNATURE`.
#[wasm_bindgen(js_name = verifyPila)]
pub fn verify_pila(bytes: &[u8], registry_key: &[u8]) -> Result<(), PilotError> {
    let pila = Pila::decode(bytes)?;
    pila.verify(&array("registryKey", registry_key)?)?;
    Ok(())
}

/// The JS view of a PILA trailer.
pub(crate) fn trailer_object(trailer: Trailer) -> JsValue {
    Obj::new()
        .set("caps", trailer.caps)
        .set("flags", trailer.flags)
        .set("request", trailer.is_request())
        .set("response", trailer.is_response())
        .build()
}

/// Wraps `frame` in a beacon Relay envelope `05 ‖ sender ‖ dest ‖ frame` (spec §7.3).
#[wasm_bindgen(js_name = wrapRelay)]
pub fn wrap_relay_envelope(sender: u32, dest: u32, frame: &[u8]) -> Result<Vec<u8>, PilotError> {
    let mut out = Vec::new();
    wrap_relay(sender, dest, frame, &mut out)?;
    Ok(out)
}

/// Opens a RelayDeliver envelope `06 ‖ sender ‖ frame`. The sender is a claim, not
/// authenticated (spec §7.3): it selects the session to try.
#[wasm_bindgen(js_name = unwrapRelayDeliver, unchecked_return_type = "RelayDelivered")]
pub fn unwrap_relay_deliver(bytes: &[u8]) -> Result<JsValue, PilotError> {
    let (sender, frame) = parse_relay_deliver(bytes)?;
    Ok(Obj::new()
        .set("sender", sender)
        .bytes("frame", frame)
        .build())
}

/// Builds a RelayDeliver envelope, as a beacon would (for tests and local relays).
#[wasm_bindgen(js_name = wrapRelayDeliver)]
pub fn wrap_relay_deliver(sender: u32, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    BeaconMessage::RelayDeliver { sender, frame }.encode(&mut out);
    out
}

/// Frames `frame` for a TCP stream: u32 BE length ‖ frame (spec §7.5, at most 1 MiB).
#[wasm_bindgen(js_name = encodeTcpFrame)]
pub fn encode_tcp_frame(frame: &[u8]) -> Result<Vec<u8>, PilotError> {
    let mut out = Vec::new();
    tcp::encode(frame, &mut out)?;
    Ok(out)
}

/// Turns TCP stream bytes back into frames, however the stream was split.
#[wasm_bindgen]
pub struct TcpDeframer {
    inner: tcp::TcpDeframer,
}

impl Default for TcpDeframer {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl TcpDeframer {
    /// A deframer at the start of a stream.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self {
            inner: tcp::TcpDeframer::new(),
        }
    }

    /// Consumes `bytes` and returns every frame they complete, in order.
    ///
    /// Throws `TCP_DECLARED_TOO_LARGE` once the peer declares a frame above 1 MiB; from then
    /// on every call throws: drop the connection. Frames completed before the bad prefix in
    /// the same call are lost with it, which does not matter since the connection is dead.
    #[wasm_bindgen(unchecked_return_type = "Uint8Array[]")]
    pub fn push(&mut self, bytes: &[u8]) -> Result<Array, PilotError> {
        let frames = Array::new();
        let mut input = bytes;
        while let Some(frame) = self.inner.next_frame(&mut input)? {
            frames.push(&js_sys::Uint8Array::from(frame.as_slice()));
        }
        Ok(frames)
    }

    /// Bytes held of the frame in progress (length prefix included).
    #[wasm_bindgen(getter)]
    pub fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Whether the stream could end here cleanly: no partial frame, no error.
    #[wasm_bindgen(getter, js_name = atFrameBoundary)]
    pub fn at_frame_boundary(&self) -> bool {
        self.inner.is_at_frame_boundary()
    }
}
