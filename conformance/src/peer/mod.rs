//! A native Pilot peer: drives the sans-IO [`pilot_core::node::Node`] over one UDP socket and
//! registers with a registry over TCP (spec §9). Used by the `pilot-peer` binary and by tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conformance::peer::PeerError> {
//! use conformance::peer::{Peer, PeerConfig};
//!
//! let registry = "127.0.0.1:9000".parse().map_err(std::io::Error::other)?;
//! let peer = Peer::start(PeerConfig::new(registry, "identity.json".into())).await?;
//! println!("node {} on {}", peer.addr(), peer.udp_addr());
//! let rtt = peer.ping("0:0000.0000.0005".parse().map_err(std::io::Error::other)?).await?;
//! # let _ = rtt;
//! peer.shutdown().await
//! # }
//! ```
//!
//! One task owns the node, the socket and the registry connection; [`Peer`] is a handle
//! that sends it commands. The task feeds every datagram to `Node::handle_input`, drains
//! `poll_output` until `Timeout`, and sleeps until that instant, the next datagram or the
//! next command. Registry requests the node needs (peer keys, trust reports) are made
//! inline: on loopback a round trip is well under the engine's timers.

mod identity;
mod registry_client;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pilot_core::addr::Addr;
use pilot_core::crypto::Identity;
use pilot_core::keyexchange::PathId;
use pilot_core::node::{ConnectionId, Event, Input, Node, NodeConfig, NodeError, Output};
use pilot_core::registry::{
    Deregister, Heartbeat, Lookup, PublicKey, Register, RegistryError, Request, Resolve, Response,
    SetVisibility,
};
use pilot_core::services::dataexchange::{Frame, FrameType};
use pilot_core::services::exchange_server::ExchangeReply;
use pilot_core::stream::State;
use pilot_core::time::Instant;
use rand_core::OsRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use identity::load_or_create as load_or_create_identity;
pub use registry_client::RegistryClient;

/// spec §9.5: a registered node sends a heartbeat every 60 seconds.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// Largest datagram read: a tunnel frame never exceeds a UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Commands queued for the driver task before callers wait.
const COMMAND_QUEUE_LEN: usize = 64;
/// Events buffered per subscription before further ones are dropped (and logged).
const SUBSCRIPTION_QUEUE_LEN: usize = 256;
/// Read buffer for echo replies.
const READ_CHUNK_BYTES: usize = 4096;

/// How to start a [`Peer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The registry's TCP address.
    pub registry: SocketAddr,
    /// UDP address to bind; port 0 picks a free port. Registered as our `listen_addr`.
    pub listen: SocketAddr,
    /// Identity file (created when missing, see [`load_or_create_identity`]).
    pub identity: PathBuf,
    /// Public node (spec §6.8): anyone may resolve us and open streams; no trust gate.
    pub public: bool,
    /// Deregister on [`Peer::shutdown`]: for throwaway identities. Off by default, because
    /// the registry forgets a deregistered key and would give it a new address next time.
    pub deregister_on_shutdown: bool,
    /// Time between heartbeats (spec §9.5: 60 s; shorter in tests).
    pub heartbeat_interval: Duration,
}

impl PeerConfig {
    /// Defaults: loopback UDP on a free port, private node.
    pub fn new(registry: SocketAddr, identity: PathBuf) -> Self {
        PeerConfig {
            registry,
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            identity,
            public: false,
            deregister_on_shutdown: false,
            heartbeat_interval: HEARTBEAT_INTERVAL,
        }
    }
}

/// Why a peer operation failed.
#[derive(Debug)]
pub enum PeerError {
    /// Socket or file I/O failed.
    Io(io::Error),
    /// A registry message could not be encoded or decoded.
    Registry(RegistryError),
    /// The registry closed the connection before answering.
    RegistryClosed,
    /// The registry answered with an `error` (its text) or an unexpected response type.
    RegistryRefused(String),
    /// The registry's `real_addr` for a node is empty or not an `ip:port`.
    NoPeerAddress(u32),
    /// The engine refused a command.
    Node(NodeError),
    /// The key exchange with the peer went unanswered.
    Unreachable(u32),
    /// The stream was reset or closed before the operation completed.
    StreamFailed,
    /// The driver task has stopped.
    Stopped,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Io(err) => write!(f, "I/O error: {err}"),
            PeerError::Registry(err) => write!(f, "registry protocol error: {err}"),
            PeerError::RegistryClosed => f.write_str("registry closed the connection"),
            PeerError::RegistryRefused(text) => write!(f, "registry refused: {text}"),
            PeerError::NoPeerAddress(node) => {
                write!(f, "registry has no usable address for node {node}")
            }
            PeerError::Node(err) => write!(f, "node error: {err}"),
            PeerError::Unreachable(node) => write!(f, "node {node} is unreachable"),
            PeerError::StreamFailed => f.write_str("stream reset or closed before completion"),
            PeerError::Stopped => f.write_str("peer driver has stopped"),
        }
    }
}

