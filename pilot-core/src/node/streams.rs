//! The connection table: dispatch of Stream packets (spec §8.2), listening, ports and
//! connection identity (spec §8.1), limits (spec §8.3), and the application's stream calls.

use alloc::vec::Vec;

use rand_core::CryptoRngCore;

use super::{ConnectionId, Event, Node, NodeError};
use crate::addr::{ports, Addr, SocketAddr};
use crate::packet::{self, Header, PacketRef, Protocol};
use crate::services::eventstream::EventDecoder;
use crate::services::exchange_server::ExchangeClient;
use crate::stream::{self, Connection, Segment, State, StreamError, StreamEvent};
use crate::time::Instant;

/// Connection identity (spec §8.1): local port, remote address (network included), remote
/// port, ordered so that all connections of a local port are adjacent.
pub(super) type ConnKey = (u16, Addr, u16);

/// Who listens on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    /// The application: accepted streams and datagrams are reported as events.
    App,
    /// Echo (port 7).
    Echo,
    /// Data exchange server (port 1001).
    Exchange,
    /// Event stream broker (port 1002).
    Broker,
    /// Trust handshake (port 444).
    Trust,
}

/// Who reads and writes a connection.
#[derive(Debug)]
pub(super) enum Owner {
    /// The application, through events and `read`/`write`.
    App,
    /// A connection accepted by a built-in service.
    Service(Listener),
    /// An inbound trust message being collected until the peer's FIN (spec §9.6).
    TrustIn(Vec<u8>),
    /// An outbound message (trust message or publish): write, close, ignore what comes back.
    SendAndClose,
    /// [`Node::send_message`]: a data exchange client awaiting its ACK.
    MessageClient(ExchangeClient),
    /// [`Node::subscribe`]: an event stream subscription.
    Subscriber(EventDecoder),
}

/// One stream connection and what the node keeps with it.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: Connection,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) owner: Owner,
    /// Bytes a service or client helper wrote that the stream has not taken yet.
    pub(super) outbox: Vec<u8>,
    /// Close the stream once the outbox is empty.
    pub(super) close_when_flushed: bool,
    /// The application closed or aborted it: unread data may be discarded.
    pub(super) app_done: bool,
    /// We answered the SYN (reported as `StreamAccepted`, not `StreamOpened`).
    pub(super) accepted: bool,
    /// The application has heard of this connection (dialled it, or saw it accepted): an
    /// accepted stream that dies in its handshake produces no events.
    pub(super) announced: bool,
}

impl Conn {
    fn key(&self) -> ConnKey {
        (self.local.port, self.remote.addr, self.remote.port)
    }
}

/// The stream segment carried by a Stream packet (spec §2.1, §8).
fn segment_of<'a>(packet: &PacketRef<'a>) -> Segment<&'a [u8]> {
    Segment {
        flags: packet.header.flags,
        seq: packet.header.seq,
        ack: packet.header.ack,
        window: packet.header.window,
        payload: packet.payload,
    }
}

