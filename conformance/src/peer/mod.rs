//! A native Pilot peer: drives the sans-IO [`pilot_core::node::Node`] over one UDP socket
//! (and, optionally, TCP connections framed as in spec §7.5) and registers with a registry
//! over TCP (spec §9). Used by the `pilot-peer` binary and by tests.
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
//! One task owns the node, the sockets and the registry connection; [`Peer`] is a handle
//! that sends it commands. The task feeds every received frame to `Node::handle_input`,
//! drains `poll_output` until `Timeout`, and sleeps until that instant, the next frame or the
//! next command. Registry requests the node needs (peer keys, trust reports, relayed trust
//! handshakes, inbox polls) are made inline: on loopback a round trip is well under the
//! engine's timers.
//!
//! What the node receives reaches the caller through bounded queues: data exchange messages
//! ([`Peer::next_message`]), datagrams of listened ports ([`Peer::next_datagram`]) and
//! streams accepted on listened ports ([`Peer::accept`]). A full queue drops (messages,
//! datagrams) or refuses (streams, with RST) what does not fit, and logs it.

mod control;
mod driver;
mod identity;
mod registry_client;
mod stream;
mod transport;
mod trust_store;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pilot_core::addr::Addr;
use pilot_core::crypto::Identity;
use pilot_core::node::{Node, NodeConfig, NodeError};
use pilot_core::registry::{Endpoint, Register, RegistryError, Request, Response, SetVisibility};
use pilot_core::services::dataexchange::FrameType;
use pilot_core::services::exchange_server::ExchangeReply;
use pilot_core::services::trust_service::TrustConfig;
use rand_core::OsRng;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

pub use control::{
    control_call, ensure_control_free, serve_control, ControlRequest, ControlServer,
};
pub use identity::load_or_create as load_or_create_identity;
pub use registry_client::RegistryClient;
pub use stream::PeerStream;
pub use transport::{TransportStats, MAX_TCP_CONNECTIONS};

/// spec §9.5: a registered node sends a heartbeat every 60 seconds.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the registry inbox of relayed trust handshakes is fetched (`poll_handshakes`,
/// spec §9.6) while none of our own requests awaits an answer.
pub const TRUST_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// How often the inbox is fetched while one of our relayed requests awaits its answer.
pub const TRUST_POLL_FAST_INTERVAL: Duration = Duration::from_secs(1);
/// Commands queued for the driver task before callers wait.
const COMMAND_QUEUE_LEN: usize = 64;
/// Received data exchange messages held for [`Peer::next_message`]; more are dropped.
pub const MESSAGE_QUEUE_LEN: usize = 256;
/// Default [`PeerConfig::tcp_idle_timeout`]: spec §8.9 reaps streams idle for 120 s, so a
/// connection without a frame for that long carries no live stream.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Received datagrams held per listened port for [`Peer::next_datagram`]; more are dropped.
pub const DATAGRAM_QUEUE_LEN: usize = 1024;
/// Accepted streams held per listened port for [`Peer::accept`]; more are reset.
pub const ACCEPT_QUEUE_LEN: usize = 64;

