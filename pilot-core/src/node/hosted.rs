//! The built-in services on their ports (spec §10, §9.6) and the client helpers that ride
//! on streams: data exchange messages, event stream subscriptions and publishes, trust
//! messages.

use alloc::vec::Vec;

use rand_core::CryptoRngCore;

use super::streams::{Conn, Listener, Owner};
use super::{ConnectionId, Event, Node, NodeError, MAX_PARKED_TRUST_MESSAGES};
use crate::addr::{ports, Addr};
use crate::registry::PollHandshakesOk;
use crate::services::broker::{self, BrokerOutput};
use crate::services::dataexchange::Frame;
use crate::services::eventstream::EventDecoder;
use crate::services::exchange_server::{ExchangeClient, ExchangeOutput};
use crate::services::trust_service::{TrustAction, TrustServiceError};
use crate::services::ConnId;
use crate::stream::{StreamError, StreamEvent};
use crate::time::Instant;
use crate::trust::{TrustError, UnverifiedHandshake, MAX_MESSAGE_BYTES};

/// Largest chunk taken from a stream at once for a service.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// A service stops reading a connection while this much of its output waits for the
/// stream: the peer's window closes instead of our memory growing (backpressure).
const OUTBOX_PAUSE_BYTES: usize = 64 * 1024;

fn cid(id: ConnectionId) -> ConnId {
    ConnId(id.0)
}

impl<R: CryptoRngCore> Node<R> {
    /// Registers a freshly accepted connection with the service on its port.
    pub(super) fn open_service(
        &mut self,
        id: ConnectionId,
        listener: Listener,
    ) -> Result<(), NodeError> {
        let refused = match listener {
            Listener::Echo => self.echo.as_mut().map(|s| s.open(cid(id)).is_err()),
            Listener::Exchange => self.exchange.as_mut().map(|s| s.open(cid(id)).is_err()),
            Listener::Broker => self.broker.as_mut().map(|s| s.open(cid(id)).is_err()),
            Listener::App | Listener::Trust => Some(false),
        };
        match refused {
            Some(false) => Ok(()),
            Some(true) => Err(NodeError::TooManyConnections),
            None => Err(NodeError::ServiceDisabled),
        }
    }

    /// Forgets a removed connection at its service.
    pub(super) fn close_service(&mut self, id: ConnectionId, conn: &Conn) {
        match conn.owner {
            Owner::Service(Listener::Echo) => {
                if let Some(s) = self.echo.as_mut() {
                    s.close(cid(id));
                }
            }
            Owner::Service(Listener::Exchange) => {
                if let Some(s) = self.exchange.as_mut() {
                    // A stream cut inside a frame is the peer's business; nothing to answer.
                    let _ = s.close(cid(id));
                }
            }
            Owner::Service(Listener::Broker) => {
                if let Some(s) = self.broker.as_mut() {
                    s.close(cid(id));
                }
            }
            _ => {}
        }
    }

