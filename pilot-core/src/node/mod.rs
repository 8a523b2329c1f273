//! The node (spec §6–§8, §10): one identity, one node ID, one X25519 key, many peers,
//! streams, datagrams and the built-in services, as one sans-IO state machine.
//!
//! A [`Node`] is driven the way quinn-proto and str0m are: make one mutation with
//! [`Node::handle_input`] (a received frame, a registry answer, a command, or a tick), then
//! drain [`Node::poll_output`] until it reports [`Output::Timeout`] (or `None`: nothing is
//! scheduled), then sleep until that instant or the next input.
//!
//! ```
//! use pilot_core::addr::Addr;
//! use pilot_core::keyexchange::PathId;
//! use pilot_core::node::{Command, Event, Input, Node, NodeConfig, Output};
//! use pilot_core::time::Instant;
//! # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! # let rng = ChaCha20Rng::seed_from_u64(1);
//!
//! let mut node = Node::new(NodeConfig::default(), Addr::new(0, 7), &[1; 32], rng);
//! let now = Instant::ZERO;
//! node.handle_input(now, Input::Command(Command::AddPeerPath { node: 9, path: PathId(1) }))
//!     .unwrap();
//! let wake_at = loop {
//!     match node.poll_output() {
//!         Some(Output::Transmit { path, bytes }) => { /* send `bytes` on `path` */ }
//!         Some(Output::Event(Event::NeedPeerKey { node })) => { /* ask the registry */ }
//!         Some(Output::Event(_)) => { /* tell the application */ }
//!         Some(Output::Timeout(at)) => break Some(at),
//!         None => break None,
//!     }
//! };
//! // Sleep until `wake_at` or the next datagram, then `handle_input(now, Input::Tick)`.
//! # assert!(wake_at.is_some());
//! ```
//!
//! Layout: `io` (inputs, commands, outputs, events), `config`, `error`, `streams` (the
//! connection table, dispatch of Stream packets §8.2, ports §8.1), `hosted` (the built-in
//! services and the client helpers riding on streams), and this file (frames in, packets
//! out, datagrams and control, timers).
//!
//! Streams: [`Node::dial`] or a listened port gives a [`ConnectionId`]; data is written
//! with [`Node::write`] (partial counts, `WouldBlock` when full, then
//! [`Event::StreamWritable`]) and read with [`Node::read`] after [`Event::StreamReadable`].
//! A closed connection stays readable until its buffered data is read.
//!
//! Choices:
//! * The driver strips beacon relay envelopes ([`Input::Frame::relay_sender`]); PILF
//!   fragments are reassembled here, keyed by path.
//! * Datagrams are delivered only to ports the application listens on (spec §8.11: "to
//!   whoever is bound"); others are dropped.
//! * The private-node gate (spec §6.8) exempts port 444, where trust is asked for.
//! * A non-SYN segment for no connection is dropped, not answered with RST, so a
//!   retransmitted FIN after TIME_WAIT never starts an exchange.
//! * Registry traffic stays with the driver: [`Event::NeedPeerKey`] and
//!   [`Event::RegistryRequest`] go out, [`Input::PeerKey`] and [`Command::TrustInbox`] come in.
//!   The driver fetches the trust inbox itself, when it likes, by sending
//!   [`Node::trust_poll_request`] to the registry.
//!
//! Limitations: no SYN rate limits per source (spec §8.3) and no port policy beyond
//! listening; datagram broadcast expansion is the driver's (it needs `list_nodes`); timers
//! are found by a linear scan of the connections on every input (fine for the thousands the
//! limits allow, not for more); trust messages go to peers in our own network.

mod config;
mod error;
mod hosted;
mod io;
mod streams;
#[cfg(test)]
mod tests;

pub use config::*;
pub use error::NodeError;
pub use io::*;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use rand_core::CryptoRngCore;