/// Which transport the peer uses to reach nodes it dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// UDP to the registry's `real_addr` (spec §7.1).
    #[default]
    Udp,
    /// A TCP connection to the node's advertised `{"network":"tcp"}` endpoint (spec §7.5),
    /// one pooled connection per remote address; UDP if the node advertises none.
    Tcp,
}

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
    /// Time between fetches of the registry's trust inbox while none of our requests awaits
    /// an answer (then [`TRUST_POLL_FAST_INTERVAL`]). Default [`TRUST_POLL_INTERVAL`].
    pub trust_poll_interval: Duration,
    /// Trust every authenticated requester at once (off by default; for demos).
    pub auto_approve: bool,
    /// Accept TCP connections carrying tunnel frames here (spec §7.5) and advertise the
    /// bound address as a `{"network":"tcp"}` endpoint in `register`. Off by default.
    pub tcp_listen: Option<SocketAddr>,
    /// How to reach nodes this peer dials. Default [`Transport::Udp`].
    pub transport: Transport,
    /// Keep the trusted nodes in this JSON file (written atomically, mode 0600) and trust
    /// them again at start. Off by default: trust then lives as long as the peer.
    pub trust_store: Option<PathBuf>,
    /// Close a TCP connection (inbound or dialled) that delivers no complete frame for this
    /// long. Default [`TCP_IDLE_TIMEOUT`]. Without it, idle or trickling connections
    /// (slowloris) could hold all [`transport::MAX_TCP_CONNECTIONS`] slots for ever.
    pub tcp_idle_timeout: Duration,
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
            trust_poll_interval: TRUST_POLL_INTERVAL,
            auto_approve: false,
            tcp_listen: None,
            transport: Transport::Udp,
            trust_store: None,
            tcp_idle_timeout: TCP_IDLE_TIMEOUT,
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
    /// Nothing arrived (or the operation did not complete) within the given time.
    Timeout(Duration),
    /// The node declined our trust request (its sanitized reason; empty when relayed).
    TrustRejected {
        /// The node asked.
        node: u32,
        /// Its reason.
        reason: String,
    },
    /// [`Peer::next_datagram`] or [`Peer::accept`] on a port not listened on first.
    NotListening(u16),
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
            PeerError::Timeout(after) => write!(f, "nothing within {after:?}"),
            PeerError::TrustRejected { node, reason } if reason.is_empty() => {
                write!(f, "node {node} declined the trust request")
            }
            PeerError::TrustRejected { node, reason } => {
                write!(f, "node {node} declined the trust request: {reason}")
            }
            PeerError::NotListening(port) => write!(
                f,
                "port {port} is not listened on: call listen/listen_datagrams first"
            ),
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

/// A request to the driver task; each carries the channel its answer goes back on.
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
    AddPeerAddress {
        node: u32,
        addr: SocketAddr,
        reply: Reply<()>,
    },
    RequestTrust {
        peer: Addr,
        justification: String,
        reply: Reply<TrustPath>,
    },
    PendingHandshakes {
        reply: Reply<Vec<PendingHandshake>>,
    },
    Approve {
        node: u32,
        reply: Reply<()>,
    },
    Reject {
        node: u32,
        reason: String,
        reply: Reply<()>,
    },
    Trusted {
        reply: Reply<Vec<u32>>,
    },
    WaitTrusted {
        node: u32,
        reply: Reply<()>,
    },
    SendDatagram {
        peer: Addr,
        port: u16,
        payload: Vec<u8>,
        reply: Reply<()>,
    },
    ListenDatagrams {
        port: u16,
        reply: Reply<mpsc::Receiver<ReceivedDatagram>>,
    },
    Listen {
        port: u16,
        reply: Reply<mpsc::Receiver<PeerStream>>,
    },
    Dial {
        peer: Addr,
        port: u16,
        reply: Reply<PeerStream>,
    },
    StreamWrite {
        conn: pilot_core::node::ConnectionId,
        bytes: Vec<u8>,
        reply: Reply<()>,
    },
    StreamRead {
        conn: pilot_core::node::ConnectionId,
        reply: Reply<Option<Vec<u8>>>,
    },
    /// `reply` is `None` when a dropped [`PeerStream`] closes itself.
    StreamClose {
        conn: pilot_core::node::ConnectionId,
        reply: Option<Reply<()>>,
    },
    Stats {
        reply: Reply<TransportStats>,
    },
    /// `done` is answered once the task has finished (deregistered, if configured).
    Shutdown {
        done: Option<Reply<()>>,
    },
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

/// How a trust request left (spec §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustPath {
    /// A signed message to the peer's port 444: we could reach it.
    Direct,
    /// `request_handshake` through the registry inbox: the peer could not be resolved (a
    /// private node) and had not reached us either.
    Relayed,
}

/// A trust request from another node awaiting our decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingHandshake {
    /// The requester's node ID (what [`Peer::approve`] and [`Peer::reject`] take).
    pub node: u32,
    /// The requester's address in our network.
    pub address: Addr,
    /// Its justification, sanitized by the trust service.
    pub justification: String,
    /// How it arrived.
    pub path: TrustPath,
    /// When it arrived, Unix seconds.
    pub received_at_unix_secs: u64,
}

