//! The node driver: pilot-core's [`Node`] plus everything around it that the API waits on.
//!
//! One mutation, then drain (pilot-core's loop): every input (a frame from the transport,
//! a registry answer, an API command, a timer tick) goes through [`Shared::with_node`],
//! which applies it and then [`drain`](Shared::drain)s the outputs: transmits go to the
//! transport, events are recorded in [`Inner`], the next deadline re-arms the timer, and
//! [`Notify`] wakes every API call waiting on the state to check again.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures_util::future::{select, Either};
use pilot_core::addr::Addr;
use pilot_core::crypto::Identity;
use pilot_core::keyexchange::PathId;
use pilot_core::node::{ConnectionId, Event, Input, Node, NodeError, Output};
use pilot_core::registry::{Endpoint, Lookup, PublicKey, Request, Resolve, Response};
use pilot_core::services::exchange_server::ExchangeReply;
use pilot_core::services::trust_service::TrustEvent;
use pilot_core::stream::StreamError;
use pilot_core::time::Instant;
use rand_core::OsRng;
use tracing::{debug, info, warn};
use worker::{Date, Delay, State};

use crate::api::{ApiError, ErrorCode};
use crate::backoff::Backoff;
use crate::notify::Notify;
use crate::registry_pipe::RegistryPipe;
use crate::transport::{Transport, TransportSink};

use super::config::{Config, TRANSPORT_TCP};

/// Accepted streams per listened port that wait for `/v1/accept`; more are reset.
pub const MAX_ACCEPTED_PER_PORT: usize = 64;
/// Datagrams per listened port that wait for `/v1/recv-from`; more drop the oldest.
pub const MAX_DATAGRAMS_PER_PORT: usize = 256;
/// Events per subscription that wait for `/next`; more drop the oldest.
pub const MAX_EVENTS_PER_SUBSCRIPTION: usize = 256;
/// Pings in flight at once.
pub const MAX_PINGS_IN_FLIGHT: usize = 1024;
/// Registry requests of the engine (key lookups, trust reports) waiting to be sent.
pub const MAX_REGISTRY_WORK: usize = 256;
/// After this many ticks without time passing, the timer yields 1 ms (the Workers clock
/// only moves across I/O, so a deadline inside the current millisecond needs a real wait).
const IMMEDIATE_TICKS_BEFORE_YIELD: u32 = 4;
/// Checks a waiter repeats at once while its own actions keep producing output.
const MAX_IMMEDIATE_RECHECKS: u32 = 8;

/// Milliseconds of the Workers clock (Unix time; it advances across I/O, not during CPU).
pub fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// Where an API wait stands on one connection.
#[derive(Debug, Default)]
pub struct ConnWatch {
    /// The peer node, for failing waits when it turns unreachable.
    pub peer_node: u32,
    /// The stream handshake completed.
    pub opened: bool,
    /// Reset, timed out or unreachable: why.
    pub failed: Option<String>,
}

/// A stream accepted on a listened port, waiting for `/v1/accept`.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// The connection.
    pub conn: ConnectionId,
    /// The peer.
    pub peer: Addr,
    /// The peer's port.
    pub peer_port: u16,
}

/// A datagram received on a listened port.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// The sender.
    pub from: Addr,
    /// Its port.
    pub src_port: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What arrived for one listened port.
#[derive(Debug, Default)]
pub struct PortQueues {
    /// Streams accepted, oldest first.
    pub accepted: VecDeque<Accepted>,
    /// Datagrams, oldest first.
    pub datagrams: VecDeque<Datagram>,
}

/// One event of a subscription: topic and payload.
pub type TopicEvent = (Vec<u8>, Vec<u8>);

/// A registry request the engine asked for.
#[derive(Debug)]
enum RegistryWork {
    Lookup(u32),
    Forward(Box<Request>),
}