impl std::error::Error for PeerError {}

impl From<io::Error> for PeerError {
    fn from(err: io::Error) -> Self {
        PeerError::Io(err)
    }
}

impl From<RegistryError> for PeerError {
    fn from(err: RegistryError) -> Self {
        PeerError::Registry(err)
    }
}

impl From<NodeError> for PeerError {
    fn from(err: NodeError) -> Self {
        PeerError::Node(err)
    }
}

type Reply<T> = oneshot::Sender<Result<T, PeerError>>;

enum Command {
    Ping {
        peer: Addr,
        reply: Reply<Duration>,
    },
    Exchange {
        peer: Addr,
        port: u16,
        message: Vec<u8>,
        reply: Reply<Vec<u8>>,
    },
    SendMessage {
        peer: Addr,
        frame_type: FrameType,
        /// The base name, for FILE frames.
        filename: String,
        data: Vec<u8>,
        reply: Reply<ExchangeReply>,
    },
    Subscribe {
        peer: Addr,
        topic: Vec<u8>,
        reply: Reply<Subscription>,
    },
    Publish {
        peer: Addr,
        topic: Vec<u8>,
        payload: Vec<u8>,
        reply: Reply<()>,
    },
    Shutdown,
}

/// One event of a subscription: topic and payload.
pub type TopicEvent = (Vec<u8>, Vec<u8>);

/// Events of a subscription made with [`Peer::subscribe`]. Dropping it stops delivery; the
/// stream itself stays open until the broker ends it or the peer shuts down (the engine
/// offers no way to close a subscriber stream yet).
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<TopicEvent>,
}

impl Subscription {
    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<TopicEvent> {
        self.events.recv().await
    }
}