    /// Runs the node-owned side of a connection: outbox, reads, service, outbox again.
    pub(super) fn pump_owner(&mut self, now: Instant, id: ConnectionId, events: &[StreamEvent]) {
        let broken = events
            .iter()
            .any(|e| matches!(e, StreamEvent::Reset | StreamEvent::TimedOut));
        if broken {
            if let Some(Owner::MessageClient(client)) = self.conns.get(&id).map(|c| &c.owner) {
                if client.awaited_len() > 0 {
                    self.push_event(Event::Error(NodeError::Stream(StreamError::Reset)));
                }
            }
        }
        self.flush_and_account(id);
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let mut max = READ_CHUNK_BYTES;
            if let Owner::Service(Listener::Echo) = conn.owner {
                let unflushed = self
                    .echo
                    .as_ref()
                    .and_then(|s| s.unflushed_len(cid(id)))
                    .unwrap_or(0);
                let limit = self.config.echo.map_or(0, |c| c.max_unflushed_bytes);
                max = max.min(limit.saturating_sub(unflushed));
            }
            if conn.outbox.len() >= OUTBOX_PAUSE_BYTES || max == 0 {
                break;
            }
            match conn.stream.read_chunk(max) {
                Ok(Some(data)) => self.feed_owner(id, &data),
                Ok(None) => {
                    self.on_owner_eof(now, id);
                    break;
                }
                Err(_) => break,
            }
            self.flush_and_account(id);
        }
        self.flush_and_account(id);
    }

    fn flush_and_account(&mut self, id: ConnectionId) {
        let moved = self.flush_outbox(id);
        if moved == 0 {
            return;
        }
        match self.conns.get(&id).map(|c| &c.owner) {
            // `written` fails only for a connection the service does not know; this one it
            // opened, so there is nothing to handle.
            Some(Owner::Service(Listener::Echo)) => {
                if let Some(s) = self.echo.as_mut() {
                    let _ = s.written(cid(id), moved);
                }
            }
            Some(Owner::Service(Listener::Broker)) => {
                if let Some(s) = self.broker.as_mut() {
                    let _ = s.written(cid(id), moved);
                }
            }
            _ => {}
        }
    }

    fn feed_owner(&mut self, id: ConnectionId, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let from = conn.remote.addr;
        match &mut conn.owner {
            Owner::Service(Listener::Echo) => {
                let echoed = self.echo.as_mut().map(|s| s.receive(cid(id), data));
                match echoed {
                    Some(Ok(echoed)) if echoed.held_back.is_empty() => {
                        conn.outbox.extend_from_slice(echoed.write);
                    }
                    _ => conn.stream.abort(),
                }
            }
            Owner::Service(Listener::Exchange) => {
                let outputs = self.exchange.as_mut().map(|s| s.receive(cid(id), data));
                match outputs {
                    Some(Ok(outputs)) => self.apply_exchange(id, from, outputs),
                    _ => conn.stream.abort(),
                }
            }
            Owner::Service(Listener::Broker) => {
                let outputs = self.broker.as_mut().map(|s| s.receive(cid(id), data));
                match outputs {
                    Some(Ok(outputs)) => self.apply_broker(from, outputs),
                    _ => conn.stream.abort(),
                }
            }
            Owner::Service(Listener::App | Listener::Trust) | Owner::App => {}
            Owner::TrustIn(buf) => {
                if buf.len().saturating_add(data.len()) > MAX_MESSAGE_BYTES {
                    conn.stream.abort();
                } else {
                    buf.extend_from_slice(data);
                }
            }
            Owner::MessageClient(client) => match client.receive(data) {
                Ok(replies) => {
                    let done = client.awaited_len() == 0;
                    if done {
                        conn.stream.close();
                    }
                    for reply in replies {
                        self.push_event(Event::MessageAcked {
                            conn: id,
                            peer: from,
                            reply,
                        });
                    }
                }
                Err(error) => {
                    conn.stream.abort();
                    self.push_event(Event::Error(NodeError::Exchange(error)));
                }
            },
            Owner::Subscriber(decoder) => {
                decoder.feed(data);
                let mut received = Vec::new();
                let failure = loop {
                    match decoder.next_event() {
                        Ok(Some(event)) => received.push(Event::EventReceived {
                            conn: id,
                            topic: event.topic.to_vec(),
                            payload: event.payload.to_vec(),
                        }),
                        Ok(None) => break None,
                        Err(error) => break Some(error),
                    }
                };
                if let Some(error) = failure {
                    conn.stream.abort();
                    received.push(Event::Error(NodeError::EventStream(error)));
                }
                for event in received {
                    self.push_event(event);
                }
            }
            Owner::SendAndClose => {}
        }
    }

    fn apply_exchange(&mut self, id: ConnectionId, from: Addr, outputs: Vec<ExchangeOutput>) {
        for output in outputs {
            match output {
                ExchangeOutput::Write { bytes, .. } => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.outbox.extend_from_slice(&bytes);
                    }
                }
                ExchangeOutput::Received {
                    frame_type,
                    filename,
                    payload,
                    ..
                } => self.push_event(Event::MessageReceived {
                    from,
                    frame_type,
                    filename,
                    payload,
                }),
                ExchangeOutput::Close { .. } => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.close_when_flushed = true;
                    }
                }
            }
        }
    }

    fn apply_broker(&mut self, from: Addr, outputs: Vec<BrokerOutput>) {
        for output in outputs {
            match output {
                BrokerOutput::Subscribed { topic, .. } => {
                    self.push_event(Event::BrokerSubscribed { from, topic });
                }
                BrokerOutput::Write { conn, bytes } => {
                    let id = ConnectionId(conn.0);
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.outbox.extend_from_slice(&bytes);
                        self.dirty.insert(id);
                    }
                }
                BrokerOutput::Close { conn, .. } => {
                    let id = ConnectionId(conn.0);
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.outbox.clear();
                        conn.stream.close();
                        self.dirty.insert(id);
                    }
                }
            }
        }
    }

    /// The peer's FIN after all its data: act on what the connection collected.
    fn on_owner_eof(&mut self, now: Instant, id: ConnectionId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let from = conn.remote.addr;
        let message = match &mut conn.owner {
            Owner::TrustIn(buf) => Some(core::mem::take(buf)),
            Owner::MessageClient(client) if client.awaited_len() > 0 => {
                self.push_event(Event::Error(NodeError::Stream(StreamError::Closed)));
                None
            }
            _ => None,
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.stream.close();
        }
        if let Some(message) = message {
            self.on_trust_message(now, from, &message);
        }
    }

    /// A complete message received on port 444 (spec §9.6).
    fn on_trust_message(&mut self, now: Instant, from: Addr, bytes: &[u8]) {
        let unix = self.unix_secs(now);
        let Some(trust) = self.trust.as_ref() else {
            return;
        };
        let unverified = match trust.precheck(bytes, unix) {
            Ok(unverified) => unverified,
            Err(error) => return self.push_event(Event::Error(NodeError::Trust(error))),
        };
        // The stream's sender is authenticated by the tunnel; the message must agree.
        if unverified.node_id() != from.node {
            return self.push_event(Event::Error(NodeError::TrustSenderMismatch {
                stream: from.node,
                message: unverified.node_id(),
            }));
        }
        if let Some(key) = self.peer_keys.get(&from.node).copied() {
            return self.handle_trust(now, unverified, &key);
        }
        if self.parked_trust.len() >= MAX_PARKED_TRUST_MESSAGES {
            return self.push_event(Event::Error(NodeError::TooManyParkedTrustMessages));
        }
        self.parked_trust.push((unverified, unix));
        self.push_event(Event::NeedPeerKey { node: from.node });
    }

    fn handle_trust(&mut self, now: Instant, unverified: UnverifiedHandshake, key: &[u8; 32]) {
        let unix = self.unix_secs(now);
        let Some(trust) = self.trust.as_mut() else {
            return;
        };
        match trust.handle(unverified, key, unix) {
            Ok(actions) => self.apply_trust_actions(now, actions),
            Err(error) => self.push_event(Event::Error(NodeError::Trust(error))),
        }
    }

    /// The registry answered for `node`: handle the trust messages that waited for it.
    pub(super) fn resume_parked_trust(&mut self, now: Instant, node: u32, key: Option<[u8; 32]>) {
        let (ready, waiting): (Vec<_>, Vec<_>) = core::mem::take(&mut self.parked_trust)
            .into_iter()
            .partition(|(message, _)| message.node_id() == node);
        self.parked_trust = waiting;
        for (message, _) in ready {
            match key {
                Some(key) => self.handle_trust(now, message, &key),
                None => self.push_event(Event::Error(NodeError::Trust(
                    TrustServiceError::Message(TrustError::UnknownNode),
                ))),
            }
        }
    }

    fn apply_trust_actions(&mut self, now: Instant, actions: Vec<TrustAction>) {
        for action in actions {
            match action {
                TrustAction::SendTo { node, port, bytes } => {
                    let peer = Addr::new(self.addr.network, node);
                    if let Err(error) = self.send_and_close(now, peer, port, bytes) {
                        self.push_event(Event::Error(error));
                    }
                }
                TrustAction::Registry(request) => self.push_event(Event::RegistryRequest(request)),
                TrustAction::Event(event) => self.push_event(Event::Trust(event)),
            }
        }
    }

    /// Opens a stream, writes `bytes`, closes it; whatever comes back is ignored.
    fn send_and_close(
        &mut self,
        now: Instant,
        peer: Addr,
        port: u16,
        bytes: Vec<u8>,
    ) -> Result<ConnectionId, NodeError> {
        let id = self.open(now, peer, port, Owner::SendAndClose)?;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.outbox = bytes;
            conn.close_when_flushed = true;
        }
        Ok(id)
    }

    fn with_trust(
        &mut self,
        now: Instant,
        act: impl FnOnce(
            &mut crate::services::trust_service::TrustService,
            u64,
        ) -> Result<Vec<TrustAction>, TrustServiceError>,
    ) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        let unix = self.unix_secs(self.now);
        let trust = self.trust.as_mut().ok_or(NodeError::ServiceDisabled)?;
        let actions = act(trust, unix)?;
        self.apply_trust_actions(self.now, actions);
        self.drive(self.now);
        Ok(())
    }

    /// Asks `node` for trust with a signed message to its port 444 (spec §9.6).
    pub fn trust_request(
        &mut self,
        now: Instant,
        node: u32,
        justification: &str,
    ) -> Result<(), NodeError> {
        self.with_trust(now, |t, unix| t.request(node, justification, unix))
    }

    /// Asks `node` for trust through the registry inbox (`request_handshake`, spec §9.6), for
    /// a peer that cannot be dialled. The signed request comes out as
    /// [`Event::RegistryRequest`]; the answer arrives with a later [`trust_inbox`].
    ///
    /// [`trust_inbox`]: Self::trust_inbox
    pub fn trust_request_relayed(
        &mut self,
        now: Instant,
        node: u32,
        justification: &str,
    ) -> Result<(), NodeError> {
        self.with_trust(now, |t, unix| t.request_relayed(node, justification, unix))
    }

    /// The signed `poll_handshakes` request that fetches our registry inbox (spec §9.6); hand
    /// its answer to [`trust_inbox`](Self::trust_inbox). `None` with the trust service off.
    pub fn trust_poll_request(&self) -> Option<crate::registry::Request> {
        self.trust.as_ref().map(|t| t.poll_request())
    }

    /// Approves `node`'s pending trust request.
    pub fn trust_approve(&mut self, now: Instant, node: u32) -> Result<(), NodeError> {
        self.with_trust(now, |t, unix| t.approve(node, unix))
    }

    /// Declines `node`'s pending trust request.
    pub fn trust_reject(&mut self, now: Instant, node: u32, reason: &str) -> Result<(), NodeError> {
        self.with_trust(now, |t, unix| t.reject(node, reason, unix))
    }

    /// Withdraws trust in `node`.
    pub fn trust_revoke(&mut self, now: Instant, node: u32, reason: &str) -> Result<(), NodeError> {
        self.with_trust(now, |t, unix| t.revoke(node, reason, unix))
    }

    /// Trusts `node` again from the driver's saved trust store (after a restart): no
    /// messages, no events. [`NodeError::ServiceDisabled`] with the trust service off.
    pub fn restore_trusted(
        &mut self,
        node: u32,
        peer: crate::services::trust_service::TrustedPeer,
    ) -> Result<(), NodeError> {
        let trust = self.trust.as_mut().ok_or(NodeError::ServiceDisabled)?;
        Ok(trust.restore_trusted(node, peer)?)
    }

    /// Applies the registry's answer to the trust service's `poll_handshakes` request.
    pub fn trust_inbox(&mut self, now: Instant, inbox: &PollHandshakesOk) -> Result<(), NodeError> {
        self.with_trust(now, |t, unix| Ok(t.on_poll(inbox, unix)))
    }

    /// Sends one data exchange frame to `peer`'s port 1001 on a new stream (spec §10.3).
    /// The server's answer arrives as [`Event::MessageAcked`]; the stream then closes.
    pub fn send_message(
        &mut self,
        now: Instant,
        peer: Addr,
        frame: &Frame<'_>,
    ) -> Result<ConnectionId, NodeError> {
        let mut client = ExchangeClient::new();
        let bytes = client.send(frame).map_err(NodeError::Exchange)?;
        let id = self.open(
            now,
            peer,
            ports::DATA_EXCHANGE,
            Owner::MessageClient(client),
        )?;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.outbox = bytes;
        }
        self.drive(self.now);
        Ok(id)
    }

    /// Subscribes to `topic` (`*` for all) at `peer`'s broker on port 1002 (spec §10.4).
    /// Events arrive as [`Event::EventReceived`] carrying the returned ID; close it with
    /// [`close`](Self::close).
    pub fn subscribe(
        &mut self,
        now: Instant,
        peer: Addr,
        topic: &[u8],
    ) -> Result<ConnectionId, NodeError> {
        let bytes = broker::subscribe(topic).map_err(NodeError::EventStream)?;
        let owner = Owner::Subscriber(EventDecoder::default());
        let id = self.open(now, peer, ports::EVENT_STREAM, owner)?;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.outbox = bytes;
        }
        self.drive(self.now);
        Ok(id)
    }

    /// Publishes one event at `peer`'s broker on a stream of its own: the subscription the
    /// protocol requires first (spec §10.4), the event, then FIN.
    pub fn publish(
        &mut self,
        now: Instant,
        peer: Addr,
        topic: &[u8],
        payload: &[u8],
    ) -> Result<ConnectionId, NodeError> {
        let mut bytes = broker::subscribe(topic).map_err(NodeError::EventStream)?;
        bytes.extend(broker::publish(topic, payload).map_err(NodeError::EventStream)?);
        let id = self.send_and_close(now, peer, ports::EVENT_STREAM, bytes)?;
        self.drive(self.now);
        Ok(id)
    }

    /// Publishes on an existing subscription (the broker never sends it back to us).
    pub fn publish_on(
        &mut self,
        now: Instant,
        id: ConnectionId,
        topic: &[u8],
        payload: &[u8],
    ) -> Result<(), NodeError> {
        self.now = self.now.max(now);
        let bytes = broker::publish(topic, payload).map_err(NodeError::EventStream)?;
        let conn = self
            .conns
            .get_mut(&id)
            .ok_or(NodeError::UnknownConnection)?;
        if !matches!(conn.owner, Owner::Subscriber(_)) {
            return Err(NodeError::NotApplicationConnection);
        }
        if conn.outbox.len() >= OUTBOX_PAUSE_BYTES {
            return Err(NodeError::Stream(StreamError::WouldBlock));
        }
        conn.outbox.extend(bytes);
        self.dirty.insert(id);
        self.drive(self.now);
        Ok(())
    }
}
