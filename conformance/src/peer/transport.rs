//! The peer's transports: one UDP socket (one tunnel frame per datagram) and TCP connections
//! carrying `u32 BE length ‖ frame` (spec §7.5). Every UDP source address and every TCP
//! connection is a [`PathId`] of its own; the engine answers a peer on the path its newest
//! authenticated frame came on, so the newest TCP connection of a peer wins.
//!
//! Each TCP connection has a reader task (deframes, hands frames to the driver) and a writer
//! task (frames what the driver sends). A connection that fails, ends, declares a frame
//! above 1 MiB or delivers no complete frame within the idle timeout is dropped and its path
//! forgotten.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use pilot_core::frame::tcp::{self, TcpDeframer};
use pilot_core::keyexchange::PathId;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// Most TCP connections (inbound and outbound) open at once; more inbound ones are closed.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// Frames queued for one TCP connection's writer; beyond it frames are dropped like lost
/// datagrams (the stream layer retransmits).
const TCP_SEND_QUEUE_FRAMES: usize = 1024;
/// Events from TCP tasks queued for the driver before the tasks wait.
pub const TCP_EVENT_QUEUE_LEN: usize = 1024;
/// How long dialling a peer's TCP endpoint may take.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer of a TCP connection.
const TCP_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Frames moved per transport since the peer started, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams received on the UDP socket.
    pub udp_frames_in: u64,
    /// Datagrams sent on the UDP socket.
    pub udp_frames_out: u64,
    /// Frames received on TCP connections.
    pub tcp_frames_in: u64,
    /// Frames queued for TCP connections.
    pub tcp_frames_out: u64,
    /// TCP connections open now.
    pub tcp_connections: usize,
}

/// What the TCP tasks tell the driver.
#[derive(Debug)]
pub enum TcpEvent {
    /// The listener accepted a connection.
    Accepted(TcpStream, SocketAddr),
    /// One frame arrived on `path`.
    Frame {
        /// The connection.
        path: PathId,
        /// The tunnel frame, length prefix stripped.
        bytes: Vec<u8>,
    },
    /// The connection ended or failed.
    Closed {
        /// The connection.
        path: PathId,
        /// Why, for the log.
        reason: String,
    },
}

/// One TCP connection; dropping it stops both of its tasks, which closes the socket.
struct TcpConn {
    remote: SocketAddr,
    frames: mpsc::Sender<Vec<u8>>,
    tasks: [AbortHandle; 2],
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

enum Route {
    Udp(SocketAddr),
    Tcp(TcpConn),
}

/// The sockets of a peer and the paths over them.
pub struct Transports {
    udp: UdpSocket,
    routes: HashMap<PathId, Route>,
    udp_paths: HashMap<SocketAddr, PathId>,
    /// Outbound TCP connections by remote address: one pooled connection each.
    tcp_dialled: HashMap<SocketAddr, PathId>,
    next_path: u64,
    events: mpsc::Sender<TcpEvent>,
    listener: Option<AbortHandle>,
    idle_timeout: Duration,
    stats: TransportStats,
}

impl Drop for Transports {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl Transports {
    /// The UDP socket, and the TCP listener's accept loop if there is one; TCP events go to
    /// `events`. A TCP connection without a complete frame for `idle_timeout` is closed.
    pub fn new(
        udp: UdpSocket,
        listener: Option<TcpListener>,
        events: mpsc::Sender<TcpEvent>,
        idle_timeout: Duration,
    ) -> Self {
        let listener = listener.map(|listener| {
            let events = events.clone();
            tokio::spawn(accept_loop(listener, events)).abort_handle()
        });
        Transports {
            udp,
            routes: HashMap::new(),
            udp_paths: HashMap::new(),
            tcp_dialled: HashMap::new(),
            next_path: 1,
            events,
            listener,
            idle_timeout,
            stats: TransportStats::default(),
        }
    }

    /// The UDP socket, for receiving.
    pub fn udp(&self) -> &UdpSocket {
        &self.udp
    }

    /// Frame counters, and the TCP connections open now.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            tcp_connections: self.tcp_count(),
            ..self.stats
        }
    }

    /// Counts a frame received on `path`.
    pub fn count_in(&mut self, path: PathId) {
        match self.routes.get(&path) {
            Some(Route::Udp(_)) => self.stats.udp_frames_in += 1,
            Some(Route::Tcp(_)) => self.stats.tcp_frames_in += 1,
            None => {}
        }
    }

    /// Whether `path` is still open.
    pub fn has(&self, path: PathId) -> bool {
        self.routes.contains_key(&path)
    }

    /// The path of a UDP source or destination address.
    pub fn udp_path(&mut self, addr: SocketAddr) -> PathId {
        if let Some(path) = self.udp_paths.get(&addr) {
            return *path;
        }
        let path = self.new_path();
        self.routes.insert(path, Route::Udp(addr));
        self.udp_paths.insert(addr, path);
        path
    }

    /// The pooled TCP connection to `addr`, dialled if there is none.
    pub async fn tcp_path(&mut self, addr: SocketAddr) -> Result<PathId, io::Error> {
        if let Some(path) = self.tcp_dialled.get(&addr) {
            return Ok(*path);
        }
        if self.tcp_count() >= MAX_TCP_CONNECTIONS {
            return Err(io::Error::other(format!(
                "{MAX_TCP_CONNECTIONS} TCP connections open already"
            )));
        }
        let stream = tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
        let path = self.add_tcp(stream, addr);
        self.tcp_dialled.insert(addr, path);
        info!(%addr, ?path, "TCP connection dialled");
        Ok(path)
    }