/// A data exchange frame our port-1001 server received (spec §10.3); it was ACKed already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The sender.
    pub from: Addr,
    /// The frame type.
    pub frame_type: FrameType,
    /// For FILE frames, the sender's base name.
    pub filename: Option<String>,
    /// The body.
    pub payload: Vec<u8>,
}

/// A datagram received on a port listened with [`Peer::listen_datagrams`] (spec §8.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedDatagram {
    /// The sender.
    pub from: Addr,
    /// The sender's port.
    pub src_port: u16,
    /// The payload (never empty).
    pub payload: Vec<u8>,
}

/// A queue shared by the callers of one port; the lock is held across the wait.
type SharedQueue<T> = Arc<tokio::sync::Mutex<mpsc::Receiver<T>>>;

/// A running peer: a handle to its driver task. Dropping it stops the task once every
/// [`PeerStream`] is dropped too; the task then finishes (and deregisters, if configured) in
/// the background while the runtime lives.
#[derive(Debug)]
pub struct Peer {
    addr: Addr,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    public_key: [u8; 32],
    public: bool,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    messages: tokio::sync::Mutex<mpsc::Receiver<ReceivedMessage>>,
    datagrams: Mutex<HashMap<u16, SharedQueue<ReceivedDatagram>>>,
    accepts: Mutex<HashMap<u16, SharedQueue<PeerStream>>>,
}

impl Peer {
    /// Binds the UDP socket (and the TCP listener, if configured), loads the identity,
    /// registers (and goes public if asked), then starts the driver task.
    pub async fn start(config: PeerConfig) -> Result<Peer, PeerError> {
        let seed = identity::load_or_create(&config.identity)?;
        let identity_lock = identity::lock(&config.identity)?;
        let identity = Identity::from_seed(&seed);
        // Read before registering: a damaged store should not cost a registration.
        let saved_trust = match &config.trust_store {
            Some(path) => Some((path, trust_store::load(path)?)),
            None => None,
        };
        let socket = UdpSocket::bind(config.listen).await?;
        let udp_addr = socket.local_addr()?;
        let tcp = match config.tcp_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let tcp_addr = tcp.as_ref().map(TcpListener::local_addr).transpose()?;
        let mut registry = RegistryClient::new(config.registry);

        let registration = Registration {
            udp_addr,
            tcp_addr,
            public: config.public,
        };
        let addr = registration.register(&mut registry, &identity).await?;
        info!(%addr, %udp_addr, ?tcp_addr, public = config.public, "registered");

        let node_config = NodeConfig {
            private: !config.public,
            unix_secs_at_zero: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            trust: Some(TrustConfig {
                auto_approve: config.auto_approve,
            }),
            ..NodeConfig::default()
        };
        let mut node = Node::new(node_config, addr, &seed, OsRng);
        if let Some((path, saved)) = saved_trust {
            let count = saved.len();
            for (node_id, peer) in saved {
                if let Err(err) = node.restore_trusted(node_id, peer) {
                    tracing::warn!(node = node_id, %err, "saved trust not restored");
                }
            }
            info!(path = %path.display(), count, "trust store loaded");
        }
        let public_key = identity.public_key();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (messages_tx, messages) = mpsc::channel(MESSAGE_QUEUE_LEN);
        let driver = driver::Driver::new(driver::DriverSetup {
            node,
            identity,
            identity_lock,
            socket,
            tcp,
            registry,
            registration,
            commands: commands.downgrade(),
            messages: messages_tx,
            config: &config,
        });
        let task = tokio::spawn(driver.run(rx));
        Ok(Peer {
            addr,
            udp_addr,
            tcp_addr,
            public_key,
            public: config.public,
            commands,
            task,
            messages: tokio::sync::Mutex::new(messages),
            datagrams: Mutex::new(HashMap::new()),
            accepts: Mutex::new(HashMap::new()),
        })
    }

    /// Our node address (from the registry).
    pub fn addr(&self) -> Addr {
        self.addr
    }

    /// Our TCP listening address, when [`PeerConfig::tcp_listen`] was set.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
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

    /// Gives the engine an address of `node` learned out of band (a LAN, a config file),
    /// for nodes the registry will not resolve for us (private ones). Later commands to
    /// `node` use it, and trust requests to it go direct over port 444.
    pub async fn add_peer_address(&self, node: u32, addr: SocketAddr) -> Result<(), PeerError> {
        self.ask(|reply| Command::AddPeerAddress { node, addr, reply })
            .await
    }

