//! A typed client of the PilotNode HTTP API (`worker-shim/API.md`), reached from outside as
//! `http://127.0.0.1:<port>/pilot/v1/...` with `Authorization: Bearer <PILOT_API_TOKEN>`.
//!
//! Plain HTTP/1.1 over loopback, one TCP connection per request: the Worker under
//! `wrangler dev` is local, so there is nothing to pool or encrypt.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Extra time a request may take beyond the operation's own `timeout_ms`.
const REQUEST_SLACK: Duration = Duration::from_secs(10);
/// Time a request without a `timeout_ms` may take.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Header the read route sets on the empty answer at end of stream.
const EOF_HEADER: &str = "pilot-eof";

/// Why an API call failed.
#[derive(Debug)]
pub enum ApiError {
    /// The Worker answered with an error body (API.md: `{"error":{code,message,hint}}`).
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The error code (`not_ready`, `timeout`, …).
        code: String,
        /// What happened.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The answer was not what the contract promises (status, body shape).
    Unexpected(String),
    /// No answer: connection refused or reset, or the request timed out.
    Transport(String),
}

impl ApiError {
    /// The API error code, if the Worker answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Api {
                status,
                code,
                message,
                hint,
            } => write!(f, "{status} {code}: {message} (hint: {hint})"),
            ApiError::Unexpected(what) => write!(f, "unexpected answer: {what}"),
            ApiError::Transport(what) => write!(f, "no answer from the Worker: {what}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// `GET /v1/info`.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    /// Our address, text form of spec §1.2.
    pub address: String,
    /// Our node ID.
    pub node_id: u32,
    /// Our hostname, if any.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Our Ed25519 public key, base64.
    pub public_key: String,
    /// How we reach the network (`relay`, `tcp`, …).
    #[serde(default)]
    pub transport: Option<String>,
    /// Our UDP endpoint as the relay announced it (`ip:port`), once connected.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Whether the registry knows us.
    pub registered: bool,
    /// Whether we are a public node.
    #[serde(default)]
    pub public: bool,
}

/// One pending trust handshake (`GET /v1/handshakes`).
#[derive(Debug, Clone, Deserialize)]
pub struct PendingHandshake {
    /// The requesting node's ID, passed back to approve or reject.
    pub node: Value,
    /// Its address.
    pub address: String,
    /// Why it asks.
    #[serde(default)]
    pub justification: String,
}

/// An open stream (`POST /v1/dial`, `POST /v1/accept`).
#[derive(Debug, Clone, Deserialize)]
pub struct Conn {
    /// Connection handle for `/v1/conns/{conn}/...`.
    pub conn: Value,
    /// The remote address.
    pub peer: String,
    /// The remote port (dial) or our port the stream was accepted on (accept).
    pub port: u16,
    /// Our ephemeral port, when dialling.
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The remote port, when accepting.
    #[serde(default)]
    pub peer_port: Option<u16>,
}

/// One received datagram (`POST /v1/recv-from`).
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender address.
    pub from: String,
    /// Sender port.
    pub src_port: u16,
    /// Our port it arrived on.
    pub port: u16,
    /// Payload.
    pub data: Vec<u8>,
}

/// One event of a subscription.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's topic.
    pub topic: String,
    /// Its payload.
    pub data: Vec<u8>,
}

/// What one read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// At least one byte.
    Data(Vec<u8>),
    /// The peer closed its side (`pilot-eof: 1`).
    Eof,
}

/// A client of one Worker's API.
#[derive(Debug, Clone)]
pub struct WorkerApi {
    addr: SocketAddr,
    token: String,
}