impl<R: CryptoRngCore> Node<R> {
    /// spec §8.2 and §8.3: existing connection first, then SYN handling with its gates.
    pub(super) fn on_stream_packet(
        &mut self,
        now: Instant,
        packet: &PacketRef<'_>,
    ) -> Result<(), NodeError> {
        let h = packet.header;
        let segment = segment_of(packet);
        let key = (h.dst_port, h.src, h.src_port);
        if let Some(&id) = self.index.get(&key) {
            if let Some(conn) = self.conns.get_mut(&id) {
                // A duplicate SYN reaches its connection, which resends the SYN-ACK (§8.3).
                conn.stream.handle_segment(now, segment);
                self.dirty.insert(id);
            }
            return Ok(());
        }
        let flags = segment.flags;
        if !flags.contains(stream::Flags::SYN) || flags.contains(stream::Flags::ACK) {
            return Ok(());
        }

        // spec §6.8: the trust gate comes first, so an untrusted peer learns nothing, not
        // even which ports are closed (an RST for closed ports would map the open ones).
        if !self.admits(h.src.node, h.dst_port) {
            return Ok(()); // silent drop, no RST
        }
        let Some(&listener) = self.listeners.get(&h.dst_port) else {
            return self.send_rst(now, &h);
        };
        let on_port = self.connections_on_port(h.dst_port);
        let half_open = self
            .index
            .range(
                (h.dst_port, Addr::ZERO, 0)..=(h.dst_port, Addr::new(u16::MAX, u32::MAX), u16::MAX),
            )
            .filter(|(_, id)| {
                self.conns
                    .get(id)
                    .is_some_and(|c| c.stream.state() == State::SynReceived)
            })
            .count();
        if self.conns.len() >= self.config.max_connections
            || on_port >= self.config.max_connections_per_port
            || half_open >= self.config.accept_backlog
        {
            return self.send_rst(now, &h);
        }

        let stream = Connection::accept(now, self.config.stream.clone(), &segment);
        let owner = match listener {
            Listener::App => Owner::App,
            Listener::Trust => Owner::TrustIn(Vec::new()),
            service => Owner::Service(service),
        };
        let id = self.insert_conn(
            stream,
            SocketAddr::new(h.dst, h.dst_port),
            SocketAddr::new(h.src, h.src_port),
            owner,
        );
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.accepted = true;
            conn.announced = false;
        }
        // A service at its own connection cap refuses: RST, as for the node's limits.
        if self.open_service(id, listener).is_err() {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.stream.abort();
            }
        }
        self.dirty.insert(id);
        Ok(())
    }

    /// RST `{flags=RST, seq 0, ack 0}` for a SYN we refuse (spec §8.3, §8.9).
    fn send_rst(&mut self, now: Instant, syn: &Header) -> Result<(), NodeError> {
        let rst = Header {
            flags: packet::Flags::RST,
            protocol: Protocol::Stream,
            src: syn.dst,
            dst: syn.src,
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq: 0,
            ack: 0,
            window: 0,
        };
        self.send_packet(now, rst, &[])
    }

    fn connections_on_port(&self, port: u16) -> usize {
        self.index
            .range((port, Addr::ZERO, 0)..=(port, Addr::new(u16::MAX, u32::MAX), u16::MAX))
            .count()
    }

    fn insert_conn(
        &mut self,
        stream: Connection,
        local: SocketAddr,
        remote: SocketAddr,
        owner: Owner,
    ) -> ConnectionId {
        let id = ConnectionId(self.next_conn);
        self.next_conn = self.next_conn.wrapping_add(1);
        let conn = Conn {
            stream,
            local,
            remote,
            owner,
            outbox: Vec::new(),
            close_when_flushed: false,
            app_done: false,
            accepted: false,
            announced: true,
        };
        self.index.insert(conn.key(), id);
        self.conns.insert(id, conn);
        id
    }

    /// A free ephemeral port, round-robin from 49152 (spec §1.4): not bound by a listener
    /// and not the local port of any connection.
    pub(super) fn allocate_port(&mut self) -> Result<u16, NodeError> {
        let span = u32::from(u16::MAX - ports::EPHEMERAL_START) + 1;
        for _ in 0..span {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port == u16::MAX {
                ports::EPHEMERAL_START
            } else {
                port + 1
            };
            if !self.listeners.contains_key(&port) && self.connections_on_port(port) == 0 {
                return Ok(port);
            }
        }
        Err(NodeError::NoFreePort)
    }

    /// Opens a stream to `peer`:`port` from a fresh ephemeral port (spec §8.3). The SYN
    /// waits in the key-exchange queue if no session is up yet.
    pub fn dial(&mut self, now: Instant, peer: Addr, port: u16) -> Result<ConnectionId, NodeError> {
        let id = self.open(now, peer, port, Owner::App)?;
        self.drive(self.now);
        Ok(id)
    }

    /// [`dial`](Self::dial) without draining, for the node's own clients.
    pub(super) fn open(
        &mut self,
        now: Instant,
        peer: Addr,
        port: u16,
        owner: Owner,
    ) -> Result<ConnectionId, NodeError> {
        self.now = self.now.max(now);
        if port == 0 {
            return Err(NodeError::InvalidPort);
        }
        if peer.node == self.addr.node {
            return Err(NodeError::OwnAddress);
        }
        if self.kx.peer_path(peer.node).is_none() {
            return Err(NodeError::Kex(crate::keyexchange::KexError::NoPath));
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(NodeError::TooManyConnections);
        }
        let local_port = self.allocate_port()?;
        // spec §8.1: the dialer uses the destination's network in its own address.
        let local = SocketAddr::new(Addr::new(peer.network, self.addr.node), local_port);
        let stream = Connection::connect(self.now, self.config.stream.clone());
        let id = self.insert_conn(stream, local, SocketAddr::new(peer, port), owner);
        self.dirty.insert(id);
        Ok(id)
    }

    /// Accepts streams and datagrams on `port`.
    pub fn listen(&mut self, port: u16) -> Result<(), NodeError> {
        if port == 0 {
            return Err(NodeError::InvalidPort);
        }
        if self.listeners.contains_key(&port) {
            return Err(NodeError::PortInUse);
        }
        self.listeners.insert(port, Listener::App);
        Ok(())
    }

    /// Stops accepting on `port`; its open connections stay.
    pub fn unlisten(&mut self, port: u16) -> Result<(), NodeError> {
        match self.listeners.get(&port) {
            Some(Listener::App) => {
                self.listeners.remove(&port);
                Ok(())
            }
            _ => Err(NodeError::NotListening),
        }
    }

    fn app_conn(&mut self, id: ConnectionId) -> Result<&mut Conn, NodeError> {
        let conn = self
            .conns
            .get_mut(&id)
            .ok_or(NodeError::UnknownConnection)?;
        match conn.owner {
            Owner::App => Ok(conn),
            _ => Err(NodeError::NotApplicationConnection),
        }
    }

    /// Queues bytes on an application stream; returns how many were taken.
    /// [`StreamError::WouldBlock`] when the send buffer is full: wait for
    /// [`Event::StreamWritable`].
    pub fn write(
        &mut self,
        now: Instant,
        id: ConnectionId,
        bytes: &[u8],
    ) -> Result<usize, NodeError> {
        self.now = self.now.max(now);
        let written = self.app_conn(id)?.stream.write(bytes)?;
        self.dirty.insert(id);
        self.drive(self.now);
        Ok(written)
    }

    /// Reads received bytes of an application stream into `buf`. `Ok(0)` (for a non-empty
    /// `buf`) is end of stream; [`StreamError::WouldBlock`] means nothing yet.
    pub fn read(
        &mut self,
        now: Instant,
        id: ConnectionId,
        buf: &mut [u8],
    ) -> Result<usize, NodeError> {
        self.now = self.now.max(now);
        let result = self.app_conn(id)?.stream.read(buf);
        // Reading frees receive slots: the window update goes out from here.
        self.dirty.insert(id);
        self.drive(self.now);
        Ok(result?)
    }

    /// Closes an application stream gracefully: written data, then FIN (spec §8.9).
    pub fn close(&mut self, now: Instant, id: ConnectionId) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        let conn = self.app_conn(id)?;
        conn.stream.close();
        conn.app_done = true;
        self.dirty.insert(id);
        self.drive(self.now);
        Ok(())
    }

    /// Aborts an application stream with RST (spec §8.9).
    pub fn abort(&mut self, now: Instant, id: ConnectionId) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        let conn = self.app_conn(id)?;
        conn.stream.abort();
        conn.app_done = true;
        self.dirty.insert(id);
        self.drive(self.now);
        Ok(())
    }

    /// The state of a connection, while the node holds it.
    pub fn connection_state(&self, id: ConnectionId) -> Option<State> {
        self.conns.get(&id).map(|c| c.stream.state())
    }

    /// The peer of a connection, while the node holds it.
    pub fn connection_peer(&self, id: ConnectionId) -> Option<SocketAddr> {
        self.conns.get(&id).map(|c| c.remote)
    }

    /// Our end of a connection (our address and port), while the node holds it.
    pub fn connection_local(&self, id: ConnectionId) -> Option<SocketAddr> {
        self.conns.get(&id).map(|c| c.local)
    }

    /// Sender counters of a connection (retransmissions, timeouts), while the node holds it.
    pub fn connection_stats(&self, id: ConnectionId) -> Option<stream::Stats> {
        self.conns.get(&id).map(|c| c.stream.stats())
    }

    /// One connection's work: its events, its service, then its segments out.
    pub(super) fn service_connection(&mut self, now: Instant, id: ConnectionId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let mut events = Vec::new();
        while let Some(event) = conn.stream.poll_event() {
            events.push(event);
        }
        let is_app = matches!(conn.owner, Owner::App);
        if is_app {
            for event in events {
                self.report_app_event(id, event);
            }
        } else {
            self.pump_owner(now, id, &events);
        }
        self.transmit_segments(now, id);
        self.reap(id);
    }

    fn report_app_event(&mut self, id: ConnectionId, event: StreamEvent) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if event == StreamEvent::Connected {
            conn.announced = true;
        }
        if !conn.announced {
            return;
        }
        let event = match event {
            StreamEvent::Connected if conn.accepted => Event::StreamAccepted {
                conn: id,
                port: conn.local.port,
                peer: conn.remote.addr,
                peer_port: conn.remote.port,
            },
            StreamEvent::Connected => Event::StreamOpened(id),
            StreamEvent::Readable => Event::StreamReadable(id),
            StreamEvent::Writable => Event::StreamWritable(id),
            StreamEvent::PeerClosed => Event::StreamPeerClosed(id),
            StreamEvent::Reset => Event::StreamReset {
                conn: id,
                timed_out: false,
            },
            StreamEvent::TimedOut => Event::StreamReset {
                conn: id,
                timed_out: true,
            },
            StreamEvent::Closed => Event::StreamClosed(id),
        };
        self.push_event(event);
    }

    fn transmit_segments(&mut self, now: Instant, id: ConnectionId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let (local, remote) = (conn.local, conn.remote);
        let mut segments = Vec::new();
        while let Some(segment) = conn.stream.poll_transmit(now) {
            segments.push(segment);
        }
        for segment in segments {
            let header = Header {
                flags: packet::Flags::from_bits_truncate(segment.flags.bits()),
                protocol: Protocol::Stream,
                src: local.addr,
                dst: remote.addr,
                src_port: local.port,
                dst_port: remote.port,
                seq: segment.seq,
                ack: segment.ack,
                window: segment.window,
            };
            // A refused packet (pending queue full, key exchange in cooldown) is lost like
            // any other: the stream retransmits it or gives up by its own timers.
            if let Err(error) = self.send_packet(now, header, &segment.payload) {
                self.stats.segments_refused_out += 1;
                if let NodeError::Kex(kex) = error {
                    self.stats.last_refusal = Some(kex);
                }
            }
        }
    }

    /// Removes a closed connection once nothing of it is left to deliver.
    fn reap(&mut self, id: ConnectionId) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let unread = matches!(conn.owner, Owner::App)
            && conn.announced
            && !conn.app_done
            && conn.stream.readable_bytes() > 0;
        if !conn.stream.is_closed() || unread {
            return;
        }
        let key = conn.key();
        self.index.remove(&key);
        if let Some(conn) = self.conns.remove(&id) {
            self.close_service(id, &conn);
        }
    }

    /// Moves a connection's outbox into its stream; returns the bytes moved.
    pub(super) fn flush_outbox(&mut self, id: ConnectionId) -> usize {
        let Some(conn) = self.conns.get_mut(&id) else {
            return 0;
        };
        let mut moved = 0;
        if !conn.outbox.is_empty() {
            match conn.stream.write(&conn.outbox) {
                Ok(n) => {
                    conn.outbox.drain(..n.min(conn.outbox.len()));
                    moved = n;
                }
                Err(StreamError::WouldBlock) => {}
                Err(_) => conn.outbox.clear(),
            }
        }
        if conn.outbox.is_empty() && conn.close_when_flushed {
            conn.close_when_flushed = false;
            conn.stream.close();
        }
        moved
    }
}
