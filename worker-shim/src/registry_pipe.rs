//! The registry client: over the relay's registry pipe (`relay/PROTOCOL.md` §6) or a direct
//! TCP connection (`connect()`, spec §9.1).
//!
//! Either way the pipe is a byte stream to the registry's TCP port ([`ByteLink`]); on it run
//! the registry's own `u32 length ‖ JSON` frames (spec §9.1, pilot-core's [`FrameReader`]).
//! Going through the relay makes the registry record the relay's IP as our `real_addr`
//! (spec §9.3).
//!
//! The registry answers in order, so requests are pipelined: request *n* on a connection
//! gets answer *n*. A failure or timeout drops the connection (what arrives later could not
//! be matched any more); the next call opens a new one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt as _;
use pilot_core::registry::{FrameReader, Request, Response};
use tracing::{debug, warn};
use worker::Delay;

use crate::byte_link::{websocket_incoming, ByteLink, Incoming, TcpLink};
use crate::notify::Notify;
use crate::relay_wire::REGISTRY_SUBPROTOCOL;
use crate::transport::open_websocket;

/// How long one registry request may take.
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryCallError {
    /// The pipe could not be opened or broke.
    Pipe(String),
    /// No answer within [`REGISTRY_TIMEOUT`].
    Timeout,
    /// The answer did not decode (or the request did not encode).
    Protocol(String),
}

impl fmt::Display for RegistryCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryCallError::Pipe(e) => write!(f, "registry pipe: {e}"),
            RegistryCallError::Timeout => f.write_str("registry did not answer in time"),
            RegistryCallError::Protocol(e) => write!(f, "registry protocol: {e}"),
        }
    }
}

/// How the client reaches the registry.
#[derive(Debug, Clone)]
pub enum RegistryRoute {
    /// The relay's `{url}/v1/registry` pipe, with the relay token if any.
    Relay {
        /// `ws(s)://` URL of the relay.
        url: String,
        /// Relay token.
        token: Option<String>,
    },
    /// A direct TCP connection to the registry.
    Direct {
        /// Host name or IP.
        host: String,
        /// TCP port.
        port: u16,
        /// TLS on the connection.
        tls: bool,
    },
}

/// One open pipe and the answers read from it.
struct Connection {
    id: u64,
    link: ByteLink,
    sent: u64,
    answers: BTreeMap<u64, Response>,
    received: u64,
    failed: Option<String>,
}

/// The registry client of a Durable Object.
pub struct RegistryPipe {
    route: RegistryRoute,
    conn: RefCell<Option<Connection>>,
    next_id: RefCell<u64>,
    notify: Rc<Notify>,
}

impl RegistryPipe {
    /// A client that opens pipes along `route` on demand.
    pub fn new(route: RegistryRoute) -> Rc<Self> {
        Rc::new(RegistryPipe {
            route,
            conn: RefCell::new(None),
            next_id: RefCell::new(1),
            notify: Rc::new(Notify::new()),
        })
    }

