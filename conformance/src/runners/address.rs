//! `pilot-address.json`: address text ⇄ binary and socket address text (spec §1).
//!
//! Rejections are checked against the class of the Go error text, so a case fails when
//! pilot-core rejects the input for a different reason than the reference did.

use pilot_core::addr::{Addr, AddrError, SocketAddr};
use serde::Deserialize;

use crate::{case_name, expect_bytes, expect_eq, hex_field, typed, CaseOutcome, VectorFile};

#[derive(Deserialize)]
#[serde(tag = "direction", rename_all = "snake_case")]
enum Case {
    TextToBinary(TextCase),
    BinaryToText(BinaryCase),
    SocketTextToBinary(SocketCase),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextCase {
    #[allow(dead_code)]
    name: String,
    input: String,
    valid: bool,
    binary_hex: Option<String>,
    canonical: Option<String>,
    network: Option<u16>,
    node: Option<u32>,
    error: Option<String>,
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BinaryCase {
    #[allow(dead_code)]
    name: String,
    binary_hex: String,
    network: u16,
    node: u32,
    text: String,
    broadcast: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SocketCase {
    #[allow(dead_code)]
    name: String,
    input: String,
    valid: bool,
    binary_hex: Option<String>,
    canonical: Option<String>,
    network: Option<u16>,
    node: Option<u32>,
    port: Option<u16>,
    error: Option<String>,
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
        Case::TextToBinary(case) => check_text(case),
        Case::BinaryToText(case) => check_binary(case),
        Case::SocketTextToBinary(case) => check_socket(case),
    }
}

fn check_text(case: &TextCase) -> Result<(), String> {
    let parsed = case.input.parse::<Addr>();
    if !case.valid {
        return expect_rejection(parsed.map(|_| ()), case.error.as_deref());
    }
    let addr = parsed.map_err(|e| format!("rejected a valid address: {e}"))?;
    check_addr(&addr, case.binary_hex.as_deref(), case.network, case.node)?;
    let canonical = case
        .canonical
        .as_deref()
        .ok_or("valid case without canonical")?;
    expect_eq("canonical text", addr.to_string().as_str(), canonical)?;
    // The canonical text must parse back to the same address.
    expect_eq(
        "canonical re-parse",
        canonical.parse::<Addr>().ok(),
        Some(addr),
    )
}

fn check_binary(case: &BinaryCase) -> Result<(), String> {
    let binary = hex_field("binary_hex", &case.binary_hex)?;
    let addr = Addr::decode(&binary).map_err(|e| format!("decode: {e}"))?;
    expect_eq("network", addr.network, case.network)?;
    expect_eq("node", addr.node, case.node)?;
    expect_eq("text", addr.to_string().as_str(), case.text.as_str())?;
    expect_eq("broadcast", addr.is_broadcast(), case.broadcast)?;
    expect_bytes("re-encoded", &addr.to_bytes(), &binary)
}

fn check_socket(case: &SocketCase) -> Result<(), String> {
    let parsed = case.input.parse::<SocketAddr>();
    if !case.valid {
        return expect_rejection(parsed.map(|_| ()), case.error.as_deref());
    }
    let socket = parsed.map_err(|e| format!("rejected a valid socket address: {e}"))?;
    check_addr(
        &socket.addr,
        case.binary_hex.as_deref(),
        case.network,
        case.node,
    )?;
    expect_eq("port", Some(socket.port), case.port)?;
    let canonical = case
        .canonical
        .as_deref()
        .ok_or("valid case without canonical")?;
    expect_eq("canonical text", socket.to_string().as_str(), canonical)
}

fn check_addr(
    addr: &Addr,
    binary_hex: Option<&str>,
    network: Option<u16>,
    node: Option<u32>,
) -> Result<(), String> {
    let binary = hex_field(
        "binary_hex",
        binary_hex.ok_or("valid case without binary_hex")?,
    )?;
    expect_bytes("binary", &addr.to_bytes(), &binary)?;
    expect_eq("decoded binary", Addr::decode(&binary).ok(), Some(*addr))?;
    expect_eq("network", Some(addr.network), network)?;
    expect_eq("node", Some(addr.node), node)
}

/// The input must be rejected, and for the same kind of reason as the Go error text gives.
fn expect_rejection(result: Result<(), AddrError>, go_error: Option<&str>) -> Result<(), String> {
    let error = match result {
        Ok(()) => return Err("accepted an invalid input".into()),
        Err(error) => error,
    };
    let go_error = go_error.ok_or("invalid case without error text")?;
    let same_class = match error {
        AddrError::MissingColon => {
            go_error.starts_with("invalid address:") && go_error.contains("(expected N:")
        }
        AddrError::WrongGroupCount => go_error.contains("expected 3 dot-separated hex groups"),
        AddrError::InvalidNetwork => go_error.starts_with("invalid network ID"),
        AddrError::WrongGroupLength => go_error.contains("(expected 4 digits)"),
        AddrError::InvalidHexDigit => {
            go_error.starts_with("invalid hex group") && go_error.contains("invalid syntax")
        }
        AddrError::NetworkMismatch { decimal, hex } => {
            go_error == format!("network mismatch: decimal {decimal} != hex 0x{hex:04X}")
        }
        AddrError::InvalidPort => go_error.starts_with("invalid port"),
        AddrError::MissingPort | AddrError::TooShort { .. } => false,
    };
    if same_class {
        Ok(())
    } else {
        Err(format!(
            "rejected as {error:?}, reference said {go_error:?}"
        ))
    }
}
