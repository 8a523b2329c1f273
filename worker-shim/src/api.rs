//! The HTTP API of the `PilotNode` Durable Object (`API.md`): request bodies, answers and
//! the error shape, shared by the Durable Object and [`PilotClient`](crate::client).
//!
//! Everything here is plain data with serde, so the contract is tested natively.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pilot_core::addr::Addr;
use serde::{Deserialize, Serialize};

/// Wait of an operation that names no `timeout_ms` (API.md).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Longest wait an operation accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(60_000);
/// Largest read answered at once when `max_bytes` is not given.
pub const DEFAULT_READ_BYTES: usize = 64 * 1024;
/// Header that marks the end of a stream on an empty read answer.
pub const EOF_HEADER: &str = "pilot-eof";

/// The error codes of the API, one per distinct verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (body, address, port, parameter).
    BadRequest,
    /// The node is not registered yet or its transport is down.
    NotReady,
    /// The wait ended before the operation completed.
    Timeout,
    /// The peer did not answer the key exchange, or the registry has no address for it.
    PeerUnreachable,
    /// The peer refused us because it does not trust us (or we it).
    NotTrusted,
    /// No connection has this ID.
    UnknownConnection,
    /// The connection was closed or reset.
    ConnectionClosed,
    /// A bounded queue is full; retry later.
    QueueFull,
    /// The registry refused a request or could not be reached.
    RegistryError,
    /// A failure inside the Worker.
    Internal,
}

impl ErrorCode {
    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::NotTrusted => 403,
            ErrorCode::UnknownConnection => 404,
            ErrorCode::Timeout => 408,
            ErrorCode::ConnectionClosed => 410,
            ErrorCode::QueueFull => 429,
            ErrorCode::Internal => 500,
            ErrorCode::RegistryError | ErrorCode::PeerUnreachable => 502,
            ErrorCode::NotReady => 503,
        }
    }

    /// The code as it appears on the wire (`not_ready`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Timeout => "timeout",
            ErrorCode::PeerUnreachable => "peer_unreachable",
            ErrorCode::NotTrusted => "not_trusted",
            ErrorCode::UnknownConnection => "unknown_connection",
            ErrorCode::ConnectionClosed => "connection_closed",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::RegistryError => "registry_error",
            ErrorCode::Internal => "internal",
        }
    }

    /// What a caller should do about it, when the failure itself does not say more.
    pub fn default_hint(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "fix the request; API.md lists every route and body",
            ErrorCode::NotReady => {
                "retry shortly: the node reconnects to the relay and registers on its own"
            }
            ErrorCode::Timeout => "retry, or raise timeout_ms (at most 60000)",
            ErrorCode::PeerUnreachable => {
                "check that the peer is registered and online, then retry"
            }
            ErrorCode::NotTrusted => "ask the peer for trust with POST /v1/handshake",
            ErrorCode::UnknownConnection => {
                "use a connection ID returned by /v1/dial or /v1/accept"
            }
            ErrorCode::ConnectionClosed => "open a new connection",
            ErrorCode::QueueFull => "read pending data first, or retry later",
            ErrorCode::RegistryError => {
                "check PILOT_RELAY_URL and the relay's --registry, then retry"
            }
            ErrorCode::Internal => "retry; if it persists, report it with the Worker's logs",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: `{"error":{"code","message","hint"}}` with the code's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The verdict.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl ApiError {
    /// An error with the code's default hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            hint: code.default_hint().to_string(),
        }
    }

    /// Replaces the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// A `bad_request` error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body of the answer.
    pub fn to_body(&self) -> String {
        let body = ErrorBody {
            error: self.clone(),
        };
        serde_json::to_string(&body).unwrap_or_else(|_| String::from("{\"error\":{}}"))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.code, self.message, self.hint)
    }
}

/// The envelope of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// Parses a JSON request body into `T`, as a `bad_request` on failure.
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(alloc::format!("body: {e}")))
}