impl WorkerApi {
    /// A client of the Worker listening on `addr`, authenticating with `token`.
    pub fn new(addr: SocketAddr, token: String) -> Self {
        Self { addr, token }
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ApiError> {
        self.get_json("/v1/info").await
    }

    /// `POST /v1/ping`; the round-trip time in milliseconds.
    pub async fn ping(&self, peer: &str, timeout: Duration) -> Result<f64, ApiError> {
        let body = json!({"peer": peer, "timeout_ms": millis(timeout)});
        let answer: Value = self.post_json("/v1/ping", &body, Some(timeout)).await?;
        answer
            .get("rtt_ms")
            .and_then(Value::as_f64)
            .ok_or_else(|| ApiError::Unexpected(format!("ping answer without rtt_ms: {answer}")))
    }

    /// `POST /v1/handshake`: asks `peer` for trust.
    pub async fn handshake(&self, peer: &str, justification: &str) -> Result<(), ApiError> {
        let body = json!({"peer": peer, "justification": justification});
        let _: Value = self.post_json("/v1/handshake", &body, None).await?;
        Ok(())
    }

    /// `GET /v1/handshakes`.
    pub async fn pending_handshakes(&self) -> Result<Vec<PendingHandshake>, ApiError> {
        #[derive(Deserialize)]
        struct Answer {
            pending: Vec<PendingHandshake>,
        }
        let answer: Answer = self.get_json("/v1/handshakes").await?;
        Ok(answer.pending)
    }

    /// `POST /v1/handshakes/approve`.
    pub async fn approve(&self, node: &Value) -> Result<(), ApiError> {
        let body = json!({ "node": node });
        let _: Value = self
            .post_json("/v1/handshakes/approve", &body, None)
            .await?;
        Ok(())
    }

    /// `GET /v1/trusted`: the trusted nodes' addresses.
    pub async fn trusted(&self) -> Result<Vec<String>, ApiError> {
        #[derive(Deserialize)]
        struct Trusted {
            address: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            trusted: Vec<Trusted>,
        }
        let answer: Answer = self.get_json("/v1/trusted").await?;
        Ok(answer.trusted.into_iter().map(|t| t.address).collect())
    }

    /// `POST /v1/dial`: an open stream to `peer`:`port`.
    pub async fn dial(&self, peer: &str, port: u16, timeout: Duration) -> Result<Conn, ApiError> {
        let body = json!({"peer": peer, "port": port, "timeout_ms": millis(timeout)});
        self.post_json("/v1/dial", &body, Some(timeout)).await
    }

    /// `POST /v1/conns/{conn}/write`: queues every byte; returns how many.
    pub async fn write(
        &self,
        conn: &Value,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, ApiError> {
        let path = format!(
            "/v1/conns/{}/write?timeout_ms={}",
            handle(conn),
            millis(timeout)
        );
        let (status, _, body) = self
            .request(Method::POST, &path, Some(binary(data)), Some(timeout))
            .await?;
        let answer: Value = parse_json(status, &body)?;
        answer
            .get("written")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ApiError::Unexpected(format!("write answer without written: {answer}")))
    }

    /// `POST /v1/conns/{conn}/read`: up to `max_bytes`, or end of stream.
    pub async fn read(
        &self,
        conn: &Value,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<ReadOutcome, ApiError> {
        let path = format!(
            "/v1/conns/{}/read?max_bytes={max_bytes}&timeout_ms={}",
            handle(conn),
            millis(timeout)
        );
        let (status, eof, body) = self
            .request(Method::POST, &path, None, Some(timeout))
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        match (eof, body.is_empty()) {
            (true, true) => Ok(ReadOutcome::Eof),
            (false, false) => Ok(ReadOutcome::Data(body.to_vec())),
            (true, false) => Err(ApiError::Unexpected("bytes with pilot-eof".into())),
            (false, true) => Err(ApiError::Unexpected("empty read without pilot-eof".into())),
        }
    }

    /// Reads until `len` bytes arrived (or end of stream first: an error).
    pub async fn read_exact(
        &self,
        conn: &Value,
        len: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            match self.read(conn, len - out.len(), timeout).await? {
                ReadOutcome::Data(bytes) => out.extend_from_slice(&bytes),
                ReadOutcome::Eof => {
                    return Err(ApiError::Unexpected(format!(
                        "end of stream after {} of {len} bytes",
                        out.len()
                    )))
                }
            }
        }
        Ok(out)
    }

    /// `POST /v1/conns/{conn}/close`: FIN after the queued data.
    pub async fn close(&self, conn: &Value) -> Result<(), ApiError> {
        let path = format!("/v1/conns/{}/close", handle(conn));
        let _: Value = self.post_json(&path, &json!({}), None).await?;
        Ok(())
    }

    /// `POST /v1/listen`.
    pub async fn listen(&self, port: u16) -> Result<(), ApiError> {
        let _: Value = self
            .post_json("/v1/listen", &json!({ "port": port }), None)
            .await?;
        Ok(())
    }

    /// `POST /v1/accept`: the next stream a peer opened to `port`.
    pub async fn accept(&self, port: u16, timeout: Duration) -> Result<Conn, ApiError> {
        let body = json!({"port": port, "timeout_ms": millis(timeout)});
        self.post_json("/v1/accept", &body, Some(timeout)).await
    }

    /// `POST /v1/send-to`: one datagram.
    pub async fn send_to(&self, peer: &str, port: u16, data: &[u8]) -> Result<(), ApiError> {
        let body = json!({"peer": peer, "port": port, "data": BASE64.encode(data)});
        let _: Value = self.post_json("/v1/send-to", &body, None).await?;
        Ok(())
    }

    /// `POST /v1/recv-from`: the next datagram on `port`.
    pub async fn recv_from(&self, port: u16, timeout: Duration) -> Result<Datagram, ApiError> {
        #[derive(Deserialize)]
        struct Answer {
            from: String,
            src_port: u16,
            port: u16,
            data: String,
        }
        let body = json!({"port": port, "timeout_ms": millis(timeout)});
        let answer: Answer = self
            .post_json("/v1/recv-from", &body, Some(timeout))
            .await?;
        Ok(Datagram {
            from: answer.from,
            src_port: answer.src_port,
            port: answer.port,
            data: decode(&answer.data)?,
        })
    }

    /// `POST /v1/send-message`: one data exchange frame to port 1001; the ACK line.
    pub async fn send_message(
        &self,
        peer: &str,
        kind: &str,
        data: &[u8],
        timeout: Duration,
    ) -> Result<String, ApiError> {
        let body = json!({
            "peer": peer,
            "type": kind,
            "data": BASE64.encode(data),
            "timeout_ms": millis(timeout),
        });
        let answer: Value = self
            .post_json("/v1/send-message", &body, Some(timeout))
            .await?;
        answer
            .get("reply")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Unexpected(format!("send-message without reply: {answer}")))
    }

