//! `pilot-eventstream.json`: event stream events on port 1002 (spec §10.4).
//!
//! The file has a single verdict per case (the Feb and May references agree). Every decode
//! case is run through the one-shot decoder and through the incremental decoder fed one byte
//! at a time, which must agree.

use pilot_core::services::eventstream::{Event, EventDecoder, EventStreamError};
use serde::Deserialize;

use crate::{case_name, expect_bytes, expect_eq, hex_field, typed, CaseOutcome, VectorFile};

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Case {
    Encode(EncodeCase),
    Decode(DecodeCase),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodeCase {
    #[allow(dead_code)]
    name: String,
    topic: String,
    payload_hex: String,
    wire_hex: String,
    decoded: Decoded,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeCase {
    #[allow(dead_code)]
    name: String,
    wire_hex: String,
    expect: Verdict,
    decoded: Option<Decoded>,
    error: Option<String>,
}

#[derive(Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Accept,
    Reject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decoded {
    topic: String,
    payload_hex: String,
}

/// Runs every case of the file.
pub fn run(file: &VectorFile) -> Vec<CaseOutcome> {
    file.cases
        .iter()
        .map(|c| CaseOutcome::new(case_name(c), typed::<Case>(c).and_then(|case| check(&case))))
        .collect()
}

fn check(case: &Case) -> Result<(), String> {
    match case {
        Case::Encode(case) => check_encode(case),
        Case::Decode(case) => check_decode(case),
    }
}

fn check_encode(case: &EncodeCase) -> Result<(), String> {
    let payload = hex_field("payload_hex", &case.payload_hex)?;
    let event = Event::new(case.topic.as_bytes(), &payload);
    let want = hex_field("wire_hex", &case.wire_hex)?;

    let mut wire = Vec::new();
    event
        .encode(&mut wire)
        .map_err(|e| format!("encode: {e}"))?;
    expect_bytes("wire", &wire, &want)?;
    expect_eq("encoded_len", event.encoded_len(), want.len())?;

    let (decoded, used) =
        Event::decode(&wire).map_err(|e| format!("decode of own encoding: {e}"))?;
    expect_eq("consumed", used, wire.len())?;
    check_decoded(&decoded, &case.decoded)
}

fn check_decode(case: &DecodeCase) -> Result<(), String> {
    let wire = hex_field("wire_hex", &case.wire_hex)?;
    let one_shot = Event::decode(&wire);
    let incremental = decode_byte_by_byte(&wire);
    expect_eq(
        "incremental vs one-shot",
        incremental.clone(),
        one_shot.map(|(event, used)| (owned(&event), used)),
    )?;

    match (&case.expect, one_shot) {
        (Verdict::Accept, Ok((event, used))) => {
            let want = case.decoded.as_ref().ok_or("accept case without decoded")?;
            check_decoded(&event, want)?;
            expect_eq("consumed", used, wire.len())
        }
        (Verdict::Accept, Err(e)) => Err(format!("rejected ({e}), reference accepted")),
        (Verdict::Reject, Ok(_)) => Err("accepted, reference rejected".into()),
        (Verdict::Reject, Err(error)) => {
            let go_error = case.error.as_deref().ok_or("reject case without error")?;
            let same_class = match error {
                EventStreamError::Truncated { .. } => {
                    go_error == "EOF" || go_error == "unexpected EOF"
                }
                EventStreamError::TopicTooLong { len } => {
                    go_error == format!("topic too long: {len}")
                }
                EventStreamError::PayloadTooLarge { len } => {
                    go_error == format!("payload too large: {len}")
                }
            };
            if same_class {
                Ok(())
            } else {
                Err(format!(
                    "rejected as {error:?}, reference said {go_error:?}"
                ))
            }
        }
    }
}

fn check_decoded(event: &Event<'_>, want: &Decoded) -> Result<(), String> {
    expect_bytes("topic", event.topic, want.topic.as_bytes())?;
    expect_bytes(
        "payload",
        event.payload,
        &hex_field("payload_hex", &want.payload_hex)?,
    )
}

/// An event detached from its buffer: (topic, payload).
type OwnedEvent = (Vec<u8>, Vec<u8>);

fn owned(event: &Event<'_>) -> OwnedEvent {
    (event.topic.to_vec(), event.payload.to_vec())
}

/// Feeds `wire` one byte at a time and returns the first event with its length, or the error
/// (a truncation is reported by `finish`).
fn decode_byte_by_byte(wire: &[u8]) -> Result<(OwnedEvent, usize), EventStreamError> {
    let mut decoder = EventDecoder::new();
    for (fed, byte) in wire.iter().enumerate() {
        decoder.feed(std::slice::from_ref(byte));
        if let Some(event) = decoder.next_event()? {
            return Ok((owned(&event), fed + 1));
        }
    }
    decoder.finish()?;
    // `finish` succeeds only with nothing pending, i.e. an empty input.
    Err(EventStreamError::Truncated { have: 0, need: 6 })
}