/// Parses a peer address in the text form of spec §1.2 (`0:0000.0000.0004`).
pub fn parse_addr(text: &str) -> Result<Addr, ApiError> {
    text.parse::<Addr>().map_err(|_| {
        ApiError::bad_request(alloc::format!("{:?} is not a Pilot address", excerpt(text)))
            .with_hint("write addresses as <network>:<hex>.<hex>.<hex>, e.g. 0:0000.0000.0004")
    })
}

/// Longest piece of a rejected input quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 64;

/// The start of `text` for an error message: an answer must not echo a huge body back.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => alloc::format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_string(),
    }
}

/// The wait of an operation: `timeout_ms` if given (1..=60000), else the default.
pub fn timeout_of(timeout_ms: Option<u64>) -> Result<Duration, ApiError> {
    match timeout_ms {
        None => Ok(DEFAULT_TIMEOUT),
        Some(0) => Err(ApiError::bad_request("timeout_ms must be at least 1")),
        Some(ms) if Duration::from_millis(ms) > MAX_TIMEOUT => Err(ApiError::bad_request(
            alloc::format!("timeout_ms {ms} exceeds the maximum of 60000"),
        )),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// A port for a stream or datagram: 1..=65535.
pub fn check_port(port: u32) -> Result<u16, ApiError> {
    match u16::try_from(port) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ApiError::bad_request(alloc::format!(
            "port {port} is not in 1..=65535"
        ))),
    }
}

/// Decodes standard base64 from a `data` field.
pub fn decode_data(data: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(data)
        .map_err(|e| ApiError::bad_request(alloc::format!("data is not standard base64: {e}")))
}

/// Encodes bytes for a `data` field.
pub fn encode_data(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Parses `key=value&…` query parameters that the API uses (numbers only, no escapes needed).
pub fn query_u64(query: &str, key: &str) -> Result<Option<u64>, ApiError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(alloc::format!(
                    "query parameter {key}={v:?} is not a number"
                ))
            });
        }
    }
    Ok(None)
}

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Our address (`0:0000.0000.0004`), empty before the first registration.
    pub address: String,
    /// Our node ID (0 before the first registration).
    pub node_id: u32,
    /// Our hostname (empty if none).
    pub hostname: String,
    /// Our Ed25519 public key, standard base64.
    pub public_key: String,
    /// The transport in use (`relay`).
    pub transport: String,
    /// Our UDP endpoint as peers see it (empty while the transport is down).
    pub endpoint: String,
    /// Whether the registry holds our current endpoint.
    pub registered: bool,
    /// Whether we registered as a public node.
    pub public: bool,
    /// Datagrams and events dropped because a bounded queue was full.
    pub dropped: u64,
}

/// `POST /v1/hostname` (request and answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hostname {
    /// The hostname.
    pub hostname: String,
}

/// `GET /v1/resolve-hostname` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The node's address.
    pub address: String,
}

/// `POST /v1/ping` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {
    /// The peer's address.
    pub peer: String,
    /// How long to wait for the pong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/ping` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// Round-trip time in milliseconds (the Workers clock: millisecond steps).
    pub rtt_ms: f64,
}

/// `POST /v1/dial` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialRequest {
    /// The peer's address.
    pub peer: String,
    /// The peer's port.
    pub port: u32,
    /// How long to wait for the stream handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/dial` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialed {
    /// The connection ID for the `/v1/conns/{conn}/…` routes.
    pub conn: u64,
    /// The peer's address.
    pub peer: String,
    /// The peer's port.
    pub port: u16,
    /// Our ephemeral port.
    pub local_port: u16,
}

/// `POST /v1/conns/{conn}/write` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Bytes queued on the stream.
    pub written: usize,
}

/// `POST /v1/send-message` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageRequest {
    /// The peer's address.
    pub peer: String,
    /// `text`, `json`, `binary` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The body, standard base64.
    pub data: String,
    /// For `file`: the base name sent along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// How long to wait for the ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/send-message` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReply {
    /// The peer's answer line, e.g. `ACK TEXT 5 bytes`.
    pub reply: String,
}

