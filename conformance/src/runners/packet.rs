//! `pilot-packet.json`: the 34-byte header, CRC-32 and decode verdicts (spec §2).
//!
//! Decode cases carry two verdicts, `expect_may` (V-FORK May 2026, which rejects versions
//! other than 1) and `expect_feb` (V-FEB, which accepts any version). pilot-core implements
//! only the newer rule, so only `expect_may` is checked; `expect_feb` and `error_feb` are read
//! and ignored.

use pilot_core::addr::Addr;
use pilot_core::frame::MAGIC_PILT;
use pilot_core::packet::{Flags, Header, PacketError, PacketRef, Protocol, VERSION};
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
    fields: Fields,
    input_flags: u8,
    wire_hex: String,
    pilt_frame_hex: String,
    checksum_hex: String,
    decoded: Fields,
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeCase {
    #[allow(dead_code)]
    name: String,
    wire_hex: String,
    expect_may: Verdict,
    error_may: Option<String>,
    decoded: Option<Fields>,
    // Older reference; not implemented (see the module comment).
    #[allow(dead_code)]
    expect_feb: Verdict,
    #[allow(dead_code)]
    error_feb: Option<String>,
}

#[derive(Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Accept,
    Reject,
}

/// Header fields as the generator prints them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    version: u8,
    flags: u8,
    flag_names: Vec<String>,
    protocol: u8,
    src: String,
    dst: String,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    window: u16,
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
    let fields = &case.fields;
    expect_eq(
        "fields.flags vs input_flags",
        fields.flags,
        case.input_flags,
    )?;
    expect_eq("fields.version", fields.version, VERSION)?;
    let header = Header {
        // The reference's marshaller masks flags to 4 bits; pilot-core masks on construction.
        flags: Flags::from_bits_truncate(case.input_flags),
        protocol: Protocol::from(fields.protocol),
        src: parse_addr("src", &fields.src)?,
        dst: parse_addr("dst", &fields.dst)?,
        src_port: fields.src_port,
        dst_port: fields.dst_port,
        seq: fields.seq,
        ack: fields.ack,
        window: fields.window,
    };
    let payload = hex_field("fields.payload_hex", &fields.payload_hex)?;

    let mut wire = Vec::new();
    PacketRef::new(header, &payload)
        .encode(&mut wire)
        .map_err(|e| format!("encode: {e}"))?;
    expect_bytes("wire", &wire, &hex_field("wire_hex", &case.wire_hex)?)?;
    expect_bytes(
        "checksum",
        wire.get(30..34).unwrap_or_default(),
        &hex_field("checksum_hex", &case.checksum_hex)?,
    )?;
    let pilt: Vec<u8> = MAGIC_PILT.iter().chain(&wire).copied().collect();
    expect_bytes(
        "PILT frame",
        &pilt,
        &hex_field("pilt_frame_hex", &case.pilt_frame_hex)?,
    )?;

    let packet = PacketRef::decode(&wire).map_err(|e| format!("decode of own encoding: {e}"))?;
    check_fields(&packet, &case.decoded)
}

fn check_decode(case: &DecodeCase) -> Result<(), String> {
    let wire = hex_field("wire_hex", &case.wire_hex)?;
    let result = PacketRef::decode(&wire);
    match (&case.expect_may, result) {
        (Verdict::Accept, Ok(packet)) => {
            let decoded = case.decoded.as_ref().ok_or("accept case without decoded")?;
            check_fields(&packet, decoded)
        }
        (Verdict::Accept, Err(e)) => Err(format!("rejected ({e}), reference accepted")),
        (Verdict::Reject, Ok(_)) => Err("accepted, reference rejected".into()),
        (Verdict::Reject, Err(error)) => {
            let go_error = case
                .error_may
                .as_deref()
                .ok_or("reject case without error_may")?;
            let same_class = match error {
                PacketError::TooShort { len } => {
                    go_error == format!("packet too short: {len} bytes (min 34)")
                }
                PacketError::Truncated { have, need } => {
                    go_error == format!("packet truncated: have {have} bytes, need {need}")
                }
                PacketError::ChecksumMismatch { .. } => go_error == "checksum mismatch",
                PacketError::UnsupportedVersion { version } => {
                    go_error.starts_with(&format!("unsupported protocol version {version} "))
                }
                PacketError::PayloadTooLarge { .. } => false,
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

fn check_fields(packet: &PacketRef<'_>, want: &Fields) -> Result<(), String> {
    let h = &packet.header;
    expect_eq("version", VERSION, want.version)?;
    expect_eq("flags", h.flags.bits(), want.flags)?;
    let names: Vec<&str> = [
        (Flags::SYN, "SYN"),
        (Flags::ACK, "ACK"),
        (Flags::FIN, "FIN"),
        (Flags::RST, "RST"),
    ]
    .into_iter()
    .filter(|(flag, _)| h.flags.contains(*flag))
    .map(|(_, name)| name)
    .collect();
    expect_eq(
        "flag_names",
        names,
        want.flag_names.iter().map(String::as_str).collect(),
    )?;
    expect_eq("protocol", u8::from(h.protocol), want.protocol)?;
    expect_eq("src", h.src, parse_addr("src", &want.src)?)?;
    expect_eq("dst", h.dst, parse_addr("dst", &want.dst)?)?;
    expect_eq("src text", h.src.to_string().as_str(), want.src.as_str())?;
    expect_eq("dst text", h.dst.to_string().as_str(), want.dst.as_str())?;
    expect_eq("src_port", h.src_port, want.src_port)?;
    expect_eq("dst_port", h.dst_port, want.dst_port)?;
    expect_eq("seq", h.seq, want.seq)?;
    expect_eq("ack", h.ack, want.ack)?;
    expect_eq("window", h.window, want.window)?;
    expect_bytes(
        "payload",
        packet.payload,
        &hex_field("payload_hex", &want.payload_hex)?,
    )
}

fn parse_addr(what: &str, text: &str) -> Result<Addr, String> {
    text.parse().map_err(|e| format!("{what} {text:?}: {e}"))
}
