//! `pilot-dataexchange.json`: data exchange frames on port 1001 (spec §10.3).
//!
//! Decode cases carry a May 2026 verdict (`expect_may`, with file name checks) and a Feb 2026
//! verdict (`expect_feb`, without). pilot-core implements only the newer rules, so only the
//! May verdict is checked; the Feb fields are read and ignored.
//!
//! Every decode case is run twice: through the one-shot decoder and through the incremental
//! decoder fed one byte at a time, which must agree.

use pilot_core::services::dataexchange::{
    DataExchangeError, Frame, FrameDecoder, FrameType, Reply, HEADER_LEN,
};
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
    #[serde(rename = "type")]
    frame_type: u32,
    type_name: String,
    filename: String,
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
    expect_may: Verdict,
    decoded_may: Option<Decoded>,
    error_may: Option<String>,
    // Older reference without file name checks; not implemented (see the module comment).
    #[allow(dead_code)]
    expect_feb: Verdict,
    #[allow(dead_code)]
    decoded_feb: Option<Decoded>,
    #[allow(dead_code)]
    error_feb: Option<String>,
}

#[derive(Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Accept,
    Reject,
}

/// A decoded frame as the generator prints it; `payload_hex` is the body after any name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decoded {
    #[serde(rename = "type")]
    frame_type: u32,
    type_name: String,
    filename: String,
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
    let frame = match FrameType::from(case.frame_type) {
        FrameType::Text => Frame::Text(&payload),
        FrameType::Binary => Frame::Binary(&payload),
        FrameType::Json => Frame::Json(&payload),
        FrameType::File => Frame::File {
            name: &case.filename,
            data: &payload,
        },
        FrameType::Other(frame_type) => Frame::Other {
            frame_type,
            payload: &payload,
        },
    };
    expect_eq(
        "type_name",
        frame.frame_type().to_string().as_str(),
        case.type_name.as_str(),
    )?;

    let want = hex_field("wire_hex", &case.wire_hex)?;
    let mut wire = Vec::new();
    frame
        .encode(&mut wire)
        .map_err(|e| format!("encode: {e}"))?;
    expect_bytes("wire", &wire, &want)?;
    expect_eq("encoded_len", frame.encoded_len(), want.len())?;

    let (decoded, used) =
        Frame::decode(&wire).map_err(|e| format!("decode of own encoding: {e}"))?;
    expect_eq("consumed", used, wire.len())?;
    check_decoded(&decoded, &case.decoded)?;

    // Server replies are TEXT frames; those cases must also round-trip through `Reply`.
    if let Frame::Text(text) = frame {
        if text.starts_with(b"ACK ") {
            let reply = Reply::parse(text).map_err(|e| format!("reply: {e}"))?;
            let mut rebuilt = Vec::new();
            reply
                .encode(&mut rebuilt)
                .map_err(|e| format!("reply encode: {e}"))?;
            expect_bytes("rebuilt reply", &rebuilt, &want)?;
        }
    }
    Ok(())
}

fn check_decode(case: &DecodeCase) -> Result<(), String> {
    let wire = hex_field("wire_hex", &case.wire_hex)?;
    let one_shot = Frame::decode(&wire);
    let incremental = decode_byte_by_byte(&wire);
    expect_eq(
        "incremental vs one-shot",
        incremental.clone().map(|(frame, _)| frame),
        one_shot.map(|(frame, _)| owned(&frame)),
    )?;

    match (&case.expect_may, one_shot) {
        (Verdict::Accept, Ok((frame, used))) => {
            let want = case
                .decoded_may
                .as_ref()
                .ok_or("accept case without decoded_may")?;
            check_decoded(&frame, want)?;
            // Bytes after the frame belong to the next frame and are not consumed.
            let declared = wire
                .get(4..HEADER_LEN)
                .and_then(|len| len.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or("accepted a frame shorter than its header")?;
            expect_eq(
                "consumed",
                Ok(used),
                usize::try_from(declared).map(|d| d + HEADER_LEN),
            )?;
            expect_eq(
                "incremental consumed",
                incremental.map(|(_, used)| used),
                Ok(used),
            )
        }
        (Verdict::Accept, Err(e)) => Err(format!("rejected ({e}), reference accepted")),
        (Verdict::Reject, Ok(_)) => Err("accepted, reference rejected".into()),
        (Verdict::Reject, Err(error)) => {
            let go_error = case
                .error_may
                .as_deref()
                .ok_or("reject case without error_may")?;
            let same_class = match error {
                DataExchangeError::Truncated { .. } => {
                    go_error == "EOF" || go_error == "unexpected EOF"
                }
                DataExchangeError::FrameTooLarge { len } => {
                    go_error == format!("frame too large: {len}")
                }
                DataExchangeError::FileNameTooLong { len } => {
                    go_error.starts_with(&format!("filename too long: {len} bytes"))
                }
                DataExchangeError::FileNameNotBaseName => {
                    go_error.contains("path traversal characters not allowed")
                }
                DataExchangeError::FileNameNotUtf8 | DataExchangeError::MalformedReply => false,
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

fn check_decoded(frame: &Frame<'_>, want: &Decoded) -> Result<(), String> {
    expect_eq("type", u32::from(frame.frame_type()), want.frame_type)?;
    expect_eq(
        "type_name",
        frame.frame_type().to_string().as_str(),
        want.type_name.as_str(),
    )?;
    let name = match frame {
        Frame::File { name, .. } => *name,
        _ => "",
    };
    expect_eq("filename", name, want.filename.as_str())?;
    expect_bytes(
        "payload",
        frame.body(),
        &hex_field("payload_hex", &want.payload_hex)?,
    )
}

/// A frame detached from its buffer, to compare the two decoders' results.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnedFrame {
    frame_type: FrameType,
    name: Option<String>,
    body: Vec<u8>,
}

fn owned(frame: &Frame<'_>) -> OwnedFrame {
    OwnedFrame {
        frame_type: frame.frame_type(),
        name: match frame {
            Frame::File { name, .. } => Some((*name).to_owned()),
            _ => None,
        },
        body: frame.body().to_vec(),
    }
}

/// Feeds `wire` one byte at a time and returns the first frame with its length, or the error
/// (a truncation is reported by `finish`).
fn decode_byte_by_byte(wire: &[u8]) -> Result<(OwnedFrame, usize), DataExchangeError> {
    let mut decoder = FrameDecoder::new();
    for (fed, byte) in wire.iter().enumerate() {
        decoder.feed(std::slice::from_ref(byte));
        if let Some(frame) = decoder.next_frame()? {
            return Ok((owned(&frame), fed + 1));
        }
    }
    decoder.finish()?;
    // `finish` succeeds only with nothing pending, i.e. an empty input.
    Err(DataExchangeError::Truncated {
        have: 0,
        need: HEADER_LEN,
    })
}
