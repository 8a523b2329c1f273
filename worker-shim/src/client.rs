//! A typed client of the `PilotNode` Durable Object for Rust Workers.
//!
//! ```ignore
//! let stub = env.durable_object("PILOT")?.id_from_name("default")?.get_stub()?;
//! let pilot = PilotClient::new(stub);
//! let info = pilot.info().await?;
//! let rtt = pilot.ping("0:0000.0000.0005", None).await?;
//! let conn = pilot.dial("0:0000.0000.0005", 7, None).await?;
//! pilot.write(conn.conn, b"hello", None).await?;
//! let echoed = pilot.read(conn.conn, None, None).await?;
//! ```

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Headers, Method, Request, RequestInit, Stub};

use crate::api::{
    decode_data, encode_data, AcceptAnswer, ApiError, DatagramAnswer, Decision, DialRequest,
    Dialed, Empty, ErrorBody, EventAnswer, HandshakeRequest, Hostname, Info, MessageReply,
    PendingList, PingRequest, Pong, PortAnswer, PortRequest, PortWait, PublishRequest, Resolved,
    SendMessageRequest, SendTo, Status, SubscribeRequest, SubscriptionAnswer, TimeoutOnly,
    TrustedList, Written, EOF_HEADER,
};

/// Origin of the Durable Object's routes (the host is not looked at).
const ORIGIN: &str = "https://pilot.internal";

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The node answered with an API error (its code, message and hint).
    Api(ApiError),
    /// The Durable Object could not be reached.
    Transport(String),
    /// The answer was not what the API defines.
    Decode(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Api(err) => write!(f, "{err}"),
            ClientError::Transport(e) => write!(f, "cannot reach the PilotNode object: {e}"),
            ClientError::Decode(e) => write!(f, "unexpected answer from the PilotNode object: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

fn transport(err: worker::Error) -> ClientError {
    ClientError::Transport(err.to_string())
}

/// What a stream read gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// At least one byte.
    Data(Vec<u8>),
    /// The peer finished sending and everything was read.
    Eof,
}

/// A client of one `PilotNode` object.
#[derive(Debug)]
pub struct PilotClient {
    stub: Stub,
}

impl PilotClient {
    /// A client over the object's stub.
    pub fn new(stub: Stub) -> Self {
        PilotClient { stub }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<worker::Response, ClientError> {
        let headers = Headers::new();
        let mut init = RequestInit::new();
        init.with_method(method);
        if let Some(body) = body {
            headers
                .set("content-type", "application/json")
                .map_err(transport)?;
            init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        }
        init.with_headers(headers);
        let request =
            Request::new_with_init(&format!("{ORIGIN}{path}"), &init).map_err(transport)?;
        let mut response = self
            .stub
            .fetch_with_request(request)
            .await
            .map_err(transport)?;
        if response.status_code() >= 400 {
            let text = response.text().await.map_err(transport)?;
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) => ClientError::Api(body.error),
                Err(_) => ClientError::Decode(format!(
                    "HTTP {} without an API error body",
                    response.status_code()
                )),
            });
        }
        Ok(response)
    }

    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let mut response = self.call(method, path, body).await?;
        let text = response.text().await.map_err(transport)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /v1/info`: our address, endpoint and registration state.
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.json::<(), _>(Method::Get, "/v1/info", None).await
    }

    /// `POST /v1/hostname`: claims a hostname at the registry.
    pub async fn set_hostname(&self, hostname: &str) -> Result<Hostname, ClientError> {
        let body = Hostname {
            hostname: hostname.to_string(),
        };
        self.json(Method::Post, "/v1/hostname", Some(&body)).await
    }

    /// `POST /v1/ping`: round-trip time in milliseconds.
    pub async fn ping(&self, peer: &str, timeout_ms: Option<u64>) -> Result<f64, ClientError> {
        let body = PingRequest {
            peer: peer.to_string(),
            timeout_ms,
        };
        let pong: Pong = self.json(Method::Post, "/v1/ping", Some(&body)).await?;
        Ok(pong.rtt_ms)
    }

    /// `POST /v1/dial`: opens a stream and waits for its handshake.
    pub async fn dial(
        &self,
        peer: &str,
        port: u16,
        timeout_ms: Option<u64>,
    ) -> Result<Dialed, ClientError> {
        let body = DialRequest {
            peer: peer.to_string(),
            port: u32::from(port),
            timeout_ms,
        };
        self.json(Method::Post, "/v1/dial", Some(&body)).await
    }

    /// `POST /v1/conns/{conn}/write`: queues all of `bytes`.
    pub async fn write(
        &self,
        conn: u64,
        bytes: &[u8],
        timeout_ms: Option<u64>,
    ) -> Result<usize, ClientError> {
        let mut path = format!("/v1/conns/{conn}/write");
        if let Some(ms) = timeout_ms {
            path.push_str(&format!("?timeout_ms={ms}"));
        }
        let mut response = self.call(Method::Post, &path, Some(bytes.to_vec())).await?;
        let text = response.text().await.map_err(transport)?;
        let written: Written =
            serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(written.written)
    }

    /// `POST /v1/conns/{conn}/read`: at least one byte, or the end of the stream.
    pub async fn read(
        &self,
        conn: u64,
        max_bytes: Option<usize>,
        timeout_ms: Option<u64>,
    ) -> Result<ReadResult, ClientError> {
        let mut params = Vec::new();
        if let Some(max) = max_bytes {
            params.push(format!("max_bytes={max}"));
        }
        if let Some(ms) = timeout_ms {
            params.push(format!("timeout_ms={ms}"));
        }
        let mut path = format!("/v1/conns/{conn}/read");
        if !params.is_empty() {
            path.push('?');
            path.push_str(&params.join("&"));
        }
        let mut response = self.call(Method::Post, &path, None).await?;
        let eof = response
            .headers()
            .get(EOF_HEADER)
            .map_err(transport)?
            .is_some();
        let bytes = response.bytes().await.map_err(transport)?;
        Ok(if bytes.is_empty() && eof {
            ReadResult::Eof
        } else {
            ReadResult::Data(bytes)
        })
    }

    /// `POST /v1/conns/{conn}/close`: FIN after the queued data.
    pub async fn close(&self, conn: u64) -> Result<(), ClientError> {
        let path = format!("/v1/conns/{conn}/close");
        self.call(Method::Post, &path, None).await.map(|_| ())
    }

    /// `POST /v1/send-message`: one data exchange frame (spec §10.3); the peer's ACK line.
    /// `kind` is `text`, `json`, `binary` or `file` (which needs `filename`).
    pub async fn send_message(
        &self,
        peer: &str,
        kind: &str,
        data: &[u8],
        filename: Option<&str>,
    ) -> Result<String, ClientError> {
        let body = SendMessageRequest {
            peer: peer.to_string(),
            kind: kind.to_string(),
            data: encode_data(data),
            filename: filename.map(str::to_string),
            timeout_ms: None,
        };
        let reply: MessageReply = self
            .json(Method::Post, "/v1/send-message", Some(&body))
            .await?;
        Ok(reply.reply)
    }

    /// `GET /v1/resolve-hostname`: the address of the node with `hostname`.
    pub async fn resolve_hostname(&self, hostname: &str) -> Result<String, ClientError> {
        let path = format!("/v1/resolve-hostname?hostname={hostname}");
        let resolved: Resolved = self.json::<(), _>(Method::Get, &path, None).await?;
        Ok(resolved.address)
    }

    /// `POST /v1/listen`: accept streams and datagrams on `port`.
    pub async fn listen(&self, port: u16) -> Result<(), ClientError> {
        let body = PortRequest {
            port: u32::from(port),
        };
        let _: PortAnswer = self.json(Method::Post, "/v1/listen", Some(&body)).await?;
        Ok(())
    }

    /// `POST /v1/accept`: the next stream accepted on a listened port.
    pub async fn accept(
        &self,
        port: u16,
        timeout_ms: Option<u64>,
    ) -> Result<AcceptAnswer, ClientError> {
        let body = PortWait {
            port: u32::from(port),
            timeout_ms,
        };
        self.json(Method::Post, "/v1/accept", Some(&body)).await
    }

    /// `POST /v1/send-to`: one datagram (spec §8.11).
    pub async fn send_to(&self, peer: &str, port: u16, data: &[u8]) -> Result<(), ClientError> {
        let body = SendTo {
            peer: peer.to_string(),
            port: u32::from(port),
            data: encode_data(data),
        };
        let _: Empty = self.json(Method::Post, "/v1/send-to", Some(&body)).await?;
        Ok(())
    }

    /// `POST /v1/recv-from`: the next datagram on a listened port, payload decoded.
    pub async fn recv_from(
        &self,
        port: u16,
        timeout_ms: Option<u64>,
    ) -> Result<(DatagramAnswer, Vec<u8>), ClientError> {
        let body = PortWait {
            port: u32::from(port),
            timeout_ms,
        };
        let datagram: DatagramAnswer = self
            .json(Method::Post, "/v1/recv-from", Some(&body))
            .await?;
        let payload = decode_data(&datagram.data).map_err(|e| ClientError::Decode(e.message))?;
        Ok((datagram, payload))
    }

    /// `POST /v1/publish`: one event at `peer`'s broker (spec §10.4).
    pub async fn publish(&self, peer: &str, topic: &str, data: &[u8]) -> Result<(), ClientError> {
        let body = PublishRequest {
            peer: peer.to_string(),
            topic: topic.to_string(),
            data: encode_data(data),
            timeout_ms: None,
        };
        let _: Empty = self.json(Method::Post, "/v1/publish", Some(&body)).await?;
        Ok(())
    }

    /// `POST /v1/subscribe`: a subscription ID at `peer`'s broker.
    pub async fn subscribe(&self, peer: &str, topic: &str) -> Result<u64, ClientError> {
        let body = SubscribeRequest {
            peer: peer.to_string(),
            topic: topic.to_string(),
        };
        let answer: SubscriptionAnswer = self
            .json(Method::Post, "/v1/subscribe", Some(&body))
            .await?;
        Ok(answer.subscription)
    }

    /// `POST /v1/subscriptions/{id}/next`: the next event, as (topic, payload).
    pub async fn next_event(
        &self,
        subscription: u64,
        timeout_ms: Option<u64>,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let path = format!("/v1/subscriptions/{subscription}/next");
        let body = TimeoutOnly { timeout_ms };
        let event: EventAnswer = self.json(Method::Post, &path, Some(&body)).await?;
        let payload = decode_data(&event.data).map_err(|e| ClientError::Decode(e.message))?;
        Ok((event.topic, payload))
    }

    /// `POST /v1/handshake`: ask `peer` for trust.
    pub async fn handshake(&self, peer: &str, justification: &str) -> Result<(), ClientError> {
        let body = HandshakeRequest {
            peer: peer.to_string(),
            justification: justification.to_string(),
        };
        let _: Status = self
            .json(Method::Post, "/v1/handshake", Some(&body))
            .await?;
        Ok(())
    }

    /// `GET /v1/handshakes`: trust requests waiting for approval.
    pub async fn handshakes(&self) -> Result<PendingList, ClientError> {
        self.json::<(), _>(Method::Get, "/v1/handshakes", None)
            .await
    }

    /// `POST /v1/handshakes/approve`.
    pub async fn approve(&self, node: u32) -> Result<(), ClientError> {
        let body = Decision {
            node,
            reason: String::new(),
        };
        let _: Empty = self
            .json(Method::Post, "/v1/handshakes/approve", Some(&body))
            .await?;
        Ok(())
    }

    /// `POST /v1/handshakes/reject`.
    pub async fn reject(&self, node: u32, reason: &str) -> Result<(), ClientError> {
        let body = Decision {
            node,
            reason: reason.to_string(),
        };
        let _: Empty = self
            .json(Method::Post, "/v1/handshakes/reject", Some(&body))
            .await?;
        Ok(())
    }

    /// `GET /v1/trusted`: the nodes we trust.
    pub async fn trusted(&self) -> Result<TrustedList, ClientError> {
        self.json::<(), _>(Method::Get, "/v1/trusted", None).await
    }
}