/// Mutable state of the Durable Object. Borrowed only between awaits.
#[derive(Default)]
pub struct Inner {
    pub identity: Option<Rc<Identity>>,
    pub node: Option<Node<OsRng>>,
    /// `now_ms()` at the node's `Instant::ZERO`.
    pub origin_ms: u64,
    pub transport: Option<Rc<dyn Transport>>,
    /// Sessions are numbered so a late close of an old one is ignored.
    pub session: u64,
    pub registered: bool,
    pub starting: bool,
    pub reconnecting: bool,
    pub last_error: Option<String>,
    pub backoff: Backoff,
    pub hostname: String,
    paths: BTreeMap<PathId, SocketAddr>,
    path_of: BTreeMap<SocketAddr, PathId>,
    next_path: u64,
    /// Nodes whose registry address was handed to the engine.
    resolved: BTreeSet<u32>,
    /// How often each node was reported unreachable: waits compare before and after.
    pub unreachable: BTreeMap<u32, u64>,
    pub next_ping: u64,
    /// Pings in flight by payload: sent at (ms), answered after (ms).
    pub pings: BTreeMap<Vec<u8>, (u64, Option<u64>)>,
    pub conns: BTreeMap<ConnectionId, ConnWatch>,
    /// Data exchange messages in flight: their answer line once it came.
    pub messages: BTreeMap<ConnectionId, Option<Result<String, String>>>,
    pub ports: BTreeMap<u16, PortQueues>,
    pub subscriptions: BTreeMap<ConnectionId, VecDeque<TopicEvent>>,
    registry_work: VecDeque<RegistryWork>,
    registry_busy: bool,
    deadline: Option<Instant>,
    pub dropped: u64,
    /// Keys learned from the registry, persisted as the peer key cache.
    pub peer_keys: BTreeMap<u32, [u8; 32]>,
    pub persist_pending: bool,
}

impl Inner {
    /// The engine's clock now.
    pub fn now(&self) -> Instant {
        Instant::from_micros(now_ms().saturating_sub(self.origin_ms).saturating_mul(1000))
    }

    fn path_for(&mut self, addr: SocketAddr) -> PathId {
        if let Some(path) = self.path_of.get(&addr) {
            return *path;
        }
        self.next_path += 1;
        let path = PathId(self.next_path);
        self.paths.insert(path, addr);
        self.path_of.insert(addr, path);
        path
    }

    /// The node, or `not_ready` before the first registration.
    pub fn node_mut(&mut self) -> Result<(&mut Node<OsRng>, Instant), ApiError> {
        let now = self.now();
        match self.node.as_mut() {
            Some(node) => Ok((node, now)),
            None => Err(ApiError::new(
                ErrorCode::NotReady,
                "the node has not registered yet",
            )),
        }
    }
}

/// The Durable Object's state shared by its requests and background tasks.
pub struct Shared {
    pub state: State,
    pub config: Config,
    pub notify: Notify,
    pub inner: RefCell<Inner>,
    pub registry: Rc<RegistryPipe>,
    pub me: Weak<Shared>,
}

/// The transport's reports, routed into the driver.
pub struct Sink(pub Weak<Shared>);

impl TransportSink for Sink {
    fn on_frame(&self, from: SocketAddr, frame: Vec<u8>) {
        if let Some(shared) = self.0.upgrade() {
            shared.on_frame(from, frame);
        }
    }

    fn on_closed(&self, session: u64, reason: String) {
        if let Some(shared) = self.0.upgrade() {
            shared.on_transport_closed(session, reason);
        }
    }

    fn on_link_closed(&self, peer: SocketAddr) {
        if let Some(shared) = self.0.upgrade() {
            shared.on_link_closed(peer);
        }
    }
}

impl Shared {
    /// Applies one mutation to the node, then drains it.
    pub fn with_node<T>(
        &self,
        act: impl FnOnce(&mut Node<OsRng>, Instant) -> Result<T, NodeError>,
    ) -> Result<T, ApiError> {
        let result = {
            let mut inner = self.inner.borrow_mut();
            let (node, now) = inner.node_mut()?;
            act(node, now)
        };
        self.drain();
        result.map_err(node_error)
    }

