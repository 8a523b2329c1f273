//! Service codecs (spec §10): data exchange (port 1001) and event stream (port 1002).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use js_sys::{Array, Uint8Array};
use pilot_core::services::dataexchange::{self, Frame, FrameType};
use pilot_core::services::eventstream::{self, Event};
use wasm_bindgen::prelude::*;

use crate::error::PilotError;
use crate::js::{bytes_field, get, uint_field, Obj};

#[wasm_bindgen(typescript_custom_section)]
const TS_SERVICES: &str = r#"
/** A data exchange frame (spec §10.3). type: 1 TEXT, 2 BINARY, 3 JSON, 4 FILE, other values pass through. */
export interface DataExchangeFrame {
  type: number;
  /** For FILE: the file's bytes (after the name). */
  payload: Uint8Array;
  /** For FILE: the base name (may be empty). */
  filename?: string;
}

/** A decoded data exchange frame. */
export interface DecodedDataExchangeFrame extends DataExchangeFrame {
  /** TEXT, BINARY, JSON, FILE or UNKNOWN(n). */
  typeName: string;
  /** Bytes of input the frame occupied. */
  consumed: number;
}

/** A decoded event (spec §10.4). */
export interface DecodedEvent {
  /** The topic as text (invalid UTF-8 replaced); exact bytes in topicBytes. */
  topic: string;
  topicBytes: Uint8Array;
  payload: Uint8Array;
  /** Bytes of input the event occupied. */
  consumed: number;
}
"#;

/// Encodes one data exchange frame: u32 type ‖ u32 length ‖ payload (FILE: u16 name length
/// ‖ name ‖ data). Refuses what a V-NEW reader would reject (payload > 16 MiB, FILE names
/// that are paths or longer than 255 bytes).
#[wasm_bindgen(js_name = encodeDataExchangeFrame)]
pub fn encode_data_exchange_frame(
    #[wasm_bindgen(unchecked_param_type = "DataExchangeFrame")] frame: JsValue,
) -> Result<Vec<u8>, PilotError> {
    let frame_type = FrameType::from(uint_field(&frame, "type", u32::MAX.into(), None)? as u32);
    let payload = bytes_field(&frame, "payload")?;
    let filename = get(&frame, "filename").as_string().unwrap_or_default();
    let frame = match frame_type {
        FrameType::Text => Frame::Text(&payload),
        FrameType::Binary => Frame::Binary(&payload),
        FrameType::Json => Frame::Json(&payload),
        FrameType::File => Frame::File {
            name: &filename,
            data: &payload,
        },
        FrameType::Other(frame_type) => Frame::Other {
            frame_type,
            payload: &payload,
        },
    };
    let mut out = Vec::new();
    frame.encode(&mut out)?;
    Ok(out)
}

/// Decodes the data exchange frame at the start of `bytes`.
#[wasm_bindgen(js_name = decodeDataExchangeFrame, unchecked_return_type = "DecodedDataExchangeFrame")]
pub fn decode_data_exchange_frame(bytes: &[u8]) -> Result<JsValue, PilotError> {
    let (frame, consumed) = Frame::decode(bytes)?;
    Ok(data_exchange_object(&frame)
        .set("consumed", consumed as u32)
        .build())
}

fn data_exchange_object(frame: &Frame<'_>) -> Obj {
    let frame_type = frame.frame_type();
    let mut out = Obj::new()
        .set("type", u32::from(frame_type))
        .set("typeName", frame_type.to_string())
        .bytes("payload", frame.body());
    if let Frame::File { name, .. } = frame {
        out = out.set("filename", *name);
    }
    out
}

/// Incremental decoder for the byte stream of a data exchange connection.
#[wasm_bindgen]
pub struct DataExchangeDecoder {
    inner: dataexchange::FrameDecoder,
}

impl Default for DataExchangeDecoder {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl DataExchangeDecoder {
    /// An empty decoder.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self {
            inner: dataexchange::FrameDecoder::new(),
        }
    }

    /// Feeds stream bytes; returns every frame now complete. After an error every call throws.
    #[wasm_bindgen(unchecked_return_type = "DecodedDataExchangeFrame[]")]
    pub fn push(&mut self, bytes: &[u8]) -> Result<Array, PilotError> {
        self.inner.feed(bytes);
        let frames = Array::new();
        while let Some(frame) = self.inner.next_frame()? {
            let consumed = frame.encoded_len() as u32;
            frames.push(
                &data_exchange_object(&frame)
                    .set("consumed", consumed)
                    .build(),
            );
        }
        Ok(frames)
    }

    /// At end of stream: throws `DX_TRUNCATED` if it stopped inside a frame.
    pub fn finish(&self) -> Result<(), PilotError> {
        Ok(self.inner.finish()?)
    }
}

/// Encodes one event: u16 topic length ‖ topic ‖ u32 payload length ‖ payload.
/// The first event a client sends is its subscription (`payload` empty, topic `*` = all).
#[wasm_bindgen(js_name = encodeEvent)]
pub fn encode_event(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] topic: JsValue,
    payload: Option<Vec<u8>>,
) -> Result<Vec<u8>, PilotError> {
    let topic = topic_bytes(&topic)?;
    let payload = payload.unwrap_or_default();
    let mut out = Vec::new();
    Event::new(&topic, &payload).encode(&mut out)?;
    Ok(out)
}

/// Decodes the event at the start of `bytes`.
#[wasm_bindgen(js_name = decodeEvent, unchecked_return_type = "DecodedEvent")]
pub fn decode_event(bytes: &[u8]) -> Result<JsValue, PilotError> {
    let (event, consumed) = Event::decode(bytes)?;
    Ok(event_object(&event)
        .set("consumed", consumed as u32)
        .build())
}

fn event_object(event: &Event<'_>) -> Obj {
    Obj::new()
        .set("topic", String::from_utf8_lossy(event.topic).into_owned())
        .bytes("topicBytes", event.topic)
        .bytes("payload", event.payload)
}

fn topic_bytes(topic: &JsValue) -> Result<Vec<u8>, PilotError> {
    if let Some(text) = topic.as_string() {
        return Ok(text.into_bytes());
    }
    topic
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| PilotError::range("topic must be a string or a Uint8Array"))
}

/// Incremental decoder for the byte stream of an event stream connection.
#[wasm_bindgen]
pub struct EventDecoder {
    inner: eventstream::EventDecoder,
}

impl Default for EventDecoder {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl EventDecoder {
    /// An empty decoder.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self {
            inner: eventstream::EventDecoder::new(),
        }
    }

    /// Feeds stream bytes; returns every event now complete. After an error every call throws.
    #[wasm_bindgen(unchecked_return_type = "DecodedEvent[]")]
    pub fn push(&mut self, bytes: &[u8]) -> Result<Array, PilotError> {
        self.inner.feed(bytes);
        let events = Array::new();
        while let Some(event) = self.inner.next_event()? {
            let consumed = event.encoded_len() as u32;
            events.push(&event_object(&event).set("consumed", consumed).build());
        }
        Ok(events)
    }

    /// At end of stream: throws `EVENT_TRUNCATED` if it stopped inside an event.
    pub fn finish(&self) -> Result<(), PilotError> {
        Ok(self.inner.finish()?)
    }
}
