//! How frames leave and reach the Durable Object.
//!
//! [`Transport`] is what the node driver needs from any transport: our endpoint as peers
//! see it, and a way to send one frame to one peer endpoint. Received frames and the end of
//! the transport are reported through a [`TransportSink`]. Two are implemented: the relay
//! transport ([`RelayTransport`], a WebSocket to the project's relay, `relay/PROTOCOL.md`)
//! and direct TCP ([`TcpTransport`], `connect()` to the peers' `tcp` endpoints, spec
//! §7.5). The beacon compat WebSocket (spec §7.7) is not (README, Limitations).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_channel::oneshot;
use futures_util::StreamExt as _;
use pilot_core::crypto::Identity;
use pilot_core::frame::tcp::{self as tcp_frame, TcpDeframer};
use tracing::{debug, info, warn};
use worker::{Fetch, Headers, Method, Request, RequestInit, WebSocket, WebsocketEvent};

use crate::byte_link::{Incoming, TcpLink};
use crate::relay_wire::{self, RelayControl, RELAY_SUBPROTOCOL};

/// Why a transport could not be opened or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The configured URL is not a `ws://`, `wss://`, `http://` or `https://` URL.
    BadUrl(String),
    /// The WebSocket upgrade failed (relay down, wrong URL, refused subprotocol).
    Connect(String),
    /// The relay broke the protocol or closed during authentication.
    Handshake(String),
    /// Sending on an open transport failed.
    Send(String),
    /// The transport is closed.
    Closed,
    /// A direct TCP connection could not be opened or used.
    Tcp(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::BadUrl(url) => write!(f, "relay URL {url:?} is not a ws(s) URL"),
            TransportError::Connect(e) => write!(f, "cannot open the relay WebSocket: {e}"),
            TransportError::Handshake(e) => write!(f, "relay authentication failed: {e}"),
            TransportError::Send(e) => write!(f, "relay send failed: {e}"),
            TransportError::Closed => f.write_str("relay session closed"),
            TransportError::Tcp(e) => write!(f, "tcp transport: {e}"),
        }
    }
}

/// A transport the node driver sends frames through.
pub trait Transport {
    /// Short name shown in `/v1/info` (`relay`, `tcp`).
    fn kind(&self) -> &'static str;
    /// Our endpoint as peers and the registry see it; `None` when peers cannot reach us
    /// unasked (direct TCP: a Worker cannot listen, spec §7.8).
    fn endpoint(&self) -> Option<SocketAddr>;
    /// Sends one tunnel frame to `to` (fire and forget, UDP semantics).
    fn send(&self, to: SocketAddr, frame: &[u8]) -> Result<(), TransportError>;
    /// Ends the transport.
    fn close(&self);
}

/// What a transport reports to the driver.
pub trait TransportSink {
    /// A frame arrived from `from`.
    fn on_frame(&self, from: SocketAddr, frame: Vec<u8>);
    /// The transport ended; `session` is the one given to the transport at connect.
    fn on_closed(&self, session: u64, reason: String);
    /// The connection to `peer` ended (direct TCP): its path is gone, the next send
    /// reconnects.
    fn on_link_closed(&self, peer: SocketAddr);
}

/// Opens a WebSocket with `protocol` to `base` + `path`, with a bearer token if given.
pub(crate) async fn open_websocket(
    base: &str,
    path: &str,
    protocol: &str,
    bearer: Option<&str>,
) -> Result<WebSocket, TransportError> {
    let trimmed = base.trim_end_matches('/');
    let http = if let Some(rest) = trimmed.strip_prefix("ws://") {
        format!("http://{rest}{path}")
    } else if let Some(rest) = trimmed.strip_prefix("wss://") {
        format!("https://{rest}{path}")
    } else if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        format!("{trimmed}{path}")
    } else {
        return Err(TransportError::BadUrl(base.to_string()));
    };
    let connect = |e: worker::Error| TransportError::Connect(e.to_string());
    let headers = Headers::new();
    headers.set("upgrade", "websocket").map_err(connect)?;
    headers
        .set("sec-websocket-protocol", protocol)
        .map_err(connect)?;
    if let Some(token) = bearer {
        headers
            .set("authorization", &format!("Bearer {token}"))
            .map_err(connect)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&http, &init).map_err(connect)?;
    let response = Fetch::Request(request).send().await.map_err(connect)?;
    let status = response.status_code();
    response.websocket().ok_or_else(|| {
        TransportError::Connect(format!(
            "{http} answered HTTP {status} instead of a WebSocket upgrade"
        ))
    })
}