    /// Sends `request` and waits for its answer. A registry `error` is `Ok(Response::Error)`.
    pub async fn call(self: &Rc<Self>, request: &Request) -> Result<Response, RegistryCallError> {
        let frame = request
            .encode()
            .map_err(|e| RegistryCallError::Protocol(e.to_string()))?;
        let (conn_id, ticket) = self.send(&frame).await?;
        let wait = core::pin::pin!(self.answer(conn_id, ticket));
        let timeout = core::pin::pin!(Delay::from(REGISTRY_TIMEOUT));
        let result = match select(wait, timeout).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(RegistryCallError::Timeout),
        };
        if result.is_err() {
            self.drop_connection(conn_id);
        }
        result
    }

    async fn send(self: &Rc<Self>, frame: &[u8]) -> Result<(u64, u64), RegistryCallError> {
        let failed = self
            .conn
            .borrow()
            .as_ref()
            .and_then(|c| c.failed.is_some().then_some(c.id));
        if let Some(id) = failed {
            // A broken pipe answers nothing more: start over with a new one.
            self.drop_connection(id);
        }
        if self.conn.borrow().is_none() {
            self.open().await?;
        }
        let mut conn = self.conn.borrow_mut();
        let conn = conn
            .as_mut()
            .ok_or_else(|| RegistryCallError::Pipe("closed while opening".into()))?;
        conn.link.send(frame).map_err(RegistryCallError::Pipe)?;
        let ticket = conn.sent;
        conn.sent += 1;
        Ok((conn.id, ticket))
    }

    async fn open(self: &Rc<Self>) -> Result<(), RegistryCallError> {
        let (link, incoming) = self.dial().await?;
        if self.conn.borrow().is_some() {
            // Another call opened one meanwhile: use that, drop ours.
            link.close();
            return Ok(());
        }
        let id = {
            let mut next = self.next_id.borrow_mut();
            *next += 1;
            *next
        };
        *self.conn.borrow_mut() = Some(Connection {
            id,
            link,
            sent: 0,
            answers: BTreeMap::new(),
            received: 0,
            failed: None,
        });
        let this = Rc::clone(self);
        wasm_bindgen_futures::spawn_local(async move { this.read_loop(id, incoming).await });
        Ok(())
    }

    async fn dial(&self) -> Result<(ByteLink, Incoming), RegistryCallError> {
        match &self.route {
            RegistryRoute::Relay { url, token } => {
                let ws =
                    open_websocket(url, "/v1/registry", REGISTRY_SUBPROTOCOL, token.as_deref())
                        .await
                        .map_err(|e| RegistryCallError::Pipe(e.to_string()))?;
                // Accepted here, so the caller can send at once; the reader attaches its
                // listeners before the registry can answer (answers arrive as later I/O
                // events).
                ws.accept()
                    .map_err(|e| RegistryCallError::Pipe(e.to_string()))?;
                let incoming = websocket_incoming(ws.clone());
                Ok((ByteLink::WebSocket(ws), incoming))
            }
            RegistryRoute::Direct { host, port, tls } => {
                let (link, incoming) =
                    TcpLink::connect(host, *port, *tls).map_err(RegistryCallError::Pipe)?;
                Ok((ByteLink::Tcp(link), incoming))
            }
        }
    }

    async fn read_loop(self: Rc<Self>, id: u64, mut incoming: Incoming) {
        let mut reader = FrameReader::new();
        let reason = loop {
            match incoming.next().await {
                Some(Ok(bytes)) => {
                    reader.push(&bytes);
                    if let Err(reason) = self.take_answers(id, &mut reader) {
                        break reason;
                    }
                }
                Some(Err(reason)) => break reason,
                None => break "link ended".to_string(),
            }
        };
        debug!(%reason, "registry pipe ended");
        self.fail(id, reason);
    }

    fn take_answers(&self, id: u64, reader: &mut FrameReader) -> Result<(), String> {
        loop {
            let body = match reader.next_message() {
                Ok(Some(body)) => body,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let response = Response::decode(&body).map_err(|e| e.to_string())?;
            let mut conn = self.conn.borrow_mut();
            match conn.as_mut() {
                Some(conn) if conn.id == id => {
                    let index = conn.received;
                    conn.received += 1;
                    conn.answers.insert(index, response);
                }
                _ => return Err("connection replaced".into()),
            }
            drop(conn);
            self.notify.notify();
        }
    }

    fn fail(&self, id: u64, reason: String) {
        if let Some(conn) = self.conn.borrow_mut().as_mut() {
            if conn.id == id && conn.failed.is_none() {
                warn!(%reason, "registry pipe failed");
                conn.failed = Some(reason);
            }
        }
        self.notify.notify();
    }

    async fn answer(&self, conn_id: u64, ticket: u64) -> Result<Response, RegistryCallError> {
        loop {
            let changed = self.notify.changed();
            {
                let mut conn = self.conn.borrow_mut();
                let Some(conn) = conn.as_mut().filter(|c| c.id == conn_id) else {
                    return Err(RegistryCallError::Pipe("connection replaced".into()));
                };
                if let Some(response) = conn.answers.remove(&ticket) {
                    return Ok(response);
                }
                if let Some(reason) = &conn.failed {
                    return Err(RegistryCallError::Pipe(reason.clone()));
                }
            }
            changed.await;
        }
    }

    fn drop_connection(&self, conn_id: u64) {
        let mut conn = self.conn.borrow_mut();
        if conn.as_ref().is_some_and(|c| c.id == conn_id) {
            if let Some(old) = conn.take() {
                old.link.close();
            }
        }
        drop(conn);
        self.notify.notify();
    }
}
