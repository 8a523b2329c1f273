//! The driver task: owns the node, the transports and the registry connection, and answers
//! the commands of [`Peer`](super::Peer) and [`PeerStream`](super::PeerStream) handles.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use pilot_core::addr::Addr;
use pilot_core::crypto::Identity;
use pilot_core::keyexchange::PathId;
use pilot_core::node::{ConnectionId, Event, Input, Node, NodeError, Output};
use pilot_core::registry::{Deregister, Heartbeat, Lookup, PublicKey, Request, Resolve, Response};
use pilot_core::services::dataexchange::{Frame, FrameType};
use pilot_core::services::exchange_server::ExchangeReply;
use pilot_core::services::trust_service::{RequestPath, TrustEvent};
use pilot_core::stream::{State, StreamError};
use pilot_core::time::Instant;
use rand_core::OsRng;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::transport::{TcpEvent, Transports, TCP_EVENT_QUEUE_LEN};
use super::{
    ack_line, refused, Command, PeerConfig, PeerError, PeerStream, PendingHandshake,
    ReceivedDatagram, ReceivedMessage, Registration, RegistryClient, Reply, Subscription,
    TopicEvent, Transport, TrustPath, ACCEPT_QUEUE_LEN, DATAGRAM_QUEUE_LEN, HEARTBEAT_INTERVAL,
    TCP_NETWORK, TRUST_POLL_FAST_INTERVAL,
};

/// Largest datagram read: a tunnel frame never exceeds a UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Events buffered per subscription before further ones are dropped (and logged).
const SUBSCRIPTION_QUEUE_LEN: usize = 256;
/// Read buffer for echo replies.
const READ_CHUNK_BYTES: usize = 4096;
/// Refusals of our trust requests remembered for [`Command::WaitTrusted`].
const MAX_REMEMBERED_REFUSALS: usize = 256;
/// Most bytes handed to one [`PeerStream::read`] call.
const STREAM_READ_CHUNK_BYTES: usize = 64 * 1024;

/// What [`Driver::new`] needs; the sockets are bound and the node registered already.
pub(super) struct DriverSetup<'a> {
    pub(super) node: Node<OsRng>,
    pub(super) identity: Identity,
    /// The identity file's lock, held while the task runs (see [`super::identity::lock`]).
    pub(super) identity_lock: std::fs::File,
    pub(super) socket: UdpSocket,
    pub(super) tcp: Option<TcpListener>,
    pub(super) registry: RegistryClient,
    pub(super) registration: Registration,
    /// For the [`PeerStream`]s the driver hands out; weak, so the peer's handle alone keeps
    /// the task alive.
    pub(super) commands: mpsc::WeakSender<Command>,
    pub(super) messages: mpsc::Sender<ReceivedMessage>,
    pub(super) config: &'a PeerConfig,
}

struct ExchangeOp {
    peer: u32,
    message: Vec<u8>,
    received: Vec<u8>,
    reply: Reply<Vec<u8>>,
}

/// An application stream's state on the driver side.
#[derive(Default)]
struct AppStream {
    /// A dial waiting for the handshake.
    opening: Option<(Addr, u16, Reply<PeerStream>)>,
    read: Option<Reply<Option<Vec<u8>>>>,
    /// Bytes read from the node whose reader gave up (timed out) before they arrived.
    unread: Vec<u8>,
    /// Bytes still to write and the caller waiting for them to be taken.
    write: Option<(Vec<u8>, Reply<()>)>,
    /// Reset or timed out: reads fail once `unread` is empty.
    reset: bool,
}

/// Ports the application listens on, and for what (the node has one listener per port).
#[derive(Default)]
struct AppPort {
    datagrams: Option<mpsc::Sender<ReceivedDatagram>>,
    streams: Option<mpsc::Sender<PeerStream>>,
}

pub(super) struct Driver {
    node: Node<OsRng>,
    identity: Identity,
    /// Released when the task ends, after any deregistration, so a successor never races it.
    _identity_lock: std::fs::File,
    transports: Transports,
    tcp_events: mpsc::Receiver<TcpEvent>,
    registry: RegistryClient,
    registration: Registration,
    origin: tokio::time::Instant,
    /// Nodes whose registry address was handed to the engine, and on which path.
    resolved: HashMap<u32, PathId>,
    next_ping: u64,
    /// Outstanding pings by payload: (target node, sent at, reply).
    pings: HashMap<Vec<u8>, (u32, tokio::time::Instant, Reply<Duration>)>,
    exchanges: HashMap<ConnectionId, ExchangeOp>,
    messages: HashMap<ConnectionId, (u32, Reply<ExchangeReply>)>,
    subscriptions: HashMap<ConnectionId, mpsc::Sender<TopicEvent>>,
    publications: HashMap<ConnectionId, Reply<()>>,
    streams: HashMap<ConnectionId, AppStream>,
    ports: HashMap<u16, AppPort>,
    trust_waiters: HashMap<u32, Vec<Reply<()>>>,
    /// The latest refusal of our request by each node, until we ask it again: a caller
    /// that starts waiting after the answer came still learns of it.
    refusals: HashMap<u32, String>,
    received: mpsc::Sender<ReceivedMessage>,
    commands: mpsc::WeakSender<Command>,
    next_trust_poll: tokio::time::Instant,
    trust_poll_interval: Duration,
    deregister_on_shutdown: bool,
    heartbeat_interval: Duration,
    transport: Transport,
    trust_store: Option<std::path::PathBuf>,
}