/// A session with the relay: one WebSocket, one UDP socket on the relay.
#[derive(Debug, Clone)]
pub struct RelayTransport {
    ws: WebSocket,
    udp_addr: SocketAddr,
}

impl RelayTransport {
    /// Connects to `{url}/v1/relay`, authenticates with `identity` (and `token`), and waits
    /// for `ready`. Received frames and the session's end go to `sink`, tagged `session`.
    pub async fn connect(
        url: &str,
        identity: Rc<Identity>,
        token: Option<String>,
        session: u64,
        sink: Rc<dyn TransportSink>,
    ) -> Result<RelayTransport, TransportError> {
        let ws = open_websocket(url, "/v1/relay", RELAY_SUBPROTOCOL, None).await?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let reader = ws.clone();
        wasm_bindgen_futures::spawn_local(async move {
            run_session(reader, identity, token, session, ready_tx, sink).await;
        });
        let udp_addr = ready_rx
            .await
            .map_err(|_| TransportError::Handshake("session ended before ready".into()))??;
        info!(%udp_addr, "relay session ready");
        Ok(RelayTransport { ws, udp_addr })
    }
}

impl Transport for RelayTransport {
    fn kind(&self) -> &'static str {
        "relay"
    }

    fn endpoint(&self) -> Option<SocketAddr> {
        Some(self.udp_addr)
    }

    fn send(&self, to: SocketAddr, frame: &[u8]) -> Result<(), TransportError> {
        let message = relay_wire::encode_datagram(to, frame);
        self.ws
            .send_with_bytes(message)
            .map_err(|e| TransportError::Send(e.to_string()))
    }

    fn close(&self) {
        // Already closing or closed: nothing left to do.
        let _ = self.ws.close(Some(1000), Some("client closing"));
    }
}

/// Direct TCP to peers (spec §7.5): one pooled connection per remote address, opened on
/// the first frame sent there, frames as `u32 BE length ‖ frame` (pilot-core
/// [`tcp_frame`]).
///
/// Only this side opens connections: a Worker cannot listen, so a peer reaches us only on
/// a connection we dialed.
pub struct TcpTransport {
    pool: RefCell<BTreeMap<SocketAddr, (u64, TcpLink)>>,
    next_link: RefCell<u64>,
    sink: Rc<dyn TransportSink>,
    me: std::rc::Weak<TcpTransport>,
}

impl TcpTransport {
    /// A transport with no connections yet; what arrives goes to `sink`.
    pub fn new(sink: Rc<dyn TransportSink>) -> Rc<TcpTransport> {
        Rc::new_cyclic(|me| TcpTransport {
            pool: RefCell::new(BTreeMap::new()),
            next_link: RefCell::new(0),
            sink,
            me: me.clone(),
        })
    }

    fn link_to(&self, to: SocketAddr) -> Result<TcpLink, TransportError> {
        if let Some((_, link)) = self.pool.borrow().get(&to) {
            return Ok(link.clone());
        }
        let host = to.ip().to_string();
        let (link, incoming) =
            TcpLink::connect(&host, to.port(), false).map_err(TransportError::Tcp)?;
        let id = {
            let mut next = self.next_link.borrow_mut();
            *next += 1;
            *next
        };
        self.pool.borrow_mut().insert(to, (id, link.clone()));
        info!(peer = %to, "tcp connection opened");
        if let Some(me) = self.me.upgrade() {
            wasm_bindgen_futures::spawn_local(me.read_frames(to, id, incoming));
        }
        Ok(link)
    }