use crate::addr::{ports, Addr};
use crate::crypto::{Identity, TunnelKey};
use crate::frame::fragment::{Fragmenter, Reassembler, Split};
use crate::frame::{classify, FrameKind};
use crate::keyexchange::{KexError, KexEvent, KexOutput, KeyExchange, PathId};
use crate::packet::{self, Header, PacketRef, Protocol};
use crate::services::broker::Broker;
use crate::services::echo::EchoService;
use crate::services::exchange_server::ExchangeServer;
use crate::services::trust_service::TrustService;
use crate::time::Instant;
use crate::trust::UnverifiedHandshake;
use streams::{Conn, ConnKey, Listener};

/// Most registry keys remembered for the trust service (answers to [`Event::NeedPeerKey`]).
pub const MAX_CACHED_PEER_KEYS: usize = 4096;
/// Most received trust messages waiting for their sender's registry key.
pub const MAX_PARKED_TRUST_MESSAGES: usize = 64;
/// Most nodes the driver can mark trusted with [`Command::SetTrusted`].
pub const MAX_EXTRA_TRUSTED: usize = 4096;

/// Counters of traffic the node dropped on its own, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Authenticated packets that were malformed, misaddressed or of an unknown protocol.
    pub packets_dropped_in: u64,
    /// Stream segments the key-exchange layer refused to send (pending queue full, key
    /// exchange in cooldown, no path): the stream retransmits them by its own timers.
    pub segments_refused_out: u64,
    /// The last refusal of the key-exchange layer, if any.
    pub last_refusal: Option<KexError>,
}

/// A Pilot node (see the module documentation). `R` is the node's CSPRNG.
pub struct Node<R> {
    config: NodeConfig,
    addr: Addr,
    rng: R,
    kx: KeyExchange,
    fragmenter: Fragmenter,
    reassembler: Reassembler<PathId>,
    outputs: VecDeque<Output>,
    /// The latest `now` seen; timers never run backwards.
    now: Instant,

    conns: BTreeMap<ConnectionId, Conn>,
    index: BTreeMap<ConnKey, ConnectionId>,
    listeners: BTreeMap<u16, Listener>,
    /// Connections with work to do since the last drain.
    dirty: BTreeSet<ConnectionId>,
    next_conn: u64,
    next_ephemeral: u16,
    next_ping_seq: u32,
    stats: NodeStats,

    echo: Option<EchoService>,
    exchange: Option<ExchangeServer>,
    broker: Option<Broker>,
    trust: Option<TrustService>,
    /// Nodes admitted by the driver's registry checks (spec §6.8 `check_trust`).
    extra_trusted: BTreeSet<u32>,
    /// Registry keys seen in [`Input::PeerKey`], for authenticating trust messages.
    peer_keys: BTreeMap<u32, [u8; 32]>,
    /// Trust messages waiting for their sender's key: (message, received at Unix seconds).
    parked_trust: Vec<(UnverifiedHandshake, u64)>,
}