/// `POST /v1/handshake` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeRequest {
    /// The peer asked for trust.
    pub peer: String,
    /// Why (shown to the peer's operator).
    #[serde(default)]
    pub justification: String,
}

/// `POST /v1/handshake` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `requested`.
    pub status: String,
}

/// One pending trust request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The requester's node ID.
    pub node: u32,
    /// Its address.
    pub address: String,
    /// Its justification (sanitized).
    pub justification: String,
}

/// `GET /v1/handshakes` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingList {
    /// Requests waiting for approval.
    pub pending: Vec<Pending>,
}

/// `POST /v1/handshakes/approve` and `/reject` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The requester's node ID.
    pub node: u32,
    /// Why (reject only).
    #[serde(default)]
    pub reason: String,
}

/// One trusted node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    /// Its node ID.
    pub node: u32,
    /// Its address.
    pub address: String,
}

/// `GET /v1/trusted` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedList {
    /// Nodes we trust.
    pub trusted: Vec<TrustedPeer>,
}

/// `POST /v1/listen` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRequest {
    /// The local port.
    pub port: u32,
}

/// `POST /v1/listen` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAnswer {
    /// The port listened on.
    pub port: u16,
}

/// `POST /v1/accept` and `/v1/recv-from` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortWait {
    /// The listened port.
    pub port: u32,
    /// How long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/accept` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptAnswer {
    /// The connection ID.
    pub conn: u64,
    /// The peer's address.
    pub peer: String,
    /// The peer's port.
    pub peer_port: u16,
    /// Our port.
    pub port: u16,
}

/// `POST /v1/send-to` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendTo {
    /// The peer's address.
    pub peer: String,
    /// Its port.
    pub port: u32,
    /// The payload, standard base64 (at least one byte).
    pub data: String,
}

/// `POST /v1/recv-from` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatagramAnswer {
    /// The sender's address.
    pub from: String,
    /// Its port.
    pub src_port: u16,
    /// Our port.
    pub port: u16,
    /// The payload, standard base64.
    pub data: String,
}

/// `POST /v1/publish` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The broker's node.
    pub peer: String,
    /// The topic.
    pub topic: String,
    /// The payload, standard base64.
    pub data: String,
    /// How long to wait for the broker's stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/subscribe` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    /// The broker's node.
    pub peer: String,
    /// The topic (`*` for all).
    pub topic: String,
}

/// `POST /v1/subscribe` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionAnswer {
    /// The subscription ID for `/v1/subscriptions/{id}/next`.
    pub subscription: u64,
}

/// A body that carries only an optional `timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeoutOnly {
    /// How long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/subscriptions/{id}/next` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAnswer {
    /// The topic (lossy UTF-8).
    pub topic: String,
    /// The payload, standard base64.
    pub data: String,
}