    /// Deframes what `to` sends until the connection ends or breaks the framing.
    async fn read_frames(self: Rc<Self>, to: SocketAddr, id: u64, mut incoming: Incoming) {
        let mut deframer = TcpDeframer::new();
        let reason = 'read: loop {
            let bytes = match incoming.next().await {
                Some(Ok(bytes)) => bytes,
                Some(Err(reason)) => break reason,
                None => break "connection ended".to_string(),
            };
            let mut rest = bytes.as_slice();
            loop {
                match deframer.next_frame(&mut rest) {
                    Ok(Some(frame)) => self.sink.on_frame(to, frame),
                    Ok(None) => break,
                    // spec §7.5: a frame above 1 MiB means a broken peer: drop it.
                    Err(err) => break 'read err.to_string(),
                }
            }
        };
        self.forget(to, id, &reason);
    }

    /// Removes the connection `id` to `to` (if still pooled) and reports its path gone.
    fn forget(&self, to: SocketAddr, id: u64, reason: &str) {
        let removed = {
            let mut pool = self.pool.borrow_mut();
            match pool.get(&to) {
                Some((current, _)) if *current == id => pool.remove(&to),
                _ => None,
            }
        };
        if let Some((_, link)) = removed {
            link.close();
            warn!(peer = %to, %reason, "tcp connection dropped");
            self.sink.on_link_closed(to);
        }
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn endpoint(&self) -> Option<SocketAddr> {
        None
    }

    fn send(&self, to: SocketAddr, frame: &[u8]) -> Result<(), TransportError> {
        let mut framed = Vec::new();
        tcp_frame::encode(frame, &mut framed).map_err(|e| TransportError::Tcp(e.to_string()))?;
        let link = self.link_to(to)?;
        link.send(framed).map_err(TransportError::Tcp)
    }

    fn close(&self) {
        let pool = core::mem::take(&mut *self.pool.borrow_mut());
        for (_, link) in pool.into_values() {
            link.close();
        }
    }
}

type ReadyTx = oneshot::Sender<Result<SocketAddr, TransportError>>;

/// Reads the session: challenge → auth → ready, then datagrams until the socket closes.
async fn run_session(
    ws: WebSocket,
    identity: Rc<Identity>,
    token: Option<String>,
    session: u64,
    ready: ReadyTx,
    sink: Rc<dyn TransportSink>,
) {
    let mut events = match ws.events() {
        Ok(events) => events,
        Err(e) => {
            let _ = ready.send(Err(TransportError::Connect(e.to_string())));
            return;
        }
    };
    if let Err(e) = ws.accept() {
        let _ = ready.send(Err(TransportError::Connect(e.to_string())));
        return;
    }
    let mut ready = Some(ready);
    let reason = loop {
        let Some(event) = events.next().await else {
            break "event stream ended".to_string();
        };
        match event {
            Ok(WebsocketEvent::Message(message)) => {
                if let Some(bytes) = message.bytes() {
                    if ready.is_some() {
                        break "binary message before ready".to_string();
                    }
                    match relay_wire::decode_datagram(&bytes) {
                        Ok((from, frame)) => sink.on_frame(from, frame.to_vec()),
                        Err(err) => debug!(%err, "relay message dropped"),
                    }
                } else if let Some(text) = message.text() {
                    if let Err(err) =
                        on_control(&ws, &identity, token.as_deref(), &text, &mut ready)
                    {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(Err(err.clone()));
                        }
                        let _ = ws.close(Some(4000), Some("protocol error"));
                        break err.to_string();
                    }
                }
            }
            Ok(WebsocketEvent::Close(close)) => {
                break format!("closed with code {} {}", close.code(), close.reason());
            }
            Err(e) => break format!("WebSocket error: {e}"),
        }
    };
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Err(TransportError::Handshake(reason)));
        }
        None => {
            warn!(session, %reason, "relay session ended");
            sink.on_closed(session, reason);
        }
    }
}

/// One text message: the challenge (answer it) or `ready` (report the endpoint).
fn on_control(
    ws: &WebSocket,
    identity: &Identity,
    token: Option<&str>,
    text: &str,
    ready: &mut Option<ReadyTx>,
) -> Result<(), TransportError> {
    if ready.is_none() {
        // PROTOCOL.md §2: after ready, text messages carry nothing for us.
        return Ok(());
    }
    let handshake = |e: relay_wire::RelayWireError| TransportError::Handshake(e.to_string());
    match relay_wire::parse_control(text).map_err(handshake)? {
        RelayControl::Challenge { nonce, ts } => {
            let reply = relay_wire::auth_reply(identity, &nonce, ts, token).map_err(handshake)?;
            ws.send_with_str(reply)
                .map_err(|e| TransportError::Send(e.to_string()))
        }
        RelayControl::Ready { udp_addr, .. } => {
            let addr: SocketAddr = udp_addr.parse().map_err(|_| {
                TransportError::Handshake(format!("ready carries no ip:port: {udp_addr:?}"))
            })?;
            if let Some(ready) = ready.take() {
                let _ = ready.send(Ok(addr));
            }
            Ok(())
        }
    }
}