    /// Takes an accepted connection, unless too many are open.
    pub fn accepted(&mut self, stream: TcpStream, remote: SocketAddr) {
        if self.tcp_count() >= MAX_TCP_CONNECTIONS {
            warn!(%remote, "too many TCP connections; closing the new one");
            return;
        }
        let path = self.add_tcp(stream, remote);
        info!(%remote, ?path, "TCP connection accepted");
    }

    /// Forgets a TCP connection (closing it); `true` if it was open. UDP paths stay.
    pub fn remove(&mut self, path: PathId) -> bool {
        if !matches!(self.routes.get(&path), Some(Route::Tcp(_))) {
            return false;
        }
        if let Some(Route::Tcp(conn)) = self.routes.remove(&path) {
            if self.tcp_dialled.get(&conn.remote) == Some(&path) {
                self.tcp_dialled.remove(&conn.remote);
            }
        }
        true
    }

    /// Sends one tunnel frame on `path`.
    pub async fn send(&mut self, path: PathId, bytes: Vec<u8>) {
        match self.routes.get(&path) {
            Some(Route::Udp(addr)) => {
                self.stats.udp_frames_out += 1;
                if let Err(err) = self.udp.send_to(&bytes, addr).await {
                    warn!(%addr, %err, "UDP send failed");
                }
            }
            Some(Route::Tcp(conn)) => {
                self.stats.tcp_frames_out += 1;
                if conn.frames.try_send(bytes).is_err() {
                    debug!(remote = %conn.remote, "TCP send queue full or closed; frame dropped");
                }
            }
            None => debug!(?path, "transmit on a closed path; frame dropped"),
        }
    }

    fn tcp_count(&self) -> usize {
        self.routes
            .values()
            .filter(|r| matches!(r, Route::Tcp(_)))
            .count()
    }

    fn new_path(&mut self) -> PathId {
        let path = PathId(self.next_path);
        self.next_path += 1;
        path
    }

    fn add_tcp(&mut self, stream: TcpStream, remote: SocketAddr) -> PathId {
        let path = self.new_path();
        // Tunnel frames are small and latency matters more than segment count.
        if let Err(err) = stream.set_nodelay(true) {
            debug!(%remote, %err, "cannot set TCP_NODELAY");
        }
        let (read, write) = stream.into_split();
        let (frames, queue) = mpsc::channel(TCP_SEND_QUEUE_FRAMES);
        let reader = tokio::spawn(read_frames(
            read,
            path,
            self.events.clone(),
            self.idle_timeout,
        ));
        let writer = tokio::spawn(write_frames(write, queue, path, self.events.clone()));
        let conn = TcpConn {
            remote,
            frames,
            tasks: [reader.abort_handle(), writer.abort_handle()],
        };
        self.routes.insert(path, Route::Tcp(conn));
        path
    }
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if events
                    .send(TcpEvent::Accepted(stream, remote))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(err) => {
                warn!(%err, "TCP accept failed");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

/// Deframes `u32 BE length ‖ frame` until the connection ends, breaks the 1 MiB limit or
/// goes `idle_timeout` without a complete frame.
async fn read_frames(
    mut read: OwnedReadHalf,
    path: PathId,
    events: mpsc::Sender<TcpEvent>,
    idle_timeout: Duration,
) {
    let reason = match deframe(&mut read, path, &events, idle_timeout).await {
        Ok(reason) => reason,
        Err(err) => err.to_string(),
    };
    let _ = events.send(TcpEvent::Closed { path, reason }).await;
}

async fn deframe(
    read: &mut OwnedReadHalf,
    path: PathId,
    events: &mpsc::Sender<TcpEvent>,
    idle_timeout: Duration,
) -> Result<String, io::Error> {
    let mut deframer = TcpDeframer::new();
    let mut buf = vec![0u8; TCP_READ_CHUNK_BYTES];
    // Measured from the last complete frame, not the last byte: a peer trickling one byte a
    // second (slowloris) must not keep its slot.
    let mut deadline = tokio::time::Instant::now() + idle_timeout;
    loop {
        let Ok(read) = tokio::time::timeout_at(deadline, read.read(&mut buf)).await else {
            return Ok(format!("no complete frame for {idle_timeout:?}"));
        };
        let n = read?;
        if n == 0 {
            return Ok(if deframer.is_at_frame_boundary() {
                "closed by the peer".to_string()
            } else {
                "closed by the peer inside a frame".to_string()
            });
        }
        let mut input = buf.get(..n).unwrap_or_default();
        // spec §7.5: a declared length above 1 MiB cannot be skipped; drop the connection.
        while let Some(bytes) = deframer.next_frame(&mut input).map_err(io::Error::other)? {
            deadline = tokio::time::Instant::now() + idle_timeout;
            if bytes.is_empty() {
                continue;
            }
            if events.send(TcpEvent::Frame { path, bytes }).await.is_err() {
                return Ok("peer stopped".to_string());
            }
        }
    }
}

async fn write_frames(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    path: PathId,
    events: mpsc::Sender<TcpEvent>,
) {
    let mut framed = Vec::new();
    while let Some(frame) = queue.recv().await {
        framed.clear();
        if let Err(err) = tcp::encode(&frame, &mut framed) {
            warn!(%err, "frame not sent on TCP");
            continue;
        }
        if let Err(err) = write.write_all(&framed).await {
            let _ = events
                .send(TcpEvent::Closed {
                    path,
                    reason: format!("write failed: {err}"),
                })
                .await;
            return;
        }
    }
}