/// An empty JSON object answer (`{}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let body = ApiError::new(ErrorCode::NotReady, "relay down").to_body();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "not_ready");
        assert_eq!(json["error"]["message"], "relay down");
        assert!(!json["error"]["hint"].as_str().unwrap().is_empty());
        let back: ErrorBody = serde_json::from_str(&body).unwrap();
        assert_eq!(back.error.code, ErrorCode::NotReady);
    }

    #[test]
    fn every_code_is_an_http_error_and_spelled_as_serde_spells_it() {
        use ErrorCode::*;
        for code in [
            BadRequest,
            NotReady,
            Timeout,
            PeerUnreachable,
            NotTrusted,
            UnknownConnection,
            ConnectionClosed,
            QueueFull,
            RegistryError,
            Internal,
        ] {
            assert!((400..600).contains(&code.status()), "{code}");
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, alloc::format!("\"{}\"", code.as_str()));
        }
        assert_eq!(Timeout.status(), 408);
    }

    #[test]
    fn timeouts_default_and_are_bounded() {
        assert_eq!(timeout_of(None).unwrap(), DEFAULT_TIMEOUT);
        assert_eq!(timeout_of(Some(250)).unwrap(), Duration::from_millis(250));
        assert_eq!(timeout_of(Some(60_000)).unwrap(), MAX_TIMEOUT);
        assert_eq!(
            timeout_of(Some(60_001)).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(timeout_of(Some(0)).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn a_huge_bad_address_is_not_echoed_whole() {
        let huge = "a".repeat(1024 * 1024);
        let err = parse_addr(&huge).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.len() < 200, "{} bytes", err.message.len());
        assert!(err.message.starts_with("\"aaaa"));
    }

    #[test]
    fn addresses_ports_and_data_are_validated() {
        assert_eq!(parse_addr("0:0000.0000.0004").unwrap(), Addr::new(0, 4));
        assert_eq!(parse_addr("nope").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(check_port(7).unwrap(), 7);
        assert!(check_port(0).is_err());
        assert!(check_port(65_536).is_err());
        assert_eq!(decode_data(&encode_data(b"hi")).unwrap(), b"hi");
        assert!(decode_data("***").is_err());
    }

    #[test]
    fn query_numbers_are_found_and_checked() {
        assert_eq!(
            query_u64("max_bytes=10&timeout_ms=5", "timeout_ms").unwrap(),
            Some(5)
        );
        assert_eq!(query_u64("", "timeout_ms").unwrap(), None);
        assert!(query_u64("timeout_ms=x", "timeout_ms").is_err());
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        let ping: PingRequest = parse_body(br#"{"peer":"0:0000.0000.0001"}"#).unwrap();
        assert_eq!(ping.timeout_ms, None);
        let message: SendMessageRequest =
            parse_body(br#"{"peer":"0:0000.0000.0001","type":"text","data":"aGk="}"#).unwrap();
        assert_eq!(message.kind, "text");
        assert_eq!(
            parse_body::<DialRequest>(b"{}").unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn answers_carry_the_field_names_of_the_contract() {
        let names = |value: serde_json::Value| -> alloc::vec::Vec<String> {
            let mut keys: alloc::vec::Vec<String> =
                value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let accept = AcceptAnswer {
            conn: 1,
            peer: "0:0000.0000.0004".into(),
            peer_port: 49152,
            port: 1000,
        };
        assert_eq!(
            names(serde_json::to_value(accept).unwrap()),
            ["conn", "peer", "peer_port", "port"]
        );
        let datagram = DatagramAnswer {
            from: "0:0000.0000.0004".into(),
            src_port: 5,
            port: 6,
            data: "aGk=".into(),
        };
        assert_eq!(
            names(serde_json::to_value(datagram).unwrap()),
            ["data", "from", "port", "src_port"]
        );
        let dialed = Dialed {
            conn: 1,
            peer: "0:0000.0000.0004".into(),
            port: 7,
            local_port: 49152,
        };
        assert_eq!(
            names(serde_json::to_value(dialed).unwrap()),
            ["conn", "local_port", "peer", "port"]
        );
        let pending = PendingList {
            pending: alloc::vec![Pending {
                node: 4,
                address: "0:0000.0000.0004".into(),
                justification: "hi".into(),
            }],
        };
        let json = serde_json::to_value(pending).unwrap();
        assert_eq!(
            names(json["pending"][0].clone()),
            ["address", "justification", "node"]
        );
        assert_eq!(serde_json::to_string(&Empty {}).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&SubscriptionAnswer { subscription: 3 }).unwrap(),
            r#"{"subscription":3}"#
        );
    }

    #[test]
    fn optional_bodies_parse_when_fields_are_absent() {
        let wait: PortWait = parse_body(br#"{"port":1000}"#).unwrap();
        assert_eq!(wait.timeout_ms, None);
        let decision: Decision = parse_body(br#"{"node":9}"#).unwrap();
        assert_eq!(decision.reason, "");
        let next: TimeoutOnly = parse_body(b"{}").unwrap();
        assert_eq!(next, TimeoutOnly::default());
        let publish: PublishRequest =
            parse_body(br#"{"peer":"0:0000.0000.0004","topic":"t","data":""}"#).unwrap();
        assert_eq!(publish.timeout_ms, None);
    }
}