    /// Asks `peer` for trust (spec §6.8, §9.6): a signed message to its port 444 when we can
    /// reach it (the registry resolves it, we were given its address, or it reached us), else
    /// `request_handshake` through the registry inbox. Returns which path was taken; the
    /// answer comes later ([`wait_trusted`](Self::wait_trusted)).
    pub async fn request_trust(
        &self,
        peer: Addr,
        justification: &str,
    ) -> Result<TrustPath, PeerError> {
        let justification = justification.to_string();
        self.ask(|reply| Command::RequestTrust {
            peer,
            justification,
            reply,
        })
        .await
    }

    /// Trust requests from other nodes awaiting our decision, oldest first. Relayed requests
    /// appear after the next inbox poll ([`PeerConfig::trust_poll_interval`]).
    pub async fn pending_handshakes(&self) -> Result<Vec<PendingHandshake>, PeerError> {
        self.ask(|reply| Command::PendingHandshakes { reply }).await
    }

    /// Approves every pending request of `node`: we trust it and tell it on the path each
    /// request came (port 444 and `report_trust`, or `respond_handshake`).
    pub async fn approve(&self, node: u32) -> Result<(), PeerError> {
        self.ask(|reply| Command::Approve { node, reply }).await
    }

    /// Declines every pending request of `node`, telling it why on the path each came.
    pub async fn reject(&self, node: u32, reason: &str) -> Result<(), PeerError> {
        let reason = reason.to_string();
        self.ask(|reply| Command::Reject {
            node,
            reason,
            reply,
        })
        .await
    }

    /// The nodes we trust, by node ID.
    pub async fn trusted(&self) -> Result<Vec<u32>, PeerError> {
        self.ask(|reply| Command::Trusted { reply }).await
    }

    /// Waits until we trust `node` (at once if we do already). Fails with
    /// [`PeerError::TrustRejected`] if it declined our latest request (also when the refusal
    /// came before this call), [`PeerError::Timeout`] after `timeout`.
    pub async fn wait_trusted(&self, node: u32, timeout: Duration) -> Result<(), PeerError> {
        within(
            timeout,
            self.ask(|reply| Command::WaitTrusted { node, reply }),
        )
        .await
    }

    /// The next data exchange message our port-1001 server received (spec §10.3), waiting
    /// at most `timeout`. Messages beyond [`MESSAGE_QUEUE_LEN`] unread ones are dropped.
    pub async fn next_message(&self, timeout: Duration) -> Result<ReceivedMessage, PeerError> {
        let mut messages = self.messages.lock().await;
        within(timeout, async {
            messages.recv().await.ok_or(PeerError::Stopped)
        })
        .await
    }

    /// Sends one datagram to `peer`:`port` (spec §8.11): unreliable, at least one byte.
    pub async fn send_datagram(
        &self,
        peer: Addr,
        port: u16,
        payload: Vec<u8>,
    ) -> Result<(), PeerError> {
        self.ask(|reply| Command::SendDatagram {
            peer,
            port,
            payload,
            reply,
        })
        .await
    }

    /// Starts accepting datagrams on `port`; read them with [`next_datagram`]. Idempotent.
    ///
    /// [`next_datagram`]: Self::next_datagram
    pub async fn listen_datagrams(&self, port: u16) -> Result<(), PeerError> {
        if lock(&self.datagrams).contains_key(&port) {
            return Ok(());
        }
        let queue = self
            .ask(|reply| Command::ListenDatagrams { port, reply })
            .await?;
        lock(&self.datagrams).insert(port, Arc::new(tokio::sync::Mutex::new(queue)));
        Ok(())
    }

    /// The next datagram received on `port`, waiting at most `timeout`. Datagrams beyond
    /// [`DATAGRAM_QUEUE_LEN`] unread ones are dropped.
    pub async fn next_datagram(
        &self,
        port: u16,
        timeout: Duration,
    ) -> Result<ReceivedDatagram, PeerError> {
        let queue = lock(&self.datagrams)
            .get(&port)
            .cloned()
            .ok_or(PeerError::NotListening(port))?;
        let mut queue = queue.lock().await;
        within(timeout, async {
            queue.recv().await.ok_or(PeerError::Stopped)
        })
        .await
    }

