//! `/v1/registry`: a byte pipe between one WebSocket and one TCP connection to the configured
//! registry.
//!
//! Why it exists: the registry records a node's `real_addr` as the IP of the TCP connection
//! that registered it plus the port of its `listen_addr` (spec §9.3). A Worker that registers
//! through this pipe therefore gets the relay's IP recorded, and by sending the UDP port of
//! its relay session as `listen_addr` it makes peers send their datagrams to that session.
//!
//! The connection leaves from [`Config::registry_source_ip`](crate::Config::registry_source_ip),
//! so the IP the registry records is the one the session sockets answer on.
//!
//! The target address comes only from configuration; nothing the client sends can change it.
//! The relay does not parse the bytes (the client may even run TLS through the pipe).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::close;
use crate::metrics::Direction;
use crate::server::{bounded_write, close_socket, Shared, WriteError, SHUTDOWN_REASON};
use crate::session::is_capacity_error;

/// Bytes read from the registry per WebSocket message.
const PIPE_READ_BYTES: usize = 16 * 1024;

/// Pipes bytes between `ws` and the registry at `target` until either side closes.
pub(crate) async fn run(mut ws: WebSocket, shared: Arc<Shared>, peer: SocketAddr, target: String) {
    let config = &shared.config;
    let tcp = match tokio::time::timeout(
        config.registry_connect_timeout,
        connect(target.as_str(), config.registry_source_ip()),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(err)) => {
            warn!(peer = %peer, registry = target, error = %err, "registry unreachable");
            close_socket(&mut ws, close::INTERNAL_ERROR, "registry unreachable").await;
            return;
        }
        Err(_) => {
            warn!(peer = %peer, registry = target, "registry connect timed out");
            close_socket(&mut ws, close::INTERNAL_ERROR, "registry unreachable").await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    shared.metrics.registry_pipes_active.inc();
    let source = tcp.local_addr().ok();
    info!(peer = %peer, registry = target, source = ?source, "registry pipe up");
    let (code, reason) = pipe(&mut ws, tcp, &shared).await;
    shared.metrics.registry_pipes_active.dec();
    info!(peer = %peer, close_code = code, reason, "registry pipe down");
    close_socket(&mut ws, code, reason).await;
}

/// Connects to `target` (`host:port`), from `source` when given. With a source IP only
/// addresses of its family are tried, in the order the resolver returns them.
async fn connect(target: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target).await;
    };
    let mut last_error = None;
    for addr in lookup_host(target).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        match connect_from(source, addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{target} has no address of the same family as registry bind IP {source}"),
        )
    }))
}

async fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

async fn pipe(ws: &mut WebSocket, tcp: TcpStream, shared: &Shared) -> (u16, &'static str) {
    let (mut from_registry, mut to_registry) = tcp.into_split();
    let mut buffer = vec![0u8; PIPE_READ_BYTES];
    let idle_timeout = shared.config.idle_timeout;
    let idle = sleep_until(Instant::now() + idle_timeout);
    tokio::pin!(idle);

    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return (close::SERVICE_RESTART, SHUTDOWN_REASON),
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    // A registry that stops reading must not pin the pipe either.
                    let written =
                        tokio::time::timeout(shared.config.write_timeout, to_registry.write_all(&bytes)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        return (close::INTERNAL_ERROR, "registry write failed");
                    }
                    shared.metrics.registry_piped(Direction::Outbound, bytes.len());
                }
                Some(Ok(Message::Text(_))) => {
                    return (close::PROTOCOL_ERROR, "binary messages only");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    let _ = to_registry.shutdown().await;
                    return (close::NORMAL, "client closed");
                }
                Some(Err(err)) => {
                    debug!(error = %err, "registry pipe websocket error");
                    if is_capacity_error(err) {
                        return (close::MESSAGE_TOO_BIG, "message too big");
                    }
                    return (close::NORMAL, "websocket error");
                }
            },
            read = from_registry.read(&mut buffer) => match read {
                Ok(0) => return (close::NORMAL, "registry closed the connection"),
                Ok(n) => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    let chunk = buffer.get(..n).unwrap_or_default().to_vec();
                    match bounded_write(shared.config.write_timeout, ws.send(Message::Binary(chunk.into()))).await {
                        Ok(()) => {}
                        Err(WriteError::Failed) => return (close::NORMAL, "websocket write failed"),
                        Err(WriteError::TimedOut) => {
                            shared.metrics.write_timeouts.inc();
                            return (close::WRITE_TIMEOUT, "client not reading");
                        }
                    }
                    shared.metrics.registry_piped(Direction::Inbound, n);
                }
                Err(_) => return (close::INTERNAL_ERROR, "registry read failed"),
            },
            () = &mut idle => return (close::IDLE_TIMEOUT, "idle timeout"),
        }
    }
}
