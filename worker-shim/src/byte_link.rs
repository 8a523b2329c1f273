//! Byte streams the Durable Object talks through: a relay WebSocket or a direct TCP socket.
//!
//! A [`ByteLink`] sends byte chunks; what arrives comes out of its [`Incoming`] receiver as
//! chunks, then one `Err(reason)` when the link ends. The registry client
//! (`registry_pipe`) and the TCP transport (`transport`) frame their messages on top, so
//! neither cares which kind of stream it runs on.

use core::future::poll_fn;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;
use worker::{SecureTransport, Socket, WebSocket, WebsocketEvent};

/// Bytes read from a socket per read call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What arrives on a link: chunks of bytes, then `Err(reason)` once it ended.
pub type Incoming = UnboundedReceiver<Result<Vec<u8>, String>>;

/// The sending half of a byte stream.
#[derive(Debug, Clone)]
pub enum ByteLink {
    /// A WebSocket whose binary messages carry the stream (the relay's registry pipe).
    WebSocket(WebSocket),
    /// A TCP socket opened with `connect()`; its task owns the socket.
    Tcp(TcpLink),
}

impl ByteLink {
    /// Queues `bytes` on the stream.
    pub fn send(&self, bytes: &[u8]) -> Result<(), String> {
        match self {
            ByteLink::WebSocket(ws) => ws.send_with_bytes(bytes).map_err(|e| e.to_string()),
            ByteLink::Tcp(tcp) => tcp.send(bytes.to_vec()),
        }
    }

    /// Ends the stream; nothing more is sent or received.
    pub fn close(&self) {
        match self {
            ByteLink::WebSocket(ws) => {
                // Already closing or closed: nothing left to do.
                let _ = ws.close(Some(1000), Some("done"));
            }
            ByteLink::Tcp(tcp) => tcp.close(),
        }
    }
}

/// Forwards the binary messages of an accepted WebSocket as chunks.
pub fn websocket_incoming(ws: WebSocket) -> Incoming {
    let (tx, rx) = mpsc::unbounded();
    wasm_bindgen_futures::spawn_local(async move {
        let reason = forward_websocket(&ws, &tx).await;
        let _ = tx.unbounded_send(Err(reason));
    });
    rx
}

async fn forward_websocket(
    ws: &WebSocket,
    tx: &UnboundedSender<Result<Vec<u8>, String>>,
) -> String {
    let mut events = match ws.events() {
        Ok(events) => events,
        Err(e) => return e.to_string(),
    };
    loop {
        match events.next().await {
            Some(Ok(WebsocketEvent::Message(message))) => {
                let Some(bytes) = message.bytes() else {
                    return "text message on a byte stream".to_string();
                };
                if tx.unbounded_send(Ok(bytes)).is_err() {
                    return "reader gone".to_string();
                }
            }
            Some(Ok(WebsocketEvent::Close(close))) => {
                return format!("closed with code {} {}", close.code(), close.reason());
            }
            Some(Err(e)) => return e.to_string(),
            None => return "event stream ended".to_string(),
        }
    }
}

/// A TCP connection opened with the Workers `connect()` API.
///
/// Sends are queued to the task that owns the socket; it writes them in order and reads
/// whatever arrives, until either side closes.
#[derive(Debug, Clone)]
pub struct TcpLink {
    outgoing: UnboundedSender<Vec<u8>>,
}

impl TcpLink {
    /// Opens a connection to `host:port` (TLS if `tls`). The socket connects in the
    /// background: bytes sent meanwhile are written once it is open, and a failure to
    /// connect ends the link with its reason.
    pub fn connect(host: &str, port: u16, tls: bool) -> Result<(TcpLink, Incoming), String> {
        let secure = if tls {
            SecureTransport::On
        } else {
            SecureTransport::Off
        };
        let socket = Socket::builder()
            .secure_transport(secure)
            .connect(host, port)
            .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let (outgoing, queued) = mpsc::unbounded();
        let (incoming_tx, incoming) = mpsc::unbounded();
        let peer = format!("{host}:{port}");
        wasm_bindgen_futures::spawn_local(async move {
            let reason = pump(socket, queued, &incoming_tx).await;
            debug!(%peer, %reason, "tcp link ended");
            let _ = incoming_tx.unbounded_send(Err(reason));
        });
        Ok((TcpLink { outgoing }, incoming))
    }

    /// Queues `bytes` for the socket.
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), String> {
        self.outgoing
            .unbounded_send(bytes)
            .map_err(|_| "the TCP connection is closed".to_string())
    }

    /// Closes the connection once the queued bytes are written.
    pub fn close(&self) {
        self.outgoing.close_channel();
    }
}

/// Bytes taken from the queue and not yet fully written.
struct Pending {
    bytes: Vec<u8>,
    written: usize,
}

/// Writes queued bytes and reads the socket at once, until an error, EOF or `close`.
async fn pump(
    mut socket: Socket,
    mut queued: UnboundedReceiver<Vec<u8>>,
    incoming: &UnboundedSender<Result<Vec<u8>, String>>,
) -> String {
    let mut pending: Option<Pending> = None;
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let reason = poll_fn(|cx| {
        if let Poll::Ready(reason) = poll_writes(&mut socket, &mut queued, &mut pending, cx) {
            return Poll::Ready(reason);
        }
        poll_reads(&mut socket, &mut buf, incoming, cx)
    })
    .await;
    // Closing is best effort: the peer may be gone already.
    let _ = socket.close().await;
    reason
}

fn poll_writes(
    socket: &mut Socket,
    queued: &mut UnboundedReceiver<Vec<u8>>,
    pending: &mut Option<Pending>,
    cx: &mut Context<'_>,
) -> Poll<String> {
    loop {
        if let Some(p) = pending.as_mut() {
            let rest = p.bytes.get(p.written..).unwrap_or_default();
            match Pin::new(&mut *socket).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready("socket accepts no more bytes".into()),
                Poll::Ready(Ok(n)) => {
                    p.written += n;
                    if p.written >= p.bytes.len() {
                        *pending = None;
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(format!("write failed: {e}")),
                Poll::Pending => return Poll::Pending,
            }
        }
        match queued.poll_next_unpin(cx) {
            Poll::Ready(Some(bytes)) => {
                *pending = Some(Pending { bytes, written: 0 });
            }
            Poll::Ready(None) => return Poll::Ready("closed by us".into()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

fn poll_reads(
    socket: &mut Socket,
    buf: &mut [u8],
    incoming: &UnboundedSender<Result<Vec<u8>, String>>,
    cx: &mut Context<'_>,
) -> Poll<String> {
    loop {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut *socket).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                return Poll::Ready("closed by the peer".into())
            }
            Poll::Ready(Ok(())) => {
                if incoming.unbounded_send(Ok(read.filled().to_vec())).is_err() {
                    return Poll::Ready("reader gone".into());
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(format!("read failed: {e}")),
            Poll::Pending => return Poll::Pending,
        }
    }
}