    /// Opens an application stream to `peer`:`port` (spec §8); returns once its handshake
    /// completed.
    pub async fn dial(&self, peer: Addr, port: u16) -> Result<PeerStream, PeerError> {
        self.ask(|reply| Command::Dial { peer, port, reply }).await
    }

    /// Starts accepting streams on `port`; take them with [`accept`]. Idempotent.
    ///
    /// [`accept`]: Self::accept
    pub async fn listen(&self, port: u16) -> Result<(), PeerError> {
        if lock(&self.accepts).contains_key(&port) {
            return Ok(());
        }
        let queue = self.ask(|reply| Command::Listen { port, reply }).await?;
        lock(&self.accepts).insert(port, Arc::new(tokio::sync::Mutex::new(queue)));
        Ok(())
    }

    /// The next stream accepted on `port`, waiting at most `timeout`. Beyond
    /// [`ACCEPT_QUEUE_LEN`] unaccepted streams, new ones are reset.
    pub async fn accept(&self, port: u16, timeout: Duration) -> Result<PeerStream, PeerError> {
        let queue = lock(&self.accepts)
            .get(&port)
            .cloned()
            .ok_or(PeerError::NotListening(port))?;
        let mut queue = queue.lock().await;
        within(timeout, async {
            queue.recv().await.ok_or(PeerError::Stopped)
        })
        .await
    }

    /// Frames moved per transport so far, and the TCP connections open now.
    pub async fn transport_stats(&self) -> Result<TransportStats, PeerError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Stops the driver task (deregistering if configured) and waits for it.
    pub async fn shutdown(self) -> Result<(), PeerError> {
        // A closed channel means the task already ended: nothing left to stop.
        let _ = self.commands.send(Command::Shutdown { done: None }).await;
        self.task.await.map_err(io::Error::other)?;
        Ok(())
    }

    /// Stops the driver task (deregistering if configured) and waits until it has finished,
    /// for a peer shared behind an `Arc`; later calls on this handle fail with
    /// [`PeerError::Stopped`].
    pub async fn stop(&self) -> Result<(), PeerError> {
        match self
            .ask(|done| Command::Shutdown { done: Some(done) })
            .await
        {
            Ok(()) | Err(PeerError::Stopped) => Ok(()),
            Err(err) => Err(err),
        }
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

/// `op`, or [`PeerError::Timeout`] once `timeout` has passed.
async fn within<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    tokio::time::timeout(timeout, op)
        .await
        .map_err(|_| PeerError::Timeout(timeout))?
}

/// The map behind a std mutex; a panic elsewhere while it was held leaves it usable.
fn lock<K, V>(map: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What we tell the registry about ourselves, again on re-registration.
#[derive(Debug, Clone, Copy)]
struct Registration {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    public: bool,
}

impl Registration {
    /// `register` (with our TCP endpoint, spec §9.3) and `set_visibility` if public.
    async fn register(
        &self,
        registry: &mut RegistryClient,
        identity: &Identity,
    ) -> Result<Addr, PeerError> {
        let mut register = Register::signed(self.udp_addr.to_string(), identity);
        register.endpoints = self
            .tcp_addr
            .map(|addr| Endpoint {
                network: TCP_NETWORK.to_string(),
                addr: addr.to_string(),
            })
            .into_iter()
            .collect();
        let registered = match registry.call(&Request::Register(register)).await? {
            Response::RegisterOk(ok) => ok,
            other => return Err(refused(other)),
        };
        if self.public {
            let request = SetVisibility::signed(registered.node_id, true, identity);
            match registry.call(&Request::SetVisibility(request)).await? {
                Response::SetVisibilityOk => {}
                other => return Err(refused(other)),
            }
        }
        Ok(Addr::new(registered.network_id, registered.node_id))
    }
}

/// The `network` name of a TCP endpoint in `register` and `resolve` (spec §9.3).
const TCP_NETWORK: &str = "tcp";

fn refused(response: Response) -> PeerError {
    match response {
        Response::Error { error } => PeerError::RegistryRefused(error),
        other => PeerError::RegistryRefused(format!("unexpected {}", other.type_name())),
    }
}