impl<R> core::fmt::Debug for Node<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("connections", &self.conns.len())
            .field("listeners", &self.listeners.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl<R: CryptoRngCore> Node<R> {
    /// A node at `addr` whose Ed25519 identity has RFC 8032 seed `identity_seed` (the first
    /// half of Go's `private_key`); draws a fresh X25519 tunnel key from `rng` (spec §4.1).
    pub fn new(config: NodeConfig, addr: Addr, identity_seed: &[u8; 32], mut rng: R) -> Self {
        let tunnel = TunnelKey::generate(&mut rng);
        Self::with_tunnel_key(config, addr, identity_seed, tunnel, rng)
    }

    /// The node with a given tunnel key: for tests of a restart that keeps its key.
    pub fn with_tunnel_key(
        config: NodeConfig,
        addr: Addr,
        identity_seed: &[u8; 32],
        tunnel: TunnelKey,
        mut rng: R,
    ) -> Self {
        let kx =
            KeyExchange::with_tunnel_key(addr.node, Identity::from_seed(identity_seed), tunnel);
        let trust = config
            .trust
            .map(|c| TrustService::new(addr.node, Identity::from_seed(identity_seed), c));
        let mut listeners = BTreeMap::new();
        if config.echo.is_some() {
            listeners.insert(ports::ECHO, Listener::Echo);
        }
        if config.data_exchange.is_some() {
            listeners.insert(ports::DATA_EXCHANGE, Listener::Exchange);
        }
        if config.event_stream.is_some() {
            listeners.insert(ports::EVENT_STREAM, Listener::Broker);
        }
        if trust.is_some() {
            listeners.insert(ports::TRUST_HANDSHAKE, Listener::Trust);
        }
        let fragmenter = Fragmenter::new(rng.next_u32());
        Node {
            echo: config.echo.map(EchoService::new),
            exchange: config.data_exchange.map(ExchangeServer::new),
            broker: config.event_stream.map(Broker::new),
            trust,
            config,
            addr,
            rng,
            kx,
            fragmenter,
            reassembler: Reassembler::new(),
            outputs: VecDeque::new(),
            now: Instant::ZERO,
            conns: BTreeMap::new(),
            index: BTreeMap::new(),
            listeners,
            dirty: BTreeSet::new(),
            next_conn: 1,
            next_ephemeral: ports::EPHEMERAL_START,
            next_ping_seq: 1,
            stats: NodeStats::default(),
            extra_trusted: BTreeSet::new(),
            peer_keys: BTreeMap::new(),
            parked_trust: Vec::new(),
        }
    }

    /// Our address (the network part is the one we registered in; dialled connections use
    /// the destination's network, spec §8.1).
    pub fn addr(&self) -> Addr {
        self.addr
    }

    /// Our X25519 tunnel public key.
    pub fn tunnel_public_key(&self) -> [u8; 32] {
        self.kx.tunnel_public_key()
    }

    /// Whether a tunnel session with `node` is installed.
    pub fn has_session(&self, node: u32) -> bool {
        self.kx.has_session(node)
    }

    /// The path frames for `node` go to: the one its newest authenticated frame came on, or
    /// the one given with [`add_peer_path`](Self::add_peer_path) (spec §7.1).
    pub fn peer_path(&self, node: u32) -> Option<PathId> {
        self.kx.peer_path(node)
    }

    /// Open connections (any state, built-in services included).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Counters of traffic the node dropped on its own.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Whether `node` may open streams and send datagrams to us (spec §6.8).
    pub fn is_trusted(&self, node: u32) -> bool {
        self.extra_trusted.contains(&node)
            || self.trust.as_ref().is_some_and(|t| t.is_trusted(node))
    }

    /// The trust service, if enabled: trusted nodes, pending requests, outgoing requests.
    pub fn trust_service(&self) -> Option<&TrustService> {
        self.trust.as_ref()
    }

    /// Bytes of fixed-size state per peer in the key-exchange layer (`size_of`).
    pub fn per_peer_state_size() -> usize {
        KeyExchange::per_peer_state_size()
    }

    /// Bytes of fixed-size state per connection (`size_of`); buffers are on top, bounded by
    /// the stream [`Config`](crate::stream::Config).
    pub fn per_connection_state_size() -> usize {
        core::mem::size_of::<Conn>() + core::mem::size_of::<(ConnKey, ConnectionId)>()
    }

    /// Applies one input, then runs every timer due at `now`. Drain [`poll_output`] after it.
    ///
    /// Frames that are dropped (forged, replayed, malformed, for no one) return the reason
    /// as `Err`; that is normal traffic, not a failure of the node.
    ///
    /// [`poll_output`]: Self::poll_output
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<Completion, NodeError> {
        self.now = self.now.max(now);
        let now = self.now;
        let result = match input {
            Input::Frame {
                path,
                bytes,
                relay_sender,
            } => self.on_frame(now, path, &bytes, relay_sender),
            Input::PeerKey { node, key } => self.on_peer_key(now, node, key),
            Input::Command(command) => self.on_command(now, command),
            Input::Tick => Ok(Completion::Done),
        };
        self.fire_timers(now);
        self.drive(now);
        result
    }

    /// The next output; [`Output::Timeout`] once drained, `None` when drained and no timer
    /// is armed.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        self.poll_timeout().map(Output::Timeout)
    }

    /// The earliest instant a timer of the node is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| c.stream.poll_timeout());
        self.kx
            .poll_timeout()
            .into_iter()
            .chain(self.reassembler.next_expiry())
            .chain(conns)
            .min()
    }

    fn on_command(&mut self, now: Instant, command: Command) -> Result<Completion, NodeError> {
        let done = |_: ()| Completion::Done;
        match command {
            Command::Dial { peer, port } => self.dial(now, peer, port).map(Completion::Connection),
            Command::Listen { port } => self.listen(port).map(done),
            Command::Unlisten { port } => self.unlisten(port).map(done),
            Command::Write { conn, bytes } => {
                self.write(now, conn, &bytes).map(Completion::Written)
            }
            Command::Close { conn } => self.close(now, conn).map(done),
            Command::Abort { conn } => self.abort(now, conn).map(done),
            Command::SendTo { peer, port, bytes } => {
                self.send_to(now, peer, port, &bytes).map(done)
            }
            Command::Ping { peer, payload } => self.ping(now, peer, &payload).map(done),
            Command::AddPeerPath { node, path } => self.add_peer_path(now, node, path).map(done),
            Command::SetTrusted { node, trusted } => self.set_trusted(node, trusted).map(done),
            Command::TrustRequest {
                node,
                justification,
            } => self.trust_request(now, node, &justification).map(done),
            Command::TrustRequestRelayed {
                node,
                justification,
            } => self
                .trust_request_relayed(now, node, &justification)
                .map(done),
            Command::TrustApprove { node } => self.trust_approve(now, node).map(done),
            Command::TrustReject { node, reason } => {
                self.trust_reject(now, node, &reason).map(done)
            }
            Command::TrustRevoke { node, reason } => {
                self.trust_revoke(now, node, &reason).map(done)
            }
            Command::TrustInbox(inbox) => self.trust_inbox(now, &inbox).map(done),
        }
    }

    /// Starts a key exchange with `node` on `path` (a path from the registry's resolve).
    pub fn add_peer_path(
        &mut self,
        now: Instant,
        node: u32,
        path: PathId,
    ) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        self.kx.connect(self.now, node, path)?;
        self.drive(self.now);
        Ok(())
    }

    /// Admits (or stops admitting) `node` on a private node, on the driver's authority.
    pub fn set_trusted(&mut self, node: u32, trusted: bool) -> Result<(), NodeError> {
        if !trusted {
            self.extra_trusted.remove(&node);
            return Ok(());
        }
        if self.extra_trusted.len() >= MAX_EXTRA_TRUSTED && !self.extra_trusted.contains(&node) {
            return Err(NodeError::TrustSetFull);
        }
        self.extra_trusted.insert(node);
        Ok(())
    }

    fn on_frame(
        &mut self,
        now: Instant,
        path: PathId,
        bytes: &[u8],
        relay_sender: Option<u32>,
    ) -> Result<Completion, NodeError> {
        match classify(bytes) {
            Some(FrameKind::Fragment) => {
                let whole = self
                    .reassembler
                    .push(path, relay_sender, bytes, now)
                    .map_err(NodeError::Fragment)?;
                match whole {
                    // The reassembler refuses nested PILF, so this recursion is one level.
                    Some(frame) => self.on_frame(now, path, &frame, relay_sender),
                    None => Ok(Completion::Done),
                }
            }
            Some(FrameKind::AuthKeyExchange | FrameKind::KeyExchange | FrameKind::Encrypted) => {
                self.kx.handle_frame(now, path, bytes, &mut self.rng)?;
                Ok(Completion::Done)
            }
            // spec §3.2: PILT is never accepted by a node that has an identity; PILP only
            // opens NAT state, which the driver's socket already did.
            Some(FrameKind::Punch) => Ok(Completion::Done),
            _ => Err(NodeError::UnsupportedFrame),
        }
    }

    fn on_peer_key(
        &mut self,
        now: Instant,
        node: u32,
        key: Option<[u8; 32]>,
    ) -> Result<Completion, NodeError> {
        if let Some(key) = key {
            if self.peer_keys.len() >= MAX_CACHED_PEER_KEYS && !self.peer_keys.contains_key(&node) {
                self.peer_keys.pop_first();
            }
            self.peer_keys.insert(node, key);
        }
        self.resume_parked_trust(now, node, key);
        self.kx.provide_peer_key(now, node, key, &mut self.rng)?;
        Ok(Completion::Done)
    }

    fn fire_timers(&mut self, now: Instant) {
        if self.kx.poll_timeout().is_some_and(|t| t <= now) {
            self.kx.handle_timeout(now);
        }
        self.reassembler.expire(now);
        for (id, conn) in &mut self.conns {
            if conn.stream.poll_timeout().is_some_and(|t| t <= now) {
                conn.stream.handle_timeout(now);
                self.dirty.insert(*id);
            }
        }
    }

    /// Moves work between the layers until nothing moves: key-exchange outputs (frames out,
    /// packets in), then connections with work (events, services, segments out).
    fn drive(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(output) = self.kx.poll_output() {
                moved = true;
                self.on_kex_output(now, output);
            }
            while let Some(id) = self.dirty.pop_first() {
                moved = true;
                self.service_connection(now, id);
            }
            if !moved {
                break;
            }
        }
    }

    fn on_kex_output(&mut self, now: Instant, output: KexOutput) {
        match output {
            KexOutput::Transmit { path, frame } => self.transmit(path, frame),
            KexOutput::Deliver { node, packet } => {
                // Malformed or misaddressed authenticated packets are the peer's bug: counted.
                if self.on_packet(now, node, &packet).is_err() {
                    self.stats.packets_dropped_in += 1;
                }
            }
            KexOutput::Event(event) => {
                let event = match event {
                    KexEvent::SessionUp { node, rekey } => Event::PeerSessionUp { node, rekey },
                    KexEvent::SessionDown { node, .. } => Event::PeerSessionDown { node },
                    KexEvent::NeedPeerKey { node } => Event::NeedPeerKey { node },
                    KexEvent::GaveUp { node, .. } => Event::PeerUnreachable { node },
                    // The stream layer retransmits what the pending queue dropped.
                    KexEvent::PendingDropped { .. } => return,
                };
                self.outputs.push_back(Output::Event(event));
            }
        }
    }

    fn transmit(&mut self, path: PathId, frame: Vec<u8>) {
        if !self.config.fragment_large_frames {
            self.outputs
                .push_back(Output::Transmit { path, bytes: frame });
            return;
        }
        match self.fragmenter.split(self.addr.node, &frame) {
            Ok(Split::Whole(_)) => self
                .outputs
                .push_back(Output::Transmit { path, bytes: frame }),
            Ok(Split::Fragments(fragments)) => {
                for bytes in fragments {
                    self.outputs.push_back(Output::Transmit { path, bytes });
                }
            }
            // Larger than 64 fragments: cannot happen below the PILS limit; send whole.
            Err(_) => self
                .outputs
                .push_back(Output::Transmit { path, bytes: frame }),
        }
    }

    /// An authenticated packet from `node` (its `src.node` already checked, spec §5.6).
    fn on_packet(&mut self, now: Instant, node: u32, bytes: &[u8]) -> Result<(), NodeError> {
        let packet = PacketRef::decode(bytes).map_err(NodeError::MalformedPacket)?;
        let header = packet.header;
        if header.dst.node != self.addr.node || header.src.node != node {
            return Err(NodeError::WrongDestination);
        }
        match header.protocol {
            Protocol::Stream => self.on_stream_packet(now, &packet),
            Protocol::Datagram => self.on_datagram(&packet),
            Protocol::Control => self.on_control(now, &packet),
            Protocol::Other(_) => Ok(()),
        }
    }

    fn on_datagram(&mut self, packet: &PacketRef<'_>) -> Result<(), NodeError> {
        let h = packet.header;
        // spec §8.11: empty datagrams are dropped; §6.8: the private-node gate.
        if packet.payload.is_empty() || !self.admits(h.src.node, h.dst_port) {
            return Ok(());
        }
        if !matches!(self.listeners.get(&h.dst_port), Some(Listener::App)) {
            return Ok(());
        }
        self.outputs.push_back(Output::Event(Event::Datagram {
            from: h.src,
            src_port: h.src_port,
            dst_port: h.dst_port,
            payload: packet.payload.to_vec(),
        }));
        Ok(())
    }

    fn on_control(&mut self, now: Instant, packet: &PacketRef<'_>) -> Result<(), NodeError> {
        let h = packet.header;
        // spec §8.10: only port 0 (ping) is served; empty = keepalive (liveness only).
        if h.dst_port != ports::PING || packet.payload.is_empty() {
            return Ok(());
        }
        if h.flags.contains(packet::Flags::ACK) {
            self.outputs.push_back(Output::Event(Event::Pong {
                from: h.src,
                payload: packet.payload.to_vec(),
            }));
            return Ok(());
        }
        let pong = Header {
            flags: packet::Flags::ACK,
            protocol: Protocol::Control,
            src: h.dst,
            dst: h.src,
            src_port: ports::PING,
            dst_port: h.src_port,
            seq: h.seq,
            ack: h.seq.wrapping_add(1),
            window: 0,
        };
        self.send_packet(now, pong, packet.payload)
    }

    /// Whether a SYN or datagram from `node` to `port` passes the private-node gate (§6.8).
    fn admits(&self, node: u32, port: u16) -> bool {
        !self.config.private || port == ports::TRUST_HANDSHAKE || self.is_trusted(node)
    }

    /// Encodes and seals one packet toward `header.dst.node`.
    fn send_packet(
        &mut self,
        now: Instant,
        header: Header,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        let mut bytes = Vec::new();
        PacketRef::new(header, payload)
            .encode(&mut bytes)
            .map_err(|_| NodeError::PayloadTooLarge)?;
        self.kx.send_packet(now, header.dst.node, &bytes)?;
        Ok(())
    }

    /// Sends one datagram to `peer`:`port` from a fresh ephemeral port (spec §8.11).
    pub fn send_to(
        &mut self,
        now: Instant,
        peer: Addr,
        port: u16,
        bytes: &[u8],
    ) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        if bytes.is_empty() {
            return Err(NodeError::EmptyPayload);
        }
        if peer.node == self.addr.node {
            return Err(NodeError::OwnAddress);
        }
        let src_port = self.allocate_port()?;
        let header = Header {
            flags: packet::Flags::NONE,
            protocol: Protocol::Datagram,
            src: Addr::new(peer.network, self.addr.node),
            dst: peer,
            src_port,
            dst_port: port,
            seq: 0,
            ack: 0,
            window: 0,
        };
        self.send_packet(self.now, header, bytes)?;
        self.drive(self.now);
        Ok(())
    }

    /// Pings `peer` with a non-empty payload; the answer is [`Event::Pong`] (spec §8.10).
    pub fn ping(&mut self, now: Instant, peer: Addr, payload: &[u8]) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        if payload.is_empty() {
            return Err(NodeError::EmptyPayload);
        }
        if peer.node == self.addr.node {
            return Err(NodeError::OwnAddress);
        }
        let seq = self.next_ping_seq;
        self.next_ping_seq = seq.wrapping_add(1);
        let header = Header {
            flags: packet::Flags::NONE,
            protocol: Protocol::Control,
            src: Addr::new(peer.network, self.addr.node),
            dst: peer,
            src_port: ports::PING,
            dst_port: ports::PING,
            seq,
            ack: 0,
            window: 0,
        };
        self.send_packet(self.now, header, payload)?;
        self.drive(self.now);
        Ok(())
    }

    fn unix_secs(&self, now: Instant) -> u64 {
        self.config
            .unix_secs_at_zero
            .saturating_add(now.as_micros() / 1_000_000)
    }

    fn push_event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }
}