/// A running peer: a handle to its driver task. Dropping it also stops the task, which then
/// finishes (and deregisters, if configured) in the background while the runtime lives.
#[derive(Debug)]
pub struct Peer {
    addr: Addr,
    udp_addr: SocketAddr,
    public_key: [u8; 32],
    public: bool,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Peer {
    /// Binds the UDP socket, loads the identity, registers (and goes public if asked), then
    /// starts the driver task.
    pub async fn start(config: PeerConfig) -> Result<Peer, PeerError> {
        let seed = identity::load_or_create(&config.identity)?;
        let identity = Identity::from_seed(&seed);
        let socket = UdpSocket::bind(config.listen).await?;
        let udp_addr = socket.local_addr()?;
        let mut registry = RegistryClient::new(config.registry);

        let register = Register::signed(udp_addr.to_string(), &identity);
        let registered = match registry.call(&Request::Register(register)).await? {
            Response::RegisterOk(ok) => ok,
            other => return Err(refused(other)),
        };
        let addr = Addr::new(registered.network_id, registered.node_id);
        if config.public {
            let request = SetVisibility::signed(registered.node_id, true, &identity);
            match registry.call(&Request::SetVisibility(request)).await? {
                Response::SetVisibilityOk => {}
                other => return Err(refused(other)),
            }
        }
        info!(%addr, %udp_addr, public = config.public, "registered");

        let node_config = NodeConfig {
            private: !config.public,
            unix_secs_at_zero: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ..NodeConfig::default()
        };
        let node = Node::new(node_config, addr, &seed, OsRng);
        let public_key = identity.public_key();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let driver = Driver {
            node,
            identity,
            socket,
            registry,
            origin: tokio::time::Instant::now(),
            paths: HashMap::new(),
            path_of_socket: HashMap::new(),
            next_path: 1,
            resolved: HashMap::new(),
            next_ping: 1,
            pings: HashMap::new(),
            exchanges: HashMap::new(),
            messages: HashMap::new(),
            subscriptions: HashMap::new(),
            publications: HashMap::new(),
            deregister_on_shutdown: config.deregister_on_shutdown,
            udp_addr,
            public: config.public,
            heartbeat_interval: config.heartbeat_interval,
        };
        let task = tokio::spawn(driver.run(rx));
        Ok(Peer {
            addr,
            udp_addr,
            public_key,
            public: config.public,
            commands,
            task,
        })
    }

    /// Our node address (from the registry).
    pub fn addr(&self) -> Addr {
        self.addr
    }

    /// Our UDP endpoint.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Our Ed25519 public key (the registry's record of us).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Whether we registered as a public node.
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// Pings `peer` (spec §8.10); returns the round-trip time.
    pub async fn ping(&self, peer: Addr) -> Result<Duration, PeerError> {
        self.ask(|reply| Command::Ping { peer, reply }).await
    }

    /// Opens a stream to `peer`:`port`, writes `message`, reads until as many bytes came back
    /// (the echo service's answer, spec §10.1), closes the stream and returns them.
    pub async fn exchange(
        &self,
        peer: Addr,
        port: u16,
        message: Vec<u8>,
    ) -> Result<Vec<u8>, PeerError> {
        self.ask(|reply| Command::Exchange {
            peer,
            port,
            message,
            reply,
        })
        .await
    }

    /// Sends one data exchange frame to `peer`'s port 1001 (spec §10.3) and returns its ACK.
    /// Any frame type is sent as given; a FILE frame sent this way carries no name (use
    /// [`send_file`](Self::send_file)).
    pub async fn send_message(
        &self,
        peer: Addr,
        frame_type: FrameType,
        data: Vec<u8>,
    ) -> Result<ExchangeReply, PeerError> {
        self.ask(|reply| Command::SendMessage {
            peer,
            frame_type,
            filename: String::new(),
            data,
            reply,
        })
        .await
    }

    /// Sends a named file as one FILE frame to `peer`'s port 1001 (spec §10.3) and returns
    /// its ACK. `name` should be a base name; the receiver sanitizes it anyway.
    pub async fn send_file(
        &self,
        peer: Addr,
        name: String,
        data: Vec<u8>,
    ) -> Result<ExchangeReply, PeerError> {
        self.ask(|reply| Command::SendMessage {
            peer,
            frame_type: FrameType::File,
            filename: name,
            data,
            reply,
        })
        .await
    }

    /// Subscribes to `topic` (`*` for all) at `peer`'s event stream broker (spec §10.4).
    /// Returns once the subscription stream is being opened; the broker only forwards events
    /// published after it has read the subscription.
    pub async fn subscribe(&self, peer: Addr, topic: Vec<u8>) -> Result<Subscription, PeerError> {
        self.ask(|reply| Command::Subscribe { peer, topic, reply })
            .await
    }

    /// Publishes one event at `peer`'s broker on a stream of its own (spec §10.4). Returns
    /// once both sides' FINs were exchanged (the broker's stream acknowledged every byte; the
    /// broker itself sends no application-level answer); [`PeerError::StreamFailed`] if the
    /// stream was reset or given up on first.
    pub async fn publish(
        &self,
        peer: Addr,
        topic: Vec<u8>,
        payload: Vec<u8>,
    ) -> Result<(), PeerError> {
        self.ask(|reply| Command::Publish {
            peer,
            topic,
            payload,
            reply,
        })
        .await
    }

    /// Stops the driver task (deregistering if configured) and waits for it.
    pub async fn shutdown(self) -> Result<(), PeerError> {
        // A closed channel means the task already ended: nothing left to stop.
        let _ = self.commands.send(Command::Shutdown).await;
        self.task.await.map_err(io::Error::other)?;
        Ok(())
    }

    /// Whether the driver task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, PeerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| PeerError::Stopped)?;
        answer.await.map_err(|_| PeerError::Stopped)?
    }
}

/// The ACK line a data exchange server sends (spec §10.3), e.g. `ACK TEXT 5 bytes`.
pub fn ack_line(reply: &ExchangeReply) -> String {
    match reply {
        ExchangeReply::Acked { frame_type, len } => format!("ACK {frame_type} {len} bytes"),
        ExchangeReply::Failed { frame_type, reason } => format!("ERR {frame_type} {reason}"),
    }
}

fn refused(response: Response) -> PeerError {
    match response {
        Response::Error { error } => PeerError::RegistryRefused(error),
        other => PeerError::RegistryRefused(format!("unexpected {}", other.type_name())),
    }
}

struct ExchangeOp {
    peer: u32,
    message: Vec<u8>,
    received: Vec<u8>,
    reply: Reply<Vec<u8>>,
}