    /// `POST /v1/publish`: one event at `peer`'s broker.
    pub async fn publish(&self, peer: &str, topic: &str, data: &[u8]) -> Result<(), ApiError> {
        let body = json!({"peer": peer, "topic": topic, "data": BASE64.encode(data)});
        let _: Value = self.post_json("/v1/publish", &body, None).await?;
        Ok(())
    }

    /// `POST /v1/subscribe`: a subscription handle.
    pub async fn subscribe(&self, peer: &str, topic: &str) -> Result<Value, ApiError> {
        let body = json!({"peer": peer, "topic": topic});
        let answer: Value = self.post_json("/v1/subscribe", &body, None).await?;
        answer
            .get("subscription")
            .cloned()
            .ok_or_else(|| ApiError::Unexpected(format!("subscribe without id: {answer}")))
    }

    /// `POST /v1/subscriptions/{id}/next`: the next event.
    pub async fn next_event(&self, id: &Value, timeout: Duration) -> Result<Event, ApiError> {
        #[derive(Deserialize)]
        struct Answer {
            topic: String,
            data: String,
        }
        let path = format!("/v1/subscriptions/{}/next", handle(id));
        let body = json!({ "timeout_ms": millis(timeout) });
        let answer: Answer = self.post_json(&path, &body, Some(timeout)).await?;
        Ok(Event {
            topic: answer.topic,
            data: decode(&answer.data)?,
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (status, _, body) = self.request(Method::GET, path, None, None).await?;
        parse_json(status, &body)
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<T, ApiError> {
        let payload = Body {
            content_type: "application/json",
            bytes: Bytes::from(body.to_string()),
        };
        let (status, _, answer) = self
            .request(Method::POST, path, Some(payload), timeout)
            .await?;
        parse_json(status, &answer)
    }

    /// One request on a fresh connection; returns status, whether `pilot-eof` was set, body.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        op_timeout: Option<Duration>,
    ) -> Result<(StatusCode, bool, Bytes), ApiError> {
        let limit = op_timeout.map_or(DEFAULT_REQUEST_TIMEOUT, |t| t + REQUEST_SLACK);
        tokio::time::timeout(limit, self.exchange(method, path, body))
            .await
            .map_err(|_| ApiError::Transport(format!("{path}: no answer within {limit:?}")))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, bool, Bytes), ApiError> {
        let transport = |e: &dyn fmt::Display| ApiError::Transport(format!("{path}: {e}"));
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| transport(&e))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| transport(&e))?;
        // The connection task ends when the exchange is done and `sender` is dropped.
        tokio::spawn(connection);

        let mut request = Request::builder()
            .method(method)
            .uri(format!("/pilot{path}"))
            .header("host", self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        let bytes = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, body.content_type);
                body.bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| ApiError::Unexpected(format!("building {path}: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        let eof = response
            .headers()
            .get(EOF_HEADER)
            .is_some_and(|v| v.as_bytes() == b"1");
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(&e))?
            .to_bytes();
        Ok((status, eof, body))
    }
}

struct Body {
    content_type: &'static str,
    bytes: Bytes,
}

fn binary(data: Vec<u8>) -> Body {
    Body {
        content_type: "application/octet-stream",
        bytes: Bytes::from(data),
    }
}

fn parse_json<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ApiError> {
    if !status.is_success() {
        return Err(api_error(status, body));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Unexpected(format!("{e} in {}", String::from_utf8_lossy(body))))
}

/// The error body of API.md, or the raw text when the answer is not one.
fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        hint: String,
    }
    #[derive(Deserialize)]
    struct Wrapper {
        error: Detail,
    }
    match serde_json::from_slice::<Wrapper>(body) {
        Ok(Wrapper { error }) => ApiError::Api {
            status,
            code: error.code,
            message: error.message,
            hint: error.hint,
        },
        Err(_) => ApiError::Unexpected(format!(
            "{status} without an error body: {}",
            String::from_utf8_lossy(body)
        )),
    }
}

fn decode(data: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(data)
        .map_err(|e| ApiError::Unexpected(format!("data is not base64: {e}")))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A connection or subscription handle as it goes into a path (number or string).
fn handle(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