impl Driver {
    pub(super) fn new(setup: DriverSetup<'_>) -> Self {
        let (tcp_tx, tcp_events) = mpsc::channel(TCP_EVENT_QUEUE_LEN);
        let config = setup.config;
        let now = tokio::time::Instant::now();
        Driver {
            node: setup.node,
            identity: setup.identity,
            _identity_lock: setup.identity_lock,
            transports: Transports::new(setup.socket, setup.tcp, tcp_tx, config.tcp_idle_timeout),
            tcp_events,
            registry: setup.registry,
            registration: setup.registration,
            origin: now,
            resolved: HashMap::new(),
            next_ping: 1,
            pings: HashMap::new(),
            exchanges: HashMap::new(),
            messages: HashMap::new(),
            subscriptions: HashMap::new(),
            publications: HashMap::new(),
            streams: HashMap::new(),
            ports: HashMap::new(),
            trust_waiters: HashMap::new(),
            refusals: HashMap::new(),
            received: setup.messages,
            commands: setup.commands,
            // The first poll right away: requests may have waited while we were down.
            next_trust_poll: now,
            trust_poll_interval: config.trust_poll_interval,
            deregister_on_shutdown: config.deregister_on_shutdown,
            heartbeat_interval: config.heartbeat_interval,
            transport: config.transport,
            trust_store: config.trust_store.clone(),
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
        // The first tick is immediate; registration just happened.
        heartbeat.tick().await;
        let stopped_by = loop {
            let deadline = self.flush().await;
            let sleep = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + HEARTBEAT_INTERVAL),
            );
            let trust_poll = tokio::time::sleep_until(self.next_trust_poll);
            tokio::select! {
                received = self.transports.udp().recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        let path = self.transports.udp_path(from);
                        self.frame(path, bytes);
                    }
                    Err(err) => warn!(%err, "UDP receive failed"),
                },
                Some(event) = self.tcp_events.recv() => self.on_tcp(event),
                command = commands.recv() => match command {
                    None => break None,
                    Some(Command::Shutdown { done }) => break done,
                    Some(command) => self.on_command(command).await,
                },
                () = sleep, if deadline.is_some() => self.input(Input::Tick),
                () = trust_poll => self.poll_trust_inbox().await,
                _ = heartbeat.tick() => self.heartbeat().await,
            }
            self.forget_abandoned();
            self.settle_dropped_connections();
        };
        if self.deregister_on_shutdown {
            self.deregister().await;
        }
        info!(addr = %self.node.addr(), "peer stopped");
        if let Some(done) = stopped_by {
            let _ = done.send(Ok(()));
        }
    }

    fn frame(&mut self, path: PathId, bytes: Vec<u8>) {
        self.transports.count_in(path);
        let input = Input::Frame {
            path,
            bytes,
            relay_sender: None,
        };
        if let Err(err) = self.node.handle_input(self.now(), input) {
            debug!(?path, %err, "frame dropped");
        }
    }

    fn on_tcp(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Accepted(stream, remote) => self.transports.accepted(stream, remote),
            TcpEvent::Frame { path, bytes } => {
                // A frame queued before its connection was dropped has no path to answer on.
                if self.transports.has(path) {
                    self.frame(path, bytes);
                }
            }
            TcpEvent::Closed { path, reason } => {
                if self.transports.remove(path) {
                    info!(?path, %reason, "TCP connection closed");
                    // Nodes reached over it are resolved again by the next command.
                    self.resolved.retain(|_, p| *p != path);
                }
            }
        }
    }

    /// spec §9.3: leave the registry, so the address stops resolving at once.
    async fn deregister(&mut self) {
        let request = Deregister::signed(self.node.addr().node, &self.identity);
        match self.registry.call(&Request::Deregister(request)).await {
            Ok(Response::DeregisterOk) => {}
            Ok(other) => warn!(error = %refused(other), "deregister refused"),
            Err(err) => warn!(%err, "deregister failed"),
        }
    }

    fn now(&self) -> Instant {
        let micros = self.origin.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Sends what the node produced and handles its events; returns when to tick next.
    async fn flush(&mut self) -> Option<tokio::time::Instant> {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { path, bytes } => self.transports.send(path, bytes).await,
                Output::Event(event) => self.on_event(event).await,
                Output::Timeout(at) => {
                    return Some(self.origin + Duration::from_micros(at.as_micros()));
                }
            }
        }
        None
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::NeedPeerKey { node } => self.look_up_key(node).await,
            Event::RegistryRequest(request) => self.registry_request(*request).await,
            Event::Pong { from, payload } => {
                if let Some((_, sent, reply)) = self.pings.remove(&payload) {
                    let _ = reply.send(Ok(sent.elapsed()));
                } else {
                    debug!(%from, "unsolicited pong");
                }
            }
            Event::StreamOpened(conn) => self.on_stream_opened(conn),
            Event::StreamAccepted {
                conn,
                port,
                peer,
                peer_port,
            } => self.on_stream_accepted(conn, port, peer, peer_port),
            Event::StreamReadable(conn) | Event::StreamPeerClosed(conn) => {
                self.read_exchange(conn);
                self.serve_read(conn);
            }
            Event::StreamWritable(conn) => self.serve_write(conn),
            Event::StreamReset { conn, .. } => self.on_stream_end(conn, true),
            Event::StreamClosed(conn) => self.on_stream_end(conn, false),
            Event::MessageAcked { conn, peer, reply } => {
                info!(%peer, ack = %ack_line(&reply), "message acknowledged");
                if let Some((_, waiter)) = self.messages.remove(&conn) {
                    let _ = waiter.send(Ok(reply));
                }
            }
            Event::MessageReceived {
                from,
                frame_type,
                filename,
                payload,
            } => {
                info!(%from, %frame_type, ?filename, bytes = payload.len(), "message received");
                let message = ReceivedMessage {
                    from,
                    frame_type,
                    filename,
                    payload,
                };
                if self.received.try_send(message).is_err() {
                    warn!(%from, "message queue full; message dropped");
                }
            }
            Event::Datagram {
                from,
                src_port,
                dst_port,
                payload,
            } => self.on_datagram(from, src_port, dst_port, payload),
            Event::EventReceived {
                conn,
                topic,
                payload,
            } => {
                if let Some(events) = self.subscriptions.get(&conn) {
                    if events.try_send((topic, payload)).is_err() {
                        warn!(?conn, "subscription queue full or closed; event dropped");
                    }
                }
            }
            Event::BrokerSubscribed { from, topic } => {
                info!(%from, topic = %String::from_utf8_lossy(&topic), "subscriber joined");
            }
            Event::Trust(event) => self.on_trust_event(event),
            Event::PeerUnreachable { node } => self.fail_node(node),
            Event::PeerSessionUp { node, rekey } => info!(node, rekey, "tunnel session up"),
            Event::Error(err) => warn!(%err, "node error"),
            other => debug!(event = ?other, "event"),
        }
    }

    async fn look_up_key(&mut self, node: u32) {
        let key = match self
            .registry
            .call(&Request::Lookup(Lookup { node_id: node }))
            .await
        {
            Ok(Response::LookupOk(ok)) => Some(ok.public_key.0),
            Ok(other) => {
                warn!(node, error = %refused(other), "lookup refused");
                None
            }
            Err(err) => {
                warn!(node, %err, "lookup failed");
                None
            }
        };
        self.input(Input::PeerKey { node, key });
    }

    async fn registry_request(&mut self, request: Request) {
        let kind = request.type_name();
        match self.registry.call(&request).await {
            Ok(Response::PollHandshakesOk(inbox)) => {
                self.input(Input::Command(pilot_core::node::Command::TrustInbox(
                    Box::new(inbox),
                )));
            }
            Ok(Response::Error { error }) => warn!(kind, %error, "registry refused a request"),
            Ok(response) => debug!(kind, answer = response.type_name(), "registry answered"),
            Err(err) => warn!(kind, %err, "registry request failed"),
        }
    }

    /// Fetches relayed trust requests and answers (spec §9.6), then schedules the next poll:
    /// soon while our own requests await answers, else after the configured interval.
    async fn poll_trust_inbox(&mut self) {
        if let Some(request) = self.node.trust_poll_request() {
            self.registry_request(request).await;
        }
        let awaiting = self
            .node
            .trust_service()
            .is_some_and(|t| t.outgoing().next().is_some());
        let interval = if awaiting {
            TRUST_POLL_FAST_INTERVAL.min(self.trust_poll_interval)
        } else {
            self.trust_poll_interval
        };
        self.next_trust_poll = tokio::time::Instant::now() + interval;
    }

    fn on_trust_event(&mut self, event: TrustEvent) {
        match event {
            TrustEvent::Trusted { node } => {
                info!(node, "trusted");
                self.save_trust_store();
                self.refusals.remove(&node);
                for waiter in self.trust_waiters.remove(&node).unwrap_or_default() {
                    let _ = waiter.send(Ok(()));
                }
            }
            TrustEvent::Rejected { node, reason } => {
                info!(node, %reason, "trust request declined");
                if self.refusals.len() >= MAX_REMEMBERED_REFUSALS {
                    // Any one will do: a caller that waits this long has timed out anyway.
                    let any = self.refusals.keys().next().copied();
                    if let Some(any) = any {
                        self.refusals.remove(&any);
                    }
                }
                self.refusals.insert(node, reason.clone());
                for waiter in self.trust_waiters.remove(&node).unwrap_or_default() {
                    let _ = waiter.send(Err(PeerError::TrustRejected {
                        node,
                        reason: reason.clone(),
                    }));
                }
            }
            TrustEvent::RequestPending {
                node,
                justification,
                path,
            } => info!(node, %justification, ?path, "trust request pending"),
            TrustEvent::Revoked { node, reason } => {
                info!(node, %reason, "trust revoked");
                self.save_trust_store();
            }
        }
    }

    /// Writes the trusted nodes to the configured store, if any. A failure is logged: the
    /// trust holds while the peer runs, only a restart would forget it.
    fn save_trust_store(&self) {
        let (Some(path), Some(trust)) = (&self.trust_store, self.node.trust_service()) else {
            return;
        };
        if let Err(err) = super::trust_store::save(path, trust.trusted()) {
            warn!(path = %path.display(), %err, "trust store not saved");
        }
    }

    fn on_datagram(&mut self, from: Addr, src_port: u16, dst_port: u16, payload: Vec<u8>) {
        let Some(queue) = self.ports.get(&dst_port).and_then(|p| p.datagrams.as_ref()) else {
            debug!(%from, dst_port, "datagram for a port listened only for streams; dropped");
            return;
        };
        let datagram = ReceivedDatagram {
            from,
            src_port,
            payload,
        };
        if queue.try_send(datagram).is_err() {
            warn!(%from, dst_port, "datagram queue full or closed; datagram dropped");
        }
    }

    fn input(&mut self, input: Input) {
        if let Err(err) = self.node.handle_input(self.now(), input) {
            debug!(%err, "input refused");
        }
    }

    fn new_stream(&self, conn: ConnectionId, peer: Addr, peer_port: u16) -> Option<PeerStream> {
        let commands = self.commands.upgrade()?;
        Some(PeerStream::new(conn, peer, peer_port, commands))
    }

    fn on_stream_opened(&mut self, conn: ConnectionId) {
        if let Some(op) = self.exchanges.get(&conn) {
            let message = op.message.clone();
            let now = self.now();
            if let Err(err) = self.node.write(now, conn, &message) {
                self.fail_exchange(conn, err.into());
            }
            return;
        }
        let Some((peer, port, reply)) = self.streams.get_mut(&conn).and_then(|s| s.opening.take())
        else {
            return;
        };
        match self.new_stream(conn, peer, port) {
            Some(stream) => {
                let _ = reply.send(Ok(stream));
            }
            None => {
                let _ = reply.send(Err(PeerError::Stopped));
            }
        }
    }

    fn on_stream_accepted(&mut self, conn: ConnectionId, port: u16, peer: Addr, peer_port: u16) {
        let queue = self.ports.get(&port).and_then(|p| p.streams.clone());
        let stream = queue
            .as_ref()
            .and_then(|_| self.new_stream(conn, peer, peer_port));
        let (Some(queue), Some(stream)) = (queue, stream) else {
            debug!(%peer, port, "stream to a port listened only for datagrams; reset");
            self.abort(conn);
            return;
        };
        self.streams.insert(conn, AppStream::default());
        if let Err(err) = queue.try_send(stream) {
            warn!(%peer, port, "accept queue full or closed; stream reset");
            // The handle's drop would close it gracefully; refuse it outright instead.
            let mut stream = err.into_inner();
            stream.forget();
            self.streams.remove(&conn);
            self.abort(conn);
        } else {
            info!(%peer, port, ?conn, "stream accepted");
        }
    }

    fn abort(&mut self, conn: ConnectionId) {
        let now = self.now();
        if let Err(err) = self.node.abort(now, conn) {
            debug!(%err, "abort");
        }
    }

    /// Answers a waiting read with buffered or newly readable bytes, or end of stream.
    fn serve_read(&mut self, conn: ConnectionId) {
        let now = self.now();
        let Some(stream) = self.streams.get_mut(&conn) else {
            return;
        };
        let Some(reply) = stream.read.take() else {
            return;
        };
        if reply.is_closed() {
            return;
        }
        let answer = if !stream.unread.is_empty() {
            Ok(Some(std::mem::take(&mut stream.unread)))
        } else {
            let mut buf = vec![0u8; STREAM_READ_CHUNK_BYTES];
            match self.node.read(now, conn, &mut buf) {
                Ok(0) => Ok(None),
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Some(buf))
                }
                Err(NodeError::Stream(StreamError::WouldBlock)) => {
                    stream.read = Some(reply);
                    return;
                }
                // Reaped after its last byte was read: the end, unless it was reset.
                Err(NodeError::UnknownConnection) if !stream.reset => Ok(None),
                Err(NodeError::UnknownConnection) => Err(PeerError::StreamFailed),
                Err(err) => Err(err.into()),
            }
        };
        if let Err(Ok(Some(bytes))) = reply.send(answer) {
            // The reader timed out just now: keep the bytes for its next read.
            stream.unread = bytes;
        }
    }

    /// Moves as much of a waiting write into the stream as it takes.
    fn serve_write(&mut self, conn: ConnectionId) {
        let now = self.now();
        let Some(stream) = self.streams.get_mut(&conn) else {
            return;
        };
        let Some((mut bytes, reply)) = stream.write.take() else {
            return;
        };
        loop {
            if bytes.is_empty() {
                let _ = reply.send(Ok(()));
                return;
            }
            match self.node.write(now, conn, &bytes) {
                Ok(0) | Err(NodeError::Stream(StreamError::WouldBlock)) => break,
                Ok(n) => {
                    bytes.drain(..n.min(bytes.len()));
                }
                Err(err) => {
                    let _ = reply.send(Err(err.into()));
                    return;
                }
            }
        }
        stream.write = Some((bytes, reply));
    }

    fn on_stream_end(&mut self, conn: ConnectionId, reset: bool) {
        // Whatever arrived before the FIN still counts.
        self.read_exchange(conn);
        self.fail_exchange(conn, PeerError::StreamFailed);
        if let Some((_, reply)) = self.messages.remove(&conn) {
            let _ = reply.send(Err(PeerError::StreamFailed));
        }
        if let Some(stream) = self.streams.get_mut(&conn) {
            stream.reset |= reset;
            if let Some((_, _, reply)) = stream.opening.take() {
                let _ = reply.send(Err(PeerError::StreamFailed));
            }
            if let Some((_, reply)) = stream.write.take() {
                let _ = reply.send(Err(PeerError::StreamFailed));
            }
        }
        self.serve_read(conn);
    }

    fn read_exchange(&mut self, conn: ConnectionId) {
        let now = self.now();
        let Some(op) = self.exchanges.get_mut(&conn) else {
            return;
        };
        let mut buf = [0u8; READ_CHUNK_BYTES];
        // WouldBlock or end of stream both stop the loop; the close event settles the op.
        while let Ok(n) = self.node.read(now, conn, &mut buf) {
            if n == 0 {
                break;
            }
            op.received
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        if op.received.len() >= op.message.len() {
            if let Some(op) = self.exchanges.remove(&conn) {
                let _ = op.reply.send(Ok(op.received));
            }
            if let Err(err) = self.node.close(now, conn) {
                debug!(%err, "close after exchange");
            }
        }
    }

    fn fail_exchange(&mut self, conn: ConnectionId, err: PeerError) {
        if let Some(op) = self.exchanges.remove(&conn) {
            let _ = op.reply.send(Err(err));
        }
    }

    fn fail_node(&mut self, node: u32) {
        warn!(node, "peer unreachable");
        // A later command resolves the node again.
        self.resolved.remove(&node);
        let pings: Vec<Vec<u8>> = self
            .pings
            .iter()
            .filter(|(_, (n, _, _))| *n == node)
            .map(|(k, _)| k.clone())
            .collect();
        for key in pings {
            if let Some((_, _, reply)) = self.pings.remove(&key) {
                let _ = reply.send(Err(PeerError::Unreachable(node)));
            }
        }
        let conns: Vec<ConnectionId> = self
            .exchanges
            .iter()
            .filter(|(_, op)| op.peer == node)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.fail_exchange(conn, PeerError::Unreachable(node));
        }
        let conns: Vec<ConnectionId> = self
            .messages
            .iter()
            .filter(|(_, (n, _))| *n == node)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            if let Some((_, reply)) = self.messages.remove(&conn) {
                let _ = reply.send(Err(PeerError::Unreachable(node)));
            }
        }
        for stream in self.streams.values_mut() {
            let dialled_here = stream
                .opening
                .as_ref()
                .is_some_and(|(peer, _, _)| peer.node == node);
            if dialled_here {
                if let Some((_, _, reply)) = stream.opening.take() {
                    let _ = reply.send(Err(PeerError::Unreachable(node)));
                }
            }
        }
    }

    /// Node-owned streams (data exchange clients) report no close events: an operation whose
    /// connection the node has dropped without answering has failed. Runs after a full drain,
    /// so an answer that came with the close was already delivered.
    fn settle_dropped_connections(&mut self) {
        let node = &self.node;
        let dropped: Vec<ConnectionId> = self
            .messages
            .keys()
            .chain(self.exchanges.keys())
            .filter(|conn| node.connection_state(**conn).is_none())
            .copied()
            .collect();
        for conn in dropped {
            self.fail_exchange(conn, PeerError::StreamFailed);
            if let Some((_, reply)) = self.messages.remove(&conn) {
                let _ = reply.send(Err(PeerError::StreamFailed));
            }
        }
        // Dropping the sender ends the subscriber's stream of events.
        let node = &self.node;
        self.subscriptions
            .retain(|conn, _| node.connection_state(*conn).is_some());
        // TIME_WAIT: both FINs were exchanged, so the broker acknowledged every byte of the
        // event. Dropped before that: reset or given up.
        let settled: Vec<(ConnectionId, bool)> = self
            .publications
            .keys()
            .filter_map(|conn| match node.connection_state(*conn) {
                Some(State::TimeWait) => Some((*conn, true)),
                None | Some(State::Closed) => Some((*conn, false)),
                Some(_) => None,
            })
            .collect();
        for (conn, delivered) in settled {
            if let Some(reply) = self.publications.remove(&conn) {
                let _ = reply.send(if delivered {
                    Ok(())
                } else {
                    Err(PeerError::StreamFailed)
                });
            }
        }
    }

    /// Callers that gave up (timeout, dropped future) leave closed replies behind.
    fn forget_abandoned(&mut self) {
        self.pings.retain(|_, (_, _, reply)| !reply.is_closed());
        self.exchanges.retain(|_, op| !op.reply.is_closed());
        self.messages.retain(|_, (_, reply)| !reply.is_closed());
        // `Node::close` refuses node-owned subscriber streams (NotApplicationConnection), so
        // a dropped subscription only stops delivery; its stream lives until the peer ends it.
        self.subscriptions.retain(|_, events| !events.is_closed());
        for waiters in self.trust_waiters.values_mut() {
            waiters.retain(|reply| !reply.is_closed());
        }
        self.trust_waiters.retain(|_, waiters| !waiters.is_empty());
    }

    /// Makes sure the engine has a path to `node`: one it reached us on (or was given), else
    /// the registry's answer to a signed `resolve` (spec §9.4), over TCP when configured and
    /// advertised (spec §7.5), else UDP.
    async fn ensure_path(&mut self, node: u32) -> Result<(), PeerError> {
        if self
            .resolved
            .get(&node)
            .is_some_and(|path| self.transports.has(*path))
        {
            return Ok(());
        }
        if self
            .node
            .peer_path(node)
            .is_some_and(|path| self.transports.has(path))
        {
            return Ok(());
        }
        let request = Resolve::signed(self.node.addr().node, node, &self.identity);
        let ok = match self.registry.call(&Request::Resolve(request)).await? {
            Response::ResolveOk(ok) => ok,
            other => return Err(refused(other)),
        };
        let tcp = ok
            .endpoints
            .iter()
            .filter(|e| e.network == TCP_NETWORK)
            .find_map(|e| e.addr.parse::<SocketAddr>().ok());
        let path = match (self.transport, tcp) {
            (Transport::Tcp, Some(addr)) => self.transports.tcp_path(addr).await?,
            _ => {
                let addr: SocketAddr = ok
                    .real_addr
                    .parse()
                    .map_err(|_| PeerError::NoPeerAddress(node))?;
                self.transports.udp_path(addr)
            }
        };
        // The resolve answer carries the key too: spare the engine a lookup.
        let PublicKey(key) = ok.public_key;
        self.input(Input::PeerKey {
            node,
            key: Some(key),
        });
        let now = self.now();
        self.node.add_peer_path(now, node, path)?;
        self.resolved.insert(node, path);
        debug!(node, ?path, "resolved");
        Ok(())
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Ping { peer, reply } => {
                let result = self.ping(peer).await;
                match result {
                    Ok(payload) => {
                        self.pings
                            .insert(payload, (peer.node, tokio::time::Instant::now(), reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
            Command::Exchange {
                peer,
                port,
                message,
                reply,
            } => match self.open(peer, port).await {
                Ok(conn) => {
                    let op = ExchangeOp {
                        peer: peer.node,
                        message,
                        received: Vec::new(),
                        reply,
                    };
                    self.exchanges.insert(conn, op);
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::SendMessage {
                peer,
                frame_type,
                filename,
                data,
                reply,
            } => match self.send_message(peer, frame_type, &filename, &data).await {
                Ok(conn) => {
                    self.messages.insert(conn, (peer.node, reply));
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::Subscribe { peer, topic, reply } => {
                let _ = reply.send(self.subscribe(peer, &topic).await);
            }
            Command::Publish {
                peer,
                topic,
                payload,
                reply,
            } => match self.publish(peer, &topic, &payload).await {
                Ok(conn) => {
                    self.publications.insert(conn, reply);
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::AddPeerAddress { node, addr, reply } => {
                let path = self.transports.udp_path(addr);
                let now = self.now();
                let result = self.node.add_peer_path(now, node, path);
                if result.is_ok() {
                    self.resolved.insert(node, path);
                }
                let _ = reply.send(result.map_err(PeerError::from));
            }
            Command::RequestTrust {
                peer,
                justification,
                reply,
            } => {
                let _ = reply.send(self.request_trust(peer, &justification).await);
            }
            Command::PendingHandshakes { reply } => {
                let _ = reply.send(Ok(self.pending_handshakes()));
            }
            Command::Approve { node, reply } => {
                let now = self.now();
                let result = self.node.trust_approve(now, node).map_err(PeerError::from);
                let _ = reply.send(result);
            }
            Command::Reject {
                node,
                reason,
                reply,
            } => {
                let now = self.now();
                let result = self
                    .node
                    .trust_reject(now, node, &reason)
                    .map_err(PeerError::from);
                let _ = reply.send(result);
            }
            Command::Trusted { reply } => {
                let trusted = self
                    .node
                    .trust_service()
                    .map(|t| t.trusted().map(|(node, _)| node).collect())
                    .unwrap_or_default();
                let _ = reply.send(Ok(trusted));
            }
            Command::WaitTrusted { node, reply } => {
                if self.node.is_trusted(node) {
                    let _ = reply.send(Ok(()));
                } else if let Some(reason) = self.refusals.get(&node) {
                    let reason = reason.clone();
                    let _ = reply.send(Err(PeerError::TrustRejected { node, reason }));
                } else {
                    self.trust_waiters.entry(node).or_default().push(reply);
                }
            }
            Command::SendDatagram {
                peer,
                port,
                payload,
                reply,
            } => {
                let _ = reply.send(self.send_datagram(peer, port, &payload).await);
            }
            Command::ListenDatagrams { port, reply } => {
                let _ = reply.send(self.listen_datagrams(port));
            }
            Command::Listen { port, reply } => {
                let _ = reply.send(self.listen_streams(port));
            }
            Command::Dial { peer, port, reply } => match self.open(peer, port).await {
                Ok(conn) => {
                    let stream = AppStream {
                        opening: Some((peer, port, reply)),
                        ..AppStream::default()
                    };
                    self.streams.insert(conn, stream);
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            },
            Command::StreamWrite { conn, bytes, reply } => match self.streams.get_mut(&conn) {
                Some(stream) if stream.write.is_none() => {
                    stream.write = Some((bytes, reply));
                    self.serve_write(conn);
                }
                Some(_) => {
                    let _ = reply.send(Err(PeerError::Io(std::io::Error::other(
                        "a write on this stream is already in progress",
                    ))));
                }
                None => {
                    let _ = reply.send(Err(PeerError::StreamFailed));
                }
            },
            Command::StreamRead { conn, reply } => match self.streams.get_mut(&conn) {
                Some(stream) => {
                    stream.read = Some(reply);
                    self.serve_read(conn);
                }
                None => {
                    let _ = reply.send(Err(PeerError::StreamFailed));
                }
            },
            Command::StreamClose { conn, reply } => {
                self.streams.remove(&conn);
                let now = self.now();
                // Already gone (reset, reaped) is closed enough.
                let result = match self.node.close(now, conn) {
                    Ok(()) | Err(NodeError::UnknownConnection) => Ok(()),
                    Err(err) => Err(err.into()),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(Ok(self.transports.stats()));
            }
            Command::Shutdown { .. } => {}
        }
    }

    async fn ping(&mut self, peer: Addr) -> Result<Vec<u8>, PeerError> {
        self.ensure_path(peer.node).await?;
        let payload = self.next_ping.to_be_bytes().to_vec();
        self.next_ping += 1;
        let now = self.now();
        self.node.ping(now, peer, &payload)?;
        Ok(payload)
    }

    async fn open(&mut self, peer: Addr, port: u16) -> Result<ConnectionId, PeerError> {
        self.ensure_path(peer.node).await?;
        let now = self.now();
        Ok(self.node.dial(now, peer, port)?)
    }

    async fn send_message(
        &mut self,
        peer: Addr,
        frame_type: FrameType,
        filename: &str,
        data: &[u8],
    ) -> Result<ConnectionId, PeerError> {
        self.ensure_path(peer.node).await?;
        let frame = match frame_type {
            FrameType::Json => Frame::Json(data),
            FrameType::Binary => Frame::Binary(data),
            FrameType::File => Frame::File {
                name: filename,
                data,
            },
            FrameType::Text => Frame::Text(data),
            FrameType::Other(frame_type) => Frame::Other {
                frame_type,
                payload: data,
            },
        };
        let now = self.now();
        Ok(self.node.send_message(now, peer, &frame)?)
    }

    async fn subscribe(&mut self, peer: Addr, topic: &[u8]) -> Result<Subscription, PeerError> {
        self.ensure_path(peer.node).await?;
        let now = self.now();
        let conn = self.node.subscribe(now, peer, topic)?;
        let (events, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_LEN);
        self.subscriptions.insert(conn, events);
        Ok(Subscription { events: rx })
    }

    async fn publish(
        &mut self,
        peer: Addr,
        topic: &[u8],
        payload: &[u8],
    ) -> Result<ConnectionId, PeerError> {
        self.ensure_path(peer.node).await?;
        let now = self.now();
        Ok(self.node.publish(now, peer, topic, payload)?)
    }

    async fn send_datagram(
        &mut self,
        peer: Addr,
        port: u16,
        payload: &[u8],
    ) -> Result<(), PeerError> {
        self.ensure_path(peer.node).await?;
        let now = self.now();
        Ok(self.node.send_to(now, peer, port, payload)?)
    }

    /// Direct over port 444 when the engine has (or the registry gives) a path to `peer`;
    /// through the registry inbox when the registry will not resolve it (spec §9.6).
    async fn request_trust(
        &mut self,
        peer: Addr,
        justification: &str,
    ) -> Result<TrustPath, PeerError> {
        // A new request supersedes the last refusal.
        self.refusals.remove(&peer.node);
        match self.ensure_path(peer.node).await {
            Ok(()) => {
                let now = self.now();
                self.node.trust_request(now, peer.node, justification)?;
                info!(node = peer.node, "trust requested over port 444");
                Ok(TrustPath::Direct)
            }
            Err(err @ (PeerError::RegistryRefused(_) | PeerError::NoPeerAddress(_))) => {
                let why = err.to_string();
                let now = self.now();
                self.node
                    .trust_request_relayed(now, peer.node, justification)?;
                info!(node = peer.node, %why, "trust requested through the registry");
                // Look for the answer soon.
                self.next_trust_poll = self
                    .next_trust_poll
                    .min(tokio::time::Instant::now() + TRUST_POLL_FAST_INTERVAL);
                Ok(TrustPath::Relayed)
            }
            Err(err) => Err(err),
        }
    }

    fn pending_handshakes(&self) -> Vec<PendingHandshake> {
        let network = self.node.addr().network;
        let Some(trust) = self.node.trust_service() else {
            return Vec::new();
        };
        trust
            .pending()
            .iter()
            .map(|p| PendingHandshake {
                node: p.node,
                address: Addr::new(network, p.node),
                justification: p.justification.clone(),
                path: match p.path {
                    RequestPath::Direct => TrustPath::Direct,
                    RequestPath::Relayed => TrustPath::Relayed,
                },
                received_at_unix_secs: p.received_at_unix_secs,
            })
            .collect()
    }

    fn app_port(&mut self, port: u16) -> Result<&mut AppPort, PeerError> {
        if !self.ports.contains_key(&port) {
            self.node.listen(port)?;
        }
        Ok(self.ports.entry(port).or_default())
    }

    fn listen_datagrams(
        &mut self,
        port: u16,
    ) -> Result<mpsc::Receiver<ReceivedDatagram>, PeerError> {
        let entry = self.app_port(port)?;
        let (tx, rx) = mpsc::channel(DATAGRAM_QUEUE_LEN);
        entry.datagrams = Some(tx);
        Ok(rx)
    }

    fn listen_streams(&mut self, port: u16) -> Result<mpsc::Receiver<PeerStream>, PeerError> {
        let entry = self.app_port(port)?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE_LEN);
        entry.streams = Some(tx);
        Ok(rx)
    }

    async fn heartbeat(&mut self) {
        let request = Heartbeat::signed(self.node.addr().node, None, &self.identity);
        match self.registry.call(&Request::Heartbeat(request)).await {
            Ok(Response::HeartbeatOk(_)) => debug!("heartbeat"),
            // spec §9.5: "node not found" means the registry forgot us (e.g. it restarted).
            Ok(Response::Error { error }) if error.contains("not found") => {
                warn!(%error, "registry forgot this node; registering again");
                if let Err(err) = self.reregister().await {
                    warn!(%err, "re-registration failed");
                }
            }
            Ok(other) => warn!(error = %refused(other), "heartbeat refused"),
            Err(err) => warn!(%err, "heartbeat failed"),
        }
    }

    /// Registers again with the same key and endpoints. The engine's address cannot change
    /// while it runs, so a different node ID is reported, not adopted.
    async fn reregister(&mut self) -> Result<(), PeerError> {
        let registration = self.registration;
        let addr = registration
            .register(&mut self.registry, &self.identity)
            .await?;
        let ours = self.node.addr();
        if addr != ours {
            warn!(
                %ours,
                given = %addr,
                "registry assigned another node ID; restart the peer to use it"
            );
            return Ok(());
        }
        info!(addr = %ours, "registered again");
        Ok(())
    }
}