    fn on_frame(&self, from: SocketAddr, bytes: Vec<u8>) {
        {
            let mut inner = self.inner.borrow_mut();
            let path = inner.path_for(from);
            let Ok((node, now)) = inner.node_mut() else {
                return;
            };
            let input = Input::Frame {
                path,
                bytes,
                relay_sender: None,
            };
            if let Err(err) = node.handle_input(now, input) {
                debug!(%from, %err, "frame dropped");
            }
        }
        self.drain();
    }

    fn on_transport_closed(&self, session: u64, reason: String) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.session != session {
                return;
            }
            inner.transport = None;
            inner.registered = false;
            inner.last_error = Some(reason);
        }
        self.notify.notify();
        if let Some(me) = self.me.upgrade() {
            super::spawn_reconnect(me);
        }
    }

    /// A direct TCP connection ended: its path is forgotten, and the nodes reached on it
    /// are resolved again on their next use (which opens a new connection and path).
    fn on_link_closed(&self, peer: SocketAddr) {
        {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let Some(path) = inner.path_of.remove(&peer) else {
                return;
            };
            inner.paths.remove(&path);
            if let Some(node) = inner.node.as_ref() {
                inner.resolved.retain(|n| node.peer_path(*n) != Some(path));
            }
            debug!(%peer, ?path, "path forgotten");
        }
        self.notify.notify();
    }

    fn tick(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            let Ok((node, now)) = inner.node_mut() else {
                return;
            };
            if let Err(err) = node.handle_input(now, Input::Tick) {
                debug!(%err, "tick");
            }
        }
        self.drain();
    }

    /// Drains the node: transmits out, events recorded, timer re-armed. Wakes the waiters
    /// and returns `true` if anything came out or the deadline moved (waking them for
    /// nothing would make two waiters wake each other forever).
    pub fn drain(&self) -> bool {
        let (spawn_registry, changed) = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let before = inner.deadline;
            let mut produced = false;
            loop {
                let Some(node) = inner.node.as_mut() else {
                    return false;
                };
                let mut events = Vec::new();
                loop {
                    match node.poll_output() {
                        Some(Output::Transmit { path, bytes }) => {
                            produced = true;
                            transmit(&inner.paths, inner.transport.as_deref(), path, &bytes);
                        }
                        Some(Output::Event(event)) => events.push(event),
                        Some(Output::Timeout(at)) => {
                            inner.deadline = Some(at);
                            break;
                        }
                        None => {
                            inner.deadline = None;
                            break;
                        }
                    }
                }
                if events.is_empty() {
                    break;
                }
                produced = true;
                for event in events {
                    on_event(inner, event);
                }
            }
            settle_messages(inner);
            let spawn = !inner.registry_work.is_empty() && !inner.registry_busy;
            if spawn {
                inner.registry_busy = true;
            }
            (spawn, produced || inner.deadline != before)
        };
        if spawn_registry {
            if let Some(me) = self.me.upgrade() {
                wasm_bindgen_futures::spawn_local(registry_worker(me));
            }
        }
        if changed {
            self.notify.notify();
        }
        changed
    }

    /// Resolves `node` in the registry (signed, spec §9.4) and gives its address to the
    /// engine, which starts the key exchange there.
    pub async fn ensure_path(&self, node: u32) -> Result<(), ApiError> {
        let (request, known) = {
            let inner = self.inner.borrow();
            let identity = inner.identity.clone().ok_or_else(not_registered)?;
            let ours = inner.node.as_ref().ok_or_else(not_registered)?.addr().node;
            if ours == node {
                return Err(ApiError::bad_request("that address is this node"));
            }
            (
                Resolve::signed(ours, node, &identity),
                inner.resolved.contains(&node),
            )
        };
        if known {
            return Ok(());
        }
        let ok =
            match self.registry.call(&Request::Resolve(request)).await {
                Ok(Response::ResolveOk(ok)) => ok,
                Ok(Response::Error { error }) => return Err(ApiError::new(
                    ErrorCode::PeerUnreachable,
                    format!("registry cannot resolve node {node}: {error}"),
                )
                .with_hint(
                    "check the address; a private peer must trust us first (POST /v1/handshake)",
                )),
                Ok(other) => return Err(unexpected(&other)),
                Err(err) => return Err(ApiError::new(ErrorCode::RegistryError, err.to_string())),
            };
        let addr = if self.config.transport == TRANSPORT_TCP {
            tcp_endpoint(node, &ok.endpoints)?
        } else {
            ok.real_addr.parse().map_err(|_| {
                ApiError::new(
                    ErrorCode::PeerUnreachable,
                    format!(
                        "registry has no usable endpoint for node {node} ({:?})",
                        ok.real_addr
                    ),
                )
            })?
        };
        let PublicKey(key) = ok.public_key;
        {
            let mut inner = self.inner.borrow_mut();
            remember_key(&mut inner, node, key);
            let path = inner.path_for(addr);
            let (engine, now) = inner.node_mut()?;
            // The resolve answer carries the key too: spare the engine a lookup.
            let _ = engine.handle_input(
                now,
                Input::PeerKey {
                    node,
                    key: Some(key),
                },
            );
            engine.add_peer_path(now, node, path).map_err(node_error)?;
            inner.resolved.insert(node);
        }
        debug!(node, %addr, "resolved");
        self.drain();
        Ok(())
    }

    /// A peer that stopped answering may have restarted elsewhere (a new UDP endpoint, new keys):
    /// a tunnel session that still exists never notices, because only a failed key exchange
    /// reports a peer unreachable. Forgetting the resolution makes the next call ask the
    /// registry again and point the session at the current endpoint (spec §6.2: the PILA sent
    /// there lets a restarted peer key us again).
    pub fn forget_endpoint(&self, node: u32) {
        if self.inner.borrow_mut().resolved.remove(&node) {
            debug!(node, "no answer: the next call resolves the peer again");
        }
    }

    /// Waits until `check` gives an answer, or `timeout` passes. `check` may act on the
    /// node (a read, a write); whatever that produces is drained before the next wait.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&mut Inner) -> Option<Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = now_ms().saturating_add(timeout_ms);
        let mut rechecks = 0u32;
        loop {
            let answer = check(&mut self.inner.borrow_mut());
            let changed_now = self.drain();
            if let Some(answer) = answer {
                return answer;
            }
            // The drain may have recorded what we wait for: look again before sleeping.
            if changed_now && rechecks < MAX_IMMEDIATE_RECHECKS {
                rechecks += 1;
                continue;
            }
            rechecks = 0;
            let left = deadline.saturating_sub(now_ms());
            if left == 0 {
                return Err(ApiError::new(
                    ErrorCode::Timeout,
                    format!("{what} did not complete within {timeout_ms} ms"),
                ));
            }
            let changed = core::pin::pin!(self.notify.changed());
            let sleep = core::pin::pin!(Delay::from(Duration::from_millis(left)));
            // Either way the loop checks again; past the deadline it then times out.
            let _ = select(changed, sleep).await;
        }
    }

    /// Runs the engine's timer: one `setTimeout` at the node's next deadline, re-armed
    /// whenever the engine changes.
    pub async fn run_timer(self: Rc<Self>) {
        let mut immediate = 0u32;
        loop {
            let changed = self.notify.changed();
            let wait = {
                let inner = self.inner.borrow();
                let now = inner.now();
                inner
                    .deadline
                    .map(|at| at.as_micros().saturating_sub(now.as_micros()))
            };
            match wait {
                Some(0) if immediate < IMMEDIATE_TICKS_BEFORE_YIELD => {
                    immediate += 1;
                    self.tick();
                }
                Some(micros) => {
                    immediate = 0;
                    let millis = micros.div_ceil(1000).max(1);
                    let sleep = core::pin::pin!(Delay::from(Duration::from_millis(millis)));
                    if let Either::Right(_) = select(core::pin::pin!(changed), sleep).await {
                        self.tick();
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The peer's advertised `tcp` endpoint (spec §7.5), as `connect()` will dial it.
fn tcp_endpoint(node: u32, endpoints: &[Endpoint]) -> Result<SocketAddr, ApiError> {
    let Some(endpoint) = endpoints.iter().find(|e| e.network == TRANSPORT_TCP) else {
        return Err(ApiError::new(
            ErrorCode::PeerUnreachable,
            format!("node {node} advertises no tcp endpoint"),
        )
        .with_hint(
            "PILOT_TRANSPORT=tcp reaches only peers that listen on TCP (pilot-peer --tcp-listen); \
             use PILOT_TRANSPORT=relay for UDP-only peers",
        ));
    };
    endpoint.addr.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::PeerUnreachable,
            format!(
                "node {node} advertises tcp endpoint {:?}, not an ip:port",
                endpoint.addr
            ),
        )
    })
}

fn transmit(
    paths: &BTreeMap<PathId, SocketAddr>,
    transport: Option<&dyn Transport>,
    path: PathId,
    bytes: &[u8],
) {
    let Some(to) = paths.get(&path) else {
        return warn!(?path, "transmit on an unknown path");
    };
    match transport {
        // UDP semantics: the engine retransmits what matters.
        Some(transport) => {
            if let Err(err) = transport.send(*to, bytes) {
                debug!(%to, %err, "frame not sent");
            }
        }
        None => debug!(%to, "transport down; frame not sent"),
    }
}

fn on_event(inner: &mut Inner, event: Event) {
    match event {
        Event::NeedPeerKey { node } => queue_registry(inner, RegistryWork::Lookup(node)),
        Event::RegistryRequest(request) => queue_registry(inner, RegistryWork::Forward(request)),
        Event::Pong { payload, .. } => {
            let now = now_ms();
            if let Some((sent, rtt)) = inner.pings.get_mut(&payload) {
                *rtt = Some(now.saturating_sub(*sent));
            }
        }
        Event::StreamOpened(conn) => {
            if let Some(watch) = inner.conns.get_mut(&conn) {
                watch.opened = true;
            }
        }
        Event::StreamAccepted {
            conn,
            port,
            peer,
            peer_port,
        } => on_accepted(inner, conn, port, peer, peer_port),
        Event::StreamReset { conn, timed_out } => {
            let why = if timed_out {
                "the stream timed out"
            } else {
                "the peer reset the stream"
            };
            fail_conn(inner, conn, why);
        }
        Event::StreamClosed(conn) => {
            if let Some(slot @ None) = inner.messages.get_mut(&conn) {
                *slot = Some(Err("stream closed before the answer".into()));
            }
            fail_conn(inner, conn, "the stream is closed");
            forget_closed_conns(inner);
        }
        Event::Datagram {
            from,
            src_port,
            dst_port,
            payload,
        } => {
            let queue = &mut inner.ports.entry(dst_port).or_default().datagrams;
            if queue.len() >= MAX_DATAGRAMS_PER_PORT {
                queue.pop_front();
                inner.dropped += 1;
            }
            queue.push_back(Datagram {
                from,
                src_port,
                payload,
            });
        }
        Event::MessageAcked { conn, peer, reply } => {
            let line = ack_line(&reply);
            info!(%peer, ack = %line, "message acknowledged");
            if let Some(slot) = inner.messages.get_mut(&conn) {
                *slot = Some(Ok(line));
            }
        }
        Event::MessageReceived {
            from,
            frame_type,
            filename,
            payload,
        } => {
            // Contents are not logged (never plaintext in logs).
            info!(%from, %frame_type, ?filename, bytes = payload.len(), "message received");
        }
        Event::EventReceived {
            conn,
            topic,
            payload,
        } => {
            if let Some(queue) = inner.subscriptions.get_mut(&conn) {
                if queue.len() >= MAX_EVENTS_PER_SUBSCRIPTION {
                    queue.pop_front();
                    inner.dropped += 1;
                }
                queue.push_back((topic, payload));
            }
        }
        Event::PeerUnreachable { node } => {
            warn!(node, "peer unreachable");
            *inner.unreachable.entry(node).or_default() += 1;
            // A later call resolves the node again (it may have moved).
            inner.resolved.remove(&node);
            let failed: Vec<ConnectionId> = inner
                .conns
                .iter()
                .filter(|(_, w)| w.peer_node == node && !w.opened)
                .map(|(c, _)| *c)
                .collect();
            for conn in failed {
                fail_conn(inner, conn, "the peer did not answer the key exchange");
            }
        }
        Event::PeerSessionUp { node, rekey } => info!(node, rekey, "tunnel session up"),
        Event::PeerSessionDown { node } => info!(node, "tunnel session down"),
        Event::Trust(event) => {
            match &event {
                TrustEvent::RequestPending { node, .. } => info!(node, "trust requested"),
                TrustEvent::Trusted { node } => info!(node, "trusted"),
                TrustEvent::Rejected { node, .. } => info!(node, "trust rejected"),
                TrustEvent::Revoked { node, .. } => info!(node, "trust revoked"),
            }
            inner.persist_pending = true;
        }
        Event::Error(err) => warn!(%err, "node error"),
        Event::StreamReadable(_)
        | Event::StreamWritable(_)
        | Event::StreamPeerClosed(_)
        | Event::BrokerSubscribed { .. } => {}
    }
}

fn on_accepted(inner: &mut Inner, conn: ConnectionId, port: u16, peer: Addr, peer_port: u16) {
    let queue = &mut inner.ports.entry(port).or_default().accepted;
    if queue.len() >= MAX_ACCEPTED_PER_PORT {
        warn!(port, %peer, "accept queue full; stream reset");
        if let Some(node) = inner.node.as_mut() {
            let now = Instant::from_micros(
                now_ms()
                    .saturating_sub(inner.origin_ms)
                    .saturating_mul(1000),
            );
            let _ = node.abort(now, conn);
        }
        inner.dropped += 1;
        return;
    }
    queue.push_back(Accepted {
        conn,
        peer,
        peer_port,
    });
    inner.conns.insert(
        conn,
        ConnWatch {
            peer_node: peer.node,
            opened: true,
            failed: None,
        },
    );
}

/// Closed connections stay known (so a late read says `connection_closed`, not
/// `unknown_connection`) until this many watches exist; then the oldest closed ones go.
const MAX_CONN_WATCHES: usize = 8192;

fn forget_closed_conns(inner: &mut Inner) {
    if inner.conns.len() <= MAX_CONN_WATCHES {
        return;
    }
    let excess = inner.conns.len() - MAX_CONN_WATCHES;
    let closed: Vec<ConnectionId> = inner
        .conns
        .iter()
        .filter(|(_, w)| w.failed.is_some())
        .map(|(c, _)| *c)
        .take(excess)
        .collect();
    for conn in closed {
        inner.conns.remove(&conn);
    }
}

fn fail_conn(inner: &mut Inner, conn: ConnectionId, why: &str) {
    if let Some(watch) = inner.conns.get_mut(&conn) {
        watch.failed.get_or_insert_with(|| why.to_string());
    }
    if let Some(slot @ None) = inner.messages.get_mut(&conn) {
        *slot = Some(Err(why.to_string()));
    }
}

/// Node-owned streams (data exchange clients) report no close events: a message whose
/// connection the node dropped without an answer has failed (after the full drain, so an
/// answer that came with the close was recorded first).
fn settle_messages(inner: &mut Inner) {
    let Some(node) = inner.node.as_ref() else {
        return;
    };
    for (conn, slot) in inner.messages.iter_mut() {
        if slot.is_none() && node.connection_state(*conn).is_none() {
            *slot = Some(Err("the stream ended without an answer".into()));
        }
    }
}

fn queue_registry(inner: &mut Inner, work: RegistryWork) {
    if inner.registry_work.len() >= MAX_REGISTRY_WORK {
        warn!(?work, "registry queue full; request dropped");
        return;
    }
    inner.registry_work.push_back(work);
}

fn remember_key(inner: &mut Inner, node: u32, key: [u8; 32]) {
    if inner.peer_keys.get(&node) != Some(&key)
        && inner.peer_keys.len() < pilot_core::node::MAX_CACHED_PEER_KEYS
    {
        inner.peer_keys.insert(node, key);
        inner.persist_pending = true;
    }
}

/// Sends the engine's registry requests one after another and feeds the answers back.
async fn registry_worker(shared: Rc<Shared>) {
    loop {
        let work = shared.inner.borrow_mut().registry_work.pop_front();
        let Some(work) = work else {
            break;
        };
        match work {
            RegistryWork::Lookup(node) => {
                let request = Request::Lookup(Lookup { node_id: node });
                let key = match shared.registry.call(&request).await {
                    Ok(Response::LookupOk(ok)) => Some(ok.public_key.0),
                    Ok(other) => {
                        warn!(node, answer = other.type_name(), "lookup refused");
                        None
                    }
                    Err(err) => {
                        warn!(node, %err, "lookup failed");
                        None
                    }
                };
                if let Some(key) = key {
                    remember_key(&mut shared.inner.borrow_mut(), node, key);
                }
                feed(&shared, Input::PeerKey { node, key });
            }
            RegistryWork::Forward(request) => match shared.registry.call(&request).await {
                Ok(Response::PollHandshakesOk(inbox)) => feed(
                    &shared,
                    Input::Command(pilot_core::node::Command::TrustInbox(Box::new(inbox))),
                ),
                Ok(Response::Error { error }) => {
                    warn!(request = request.type_name(), %error, "registry refused a request");
                }
                Ok(answer) => debug!(answer = answer.type_name(), "registry answered"),
                Err(err) => warn!(request = request.type_name(), %err, "registry request failed"),
            },
        }
    }
    shared.inner.borrow_mut().registry_busy = false;
    super::persist_if_needed(&shared).await;
}

fn feed(shared: &Shared, input: Input) {
    // Refusals of a registry answer are the engine's business (logged at debug).
    let _ = shared.with_node(|node, now| node.handle_input(now, input));
}

/// The ACK line a data exchange server sends (spec §10.3), e.g. `ACK TEXT 5 bytes`.
pub fn ack_line(reply: &ExchangeReply) -> String {
    match reply {
        ExchangeReply::Acked { frame_type, len } => format!("ACK {frame_type} {len} bytes"),
        ExchangeReply::Failed { frame_type, reason } => format!("ERR {frame_type} {reason}"),
    }
}

fn not_registered() -> ApiError {
    ApiError::new(ErrorCode::NotReady, "the node has not registered yet")
}

/// A registry answer of the wrong type.
pub fn unexpected(response: &Response) -> ApiError {
    ApiError::new(
        ErrorCode::RegistryError,
        format!("registry answered {} unexpectedly", response.type_name()),
    )
}

/// The API verdict for an engine refusal.
pub fn node_error(err: NodeError) -> ApiError {
    let message = err.to_string();
    let code = match err {
        NodeError::UnknownConnection => ErrorCode::UnknownConnection,
        NodeError::Stream(StreamError::WouldBlock) => ErrorCode::QueueFull,
        NodeError::Stream(_) => ErrorCode::ConnectionClosed,
        NodeError::TooManyConnections
        | NodeError::NoFreePort
        | NodeError::TrustSetFull
        | NodeError::TooManyParkedTrustMessages => ErrorCode::QueueFull,
        NodeError::Kex(_) => ErrorCode::PeerUnreachable,
        NodeError::InvalidPort
        | NodeError::PortInUse
        | NodeError::NotListening
        | NodeError::OwnAddress
        | NodeError::EmptyPayload
        | NodeError::PayloadTooLarge
        | NodeError::NotApplicationConnection
        | NodeError::Trust(_)
        | NodeError::Exchange(_)
        | NodeError::DataExchange(_)
        | NodeError::EventStream(_) => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, message)
}