struct Driver {
    node: Node<OsRng>,
    identity: Identity,
    socket: UdpSocket,
    registry: RegistryClient,
    origin: tokio::time::Instant,
    paths: HashMap<PathId, SocketAddr>,
    path_of_socket: HashMap<SocketAddr, PathId>,
    next_path: u64,
    /// Nodes whose registry address was handed to the engine.
    resolved: HashMap<u32, SocketAddr>,
    next_ping: u64,
    /// Outstanding pings by payload: (target node, sent at, reply).
    pings: HashMap<Vec<u8>, (u32, tokio::time::Instant, Reply<Duration>)>,
    exchanges: HashMap<ConnectionId, ExchangeOp>,
    messages: HashMap<ConnectionId, (u32, Reply<ExchangeReply>)>,
    subscriptions: HashMap<ConnectionId, mpsc::Sender<TopicEvent>>,
    publications: HashMap<ConnectionId, Reply<()>>,
    deregister_on_shutdown: bool,
    udp_addr: SocketAddr,
    public: bool,
    heartbeat_interval: Duration,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
        // The first tick is immediate; registration just happened.
        heartbeat.tick().await;
        loop {
            let deadline = self.flush().await;
            let sleep = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + HEARTBEAT_INTERVAL),
            );
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        let path = self.path_for(from);
                        let input = Input::Frame { path, bytes, relay_sender: None };
                        if let Err(err) = self.node.handle_input(self.now(), input) {
                            debug!(%from, %err, "frame dropped");
                        }
                    }
                    Err(err) => warn!(%err, "UDP receive failed"),
                },
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => self.on_command(command).await,
                },
                () = sleep, if deadline.is_some() => {
                    if let Err(err) = self.node.handle_input(self.now(), Input::Tick) {
                        debug!(%err, "tick");
                    }
                },
                _ = heartbeat.tick() => self.heartbeat().await,
            }
            self.forget_abandoned();
            self.settle_dropped_connections();
        }
        if self.deregister_on_shutdown {
            self.deregister().await;
        }
        info!(addr = %self.node.addr(), "peer stopped");
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

    fn path_for(&mut self, addr: SocketAddr) -> PathId {
        if let Some(path) = self.path_of_socket.get(&addr) {
            return *path;
        }
        let path = PathId(self.next_path);
        self.next_path += 1;
        self.paths.insert(path, addr);
        self.path_of_socket.insert(addr, path);
        path
    }

    /// Sends what the node produced and handles its events; returns when to tick next.
    async fn flush(&mut self) -> Option<tokio::time::Instant> {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { path, bytes } => match self.paths.get(&path) {
                    Some(addr) => {
                        if let Err(err) = self.socket.send_to(&bytes, addr).await {
                            warn!(%addr, %err, "UDP send failed");
                        }
                    }
                    None => warn!(?path, "transmit on an unknown path"),
                },
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
            Event::NeedPeerKey { node } => {
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
            Event::RegistryRequest(request) => match self.registry.call(&request).await {
                Ok(Response::PollHandshakesOk(inbox)) => {
                    self.input(Input::Command(pilot_core::node::Command::TrustInbox(
                        Box::new(inbox),
                    )));
                }
                Ok(Response::Error { error }) => warn!(%error, "registry refused a request"),
                Ok(response) => debug!(kind = response.type_name(), "registry answered"),
                Err(err) => warn!(%err, "registry request failed"),
            },
            Event::Pong { from, payload } => {
                if let Some((_, sent, reply)) = self.pings.remove(&payload) {
                    let _ = reply.send(Ok(sent.elapsed()));
                } else {
                    debug!(%from, "unsolicited pong");
                }
            }
            Event::StreamOpened(conn) => {
                if let Some(op) = self.exchanges.get(&conn) {
                    let message = op.message.clone();
                    let now = self.now();
                    if let Err(err) = self.node.write(now, conn, &message) {
                        self.fail_exchange(conn, err.into());
                    }
                }
            }
            Event::StreamReadable(conn) => self.read_exchange(conn),
            Event::StreamReset { conn, .. }
            | Event::StreamClosed(conn)
            | Event::StreamPeerClosed(conn) => {
                // Whatever arrived before the FIN still counts.
                self.read_exchange(conn);
                self.fail_exchange(conn, PeerError::StreamFailed);
                if let Some((_, reply)) = self.messages.remove(&conn) {
                    let _ = reply.send(Err(PeerError::StreamFailed));
                }
            }
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
                // Contents are not stored: this peer is a test and demo tool.
                info!(%from, %frame_type, ?filename, bytes = payload.len(), "message received");
            }
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
            Event::PeerUnreachable { node } => self.fail_node(node),
            Event::PeerSessionUp { node, rekey } => info!(node, rekey, "tunnel session up"),
            Event::Error(err) => warn!(%err, "node error"),
            other => debug!(event = ?other, "event"),
        }
    }

    fn input(&mut self, input: Input) {
        if let Err(err) = self.node.handle_input(self.now(), input) {
            debug!(%err, "input refused");
        }
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
    }

    /// Resolves `node` in the registry (signed, spec §9.4) and gives its address to the engine.
    async fn ensure_path(&mut self, node: u32) -> Result<(), PeerError> {
        if self.resolved.contains_key(&node) {
            return Ok(());
        }
        let request = Resolve::signed(self.node.addr().node, node, &self.identity);
        let ok = match self.registry.call(&Request::Resolve(request)).await? {
            Response::ResolveOk(ok) => ok,
            other => return Err(refused(other)),
        };
        let addr: SocketAddr = ok
            .real_addr
            .parse()
            .map_err(|_| PeerError::NoPeerAddress(node))?;
        // The resolve answer carries the key too: spare the engine a lookup.
        let PublicKey(key) = ok.public_key;
        self.input(Input::PeerKey {
            node,
            key: Some(key),
        });
        let path = self.path_for(addr);
        let now = self.now();
        self.node.add_peer_path(now, node, path)?;
        self.resolved.insert(node, addr);
        debug!(node, %addr, "resolved");
        Ok(())
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Ping { peer, reply } => {
                if let Err(err) = self.ensure_path(peer.node).await {
                    let _ = reply.send(Err(err));
                    return;
                }
                let payload = self.next_ping.to_be_bytes().to_vec();
                self.next_ping += 1;
                let now = self.now();
                match self.node.ping(now, peer, &payload) {
                    Ok(()) => {
                        self.pings
                            .insert(payload, (peer.node, tokio::time::Instant::now(), reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            Command::Exchange {
                peer,
                port,
                message,
                reply,
            } => {
                if let Err(err) = self.ensure_path(peer.node).await {
                    let _ = reply.send(Err(err));
                    return;
                }
                let now = self.now();
                match self.node.dial(now, peer, port) {
                    Ok(conn) => {
                        self.exchanges.insert(
                            conn,
                            ExchangeOp {
                                peer: peer.node,
                                message,
                                received: Vec::new(),
                                reply,
                            },
                        );
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            Command::SendMessage {
                peer,
                frame_type,
                filename,
                data,
                reply,
            } => {
                if let Err(err) = self.ensure_path(peer.node).await {
                    let _ = reply.send(Err(err));
                    return;
                }
                let frame = match frame_type {
                    FrameType::Json => Frame::Json(&data),
                    FrameType::Binary => Frame::Binary(&data),
                    FrameType::File => Frame::File {
                        name: &filename,
                        data: &data,
                    },
                    FrameType::Text => Frame::Text(&data),
                    FrameType::Other(frame_type) => Frame::Other {
                        frame_type,
                        payload: &data,
                    },
                };
                let now = self.now();
                match self.node.send_message(now, peer, &frame) {
                    Ok(conn) => {
                        self.messages.insert(conn, (peer.node, reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            Command::Subscribe { peer, topic, reply } => {
                if let Err(err) = self.ensure_path(peer.node).await {
                    let _ = reply.send(Err(err));
                    return;
                }
                let now = self.now();
                match self.node.subscribe(now, peer, &topic) {
                    Ok(conn) => {
                        let (events, rx) = mpsc::channel(SUBSCRIPTION_QUEUE_LEN);
                        self.subscriptions.insert(conn, events);
                        let _ = reply.send(Ok(Subscription { events: rx }));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            Command::Publish {
                peer,
                topic,
                payload,
                reply,
            } => {
                if let Err(err) = self.ensure_path(peer.node).await {
                    let _ = reply.send(Err(err));
                    return;
                }
                let now = self.now();
                match self.node.publish(now, peer, &topic, &payload) {
                    Ok(conn) => {
                        self.publications.insert(conn, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            Command::Shutdown => {}
        }
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

    /// Registers again with the same key and endpoint. The engine's address cannot change
    /// while it runs, so a different node ID is reported, not adopted.
    async fn reregister(&mut self) -> Result<(), PeerError> {
        let register = Register::signed(self.udp_addr.to_string(), &self.identity);
        let ok = match self.registry.call(&Request::Register(register)).await? {
            Response::RegisterOk(ok) => ok,
            other => return Err(refused(other)),
        };
        let ours = self.node.addr().node;
        if ok.node_id != ours {
            warn!(
                ours,
                given = ok.node_id,
                "registry assigned another node ID; restart the peer to use it"
            );
            return Ok(());
        }
        if self.public {
            let request = SetVisibility::signed(ours, true, &self.identity);
            match self.registry.call(&Request::SetVisibility(request)).await? {
                Response::SetVisibilityOk => {}
                other => return Err(refused(other)),
            }
        }
        info!(addr = %self.node.addr(), "registered again");
        Ok(())
    }
}
