//! One `/v1/relay` session: authenticate, bind a UDP socket, then move datagrams between the
//! WebSocket and that socket until either side goes away.
//!
//! Everything of a session runs in one task: a `select!` over the WebSocket, the UDP socket's
//! readiness, the ping timer, the idle timer and the shutdown signal. An idle session holds
//! no receive buffer of its own: datagrams are read into a per-thread buffer and copied out
//! only when they are forwarded.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt as _;
use rand_core::OsRng;
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::auth::{self, AuthError, Authenticated, Challenge, Ready};
use crate::close;
use crate::config::{MAX_FRAME_BYTES, MAX_UDP_PAYLOAD_V4_BYTES, MAX_UDP_PAYLOAD_V6_BYTES};
use crate::header;
use crate::limits::Slot;
use crate::metrics::{Direction, DropReason, Metrics};
use crate::policy::Refusal;
use crate::ratelimit::RateLimit;
use crate::server::{bounded_write, close_socket, Shared, WriteError, SHUTDOWN_REASON};
use crate::validate::{self, FrameRefusal};

/// Datagrams read per UDP wake-up before the task yields to its other events.
const MAX_DATAGRAMS_PER_WAKE: usize = 64;
/// Shortest ping interval accepted from the configuration.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(1);
/// Size of the per-thread receive buffer: the largest UDP payload.
const RECV_BUFFER_BYTES: usize = 65_536;

thread_local! {
    /// Receive buffer shared by every session running on this worker thread; it is only
    /// borrowed for a synchronous `try_recv_from` and the copy that follows.
    static RECV_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; RECV_BUFFER_BYTES].into_boxed_slice());
}

/// Counts a session in `pilot_relay_sessions_active` for as long as it lives, however the
/// session task ends.
struct ActiveSession<'a>(&'a Metrics);

impl<'a> ActiveSession<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.sessions_active.inc();
        Self(metrics)
    }
}

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.sessions_active.dec();
    }
}

/// How the authentication phase ended when it did not succeed.
enum AuthEnd {
    Failed(AuthError),
    Shutdown,
    Disconnected,
}

/// Runs a session to its end.
pub(crate) async fn run(mut ws: WebSocket, shared: Arc<Shared>, peer: SocketAddr) {
    let auth = match authenticate(&mut ws, &shared).await {
        Ok(auth) => auth,
        Err(AuthEnd::Failed(err)) => {
            shared.metrics.auth_failed(err.as_str());
            warn!(peer = %peer, reason = err.as_str(), error = %err, "authentication failed");
            close_socket(&mut ws, close::for_auth_error(&err), err.as_str()).await;
            return;
        }
        Err(AuthEnd::Shutdown) => {
            close_socket(&mut ws, close::SERVICE_RESTART, SHUTDOWN_REASON).await;
            return;
        }
        Err(AuthEnd::Disconnected) => return,
    };
    let identity = hex::encode(auth.identity.get(..8).unwrap_or_default());

    let Some(identity_slot) = shared.identity_slots.acquire(auth.identity) else {
        shared.metrics.session_refused("per_identity");
        warn!(peer = %peer, identity, reason = "per_identity", "session refused");
        close_socket(
            &mut ws,
            close::SESSION_LIMIT,
            "too many sessions for this identity",
        )
        .await;
        return;
    };

    let udp = match UdpSocket::bind(SocketAddr::new(shared.config.udp_bind_ip, 0)).await {
        Ok(udp) => udp,
        Err(err) => {
            warn!(peer = %peer, identity, error = %err, "could not bind a UDP socket");
            close_socket(&mut ws, close::INTERNAL_ERROR, "no UDP socket available").await;
            return;
        }
    };
    let Ok(local) = udp.local_addr() else {
        close_socket(&mut ws, close::INTERNAL_ERROR, "no UDP socket available").await;
        return;
    };
    let public = SocketAddr::new(shared.config.public_ip.unwrap_or(local.ip()), local.port());
    // Other sessions of this relay may send to this port (policy: own addresses).
    let Some(port_slot) = shared.session_ports.acquire(local.port()) else {
        close_socket(&mut ws, close::INTERNAL_ERROR, "no UDP socket available").await;
        return;
    };

    let ready = Ready {
        kind: "ready".to_owned(),
        udp_addr: public.to_string(),
        max_frame_bytes: MAX_FRAME_BYTES,
        idle_timeout_secs: shared.config.idle_timeout.as_secs(),
    };
    let Ok(ready) = serde_json::to_string(&ready) else {
        return;
    };
    if bounded_write(
        shared.config.write_timeout,
        ws.send(Message::Text(ready.into())),
    )
    .await
    .is_err()
    {
        return;
    }

    shared.metrics.sessions_total.inc();
    let active = ActiveSession::new(&shared.metrics);
    info!(peer = %peer, identity, tenant = ?auth.tenant, udp = %public, "session up");
    let mut session = Session::new(&shared, udp, local, peer, identity.clone(), identity_slot);
    let (code, reason) = session.pump(&mut ws).await;
    drop(session);
    drop(port_slot);
    drop(active);
    info!(peer = %peer, identity, udp = %public, close_code = code, reason, "session down");
    if code != close::NORMAL {
        close_socket(&mut ws, code, reason).await;
    }
}

async fn authenticate(ws: &mut WebSocket, shared: &Shared) -> Result<Authenticated, AuthEnd> {
    let deadline = Instant::now() + shared.config.auth_timeout;
    let challenge = Challenge::new(&mut OsRng, crate::unix_now());
    let text = serde_json::to_string(&challenge).map_err(|_| AuthEnd::Disconnected)?;
    bounded_write(
        shared.config.write_timeout,
        ws.send(Message::Text(text.into())),
    )
    .await
    .map_err(|_| AuthEnd::Disconnected)?;

    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return Err(AuthEnd::Shutdown),
            () = sleep_until(deadline) => return Err(AuthEnd::Failed(AuthError::Timeout)),
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(reply))) => {
                    return auth::verify_reply(
                        &challenge,
                        reply.as_str(),
                        &shared.config.tokens,
                        crate::unix_now(),
                    )
                    .map_err(AuthEnd::Failed);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Binary(_))) => return Err(AuthEnd::Failed(AuthError::Malformed)),
                Some(Err(err)) => {
                    return Err(if is_capacity_error(err) {
                        AuthEnd::Failed(AuthError::MessageTooBig)
                    } else {
                        AuthEnd::Disconnected
                    });
                }
                Some(Ok(Message::Close(_))) | None => return Err(AuthEnd::Disconnected),
            },
        }
    }
}

/// The forwarding state of an authenticated session.
struct Session<'a> {
    shared: &'a Shared,
    udp: UdpSocket,
    local_is_v4: bool,
    peer: SocketAddr,
    identity: String,
    outbound_rate: RateLimit,
    inbound_rate: RateLimit,
    _identity_slot: Slot<[u8; 32]>,
}

/// What became of one inbound datagram.
enum Inbound {
    Deliver(Vec<u8>),
    Dropped,
}

impl<'a> Session<'a> {
    fn new(
        shared: &'a Shared,
        udp: UdpSocket,
        local: SocketAddr,
        peer: SocketAddr,
        identity: String,
        identity_slot: Slot<[u8; 32]>,
    ) -> Self {
        let now = std::time::Instant::now();
        let (pps, bps) = (shared.config.packets_per_sec, shared.config.bytes_per_sec);
        Self {
            shared,
            udp,
            local_is_v4: local.is_ipv4(),
            peer,
            identity,
            outbound_rate: RateLimit::new(pps, bps, now),
            inbound_rate: RateLimit::new(pps, bps, now),
            _identity_slot: identity_slot,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The address policy, with this relay's live session ports as the allowed own ports.
    fn check_address(&self, addr: SocketAddr) -> Result<SocketAddr, Refusal> {
        let ports = &self.shared.session_ports;
        self.shared
            .policy
            .check_with_sessions(addr, |port| ports.contains(&port))
    }

    fn drop_frame(&self, reason: DropReason, dir: Direction, addr: Option<SocketAddr>) {
        self.metrics().dropped(reason, dir);
        debug!(
            peer = %self.peer,
            identity = self.identity,
            reason = reason.as_str(),
            direction = dir.as_str(),
            addr = ?addr,
            "datagram dropped"
        );
    }

    /// Moves datagrams both ways until the session ends; returns the close code and reason
    /// to send ([`close::NORMAL`]: nothing to send, the connection is already gone).
    async fn pump(&mut self, ws: &mut WebSocket) -> (u16, &'static str) {
        let config = &self.shared.config;
        let mut last_datagram = Instant::now();
        let mut last_heard = Instant::now();
        let idle = sleep_until(last_datagram + config.idle_timeout);
        tokio::pin!(idle);
        // `interval_at` rejects a zero period.
        let ping_interval = config.ping_interval.max(MIN_PING_INTERVAL);
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);

        // Unbiased select: a client flooding the WebSocket must not starve inbound datagrams
        // or the timers.
        loop {
            tokio::select! {
                () = self.shared.shutdown.cancelled() => {
                    return (close::SERVICE_RESTART, SHUTDOWN_REASON);
                }
                msg = ws.recv() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Binary(bytes))) => {
                            if self.outbound(&bytes, last_heard.into_std()) {
                                last_datagram = last_heard;
                            }
                        }
                        Some(Ok(Message::Text(_))) => {
                            self.drop_frame(DropReason::TextMessage, Direction::Outbound, None);
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            // Lets the automatic close reply go out.
                            let _ = bounded_write(config.write_timeout, ws.flush()).await;
                            return (close::NORMAL, "client closed");
                        }
                        Some(Err(err)) => {
                            debug!(peer = %self.peer, error = %err, "websocket error");
                            if is_capacity_error(err) {
                                self.drop_frame(DropReason::Oversize, Direction::Outbound, None);
                                return (close::MESSAGE_TOO_BIG, "message too big");
                            }
                            return (close::NORMAL, "websocket error");
                        }
                    }
                }
                ready = self.udp.readable() => {
                    if ready.is_err() {
                        return (close::INTERNAL_ERROR, "UDP socket failed");
                    }
                    match self.inbound_batch(ws).await {
                        Ok(true) => last_datagram = Instant::now(),
                        Ok(false) => {}
                        Err(err) => return self.write_failed(err),
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_interval + config.pong_timeout {
                        return (close::PONG_TIMEOUT, "no pong");
                    }
                    let sent = bounded_write(
                        config.write_timeout,
                        ws.send(Message::Ping(Default::default())),
                    )
                    .await;
                    if let Err(err) = sent {
                        return self.write_failed(err);
                    }
                }
                () = &mut idle => {
                    let deadline = last_datagram + config.idle_timeout;
                    if deadline <= Instant::now() {
                        return (close::IDLE_TIMEOUT, "idle timeout");
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    /// The close code and reason after a failed WebSocket write; a timed-out write is counted.
    fn write_failed(&self, err: WriteError) -> (u16, &'static str) {
        match err {
            WriteError::Failed => (close::NORMAL, "websocket write failed"),
            WriteError::TimedOut => {
                self.metrics().write_timeouts.inc();
                warn!(peer = %self.peer, identity = self.identity, "client stopped reading; closing");
                (close::WRITE_TIMEOUT, "client not reading")
            }
        }
    }

    /// Handles one client message received at `now`; `true` if a datagram was sent.
    fn outbound(&mut self, message: &[u8], now: std::time::Instant) -> bool {
        let dir = Direction::Outbound;
        let (dest, frame) = match header::decode(message) {
            Ok(parts) => parts,
            Err(_) => {
                self.drop_frame(DropReason::BadHeader, dir, None);
                return false;
            }
        };
        if frame.len() > MAX_FRAME_BYTES {
            self.drop_frame(DropReason::Oversize, dir, Some(dest));
            return false;
        }
        // Not an open proxy: only Pilot tunnel frames and beacon messages (spec §3.1, §7.2).
        if let Err(refusal) = validate::check(frame, dir) {
            self.drop_frame(frame_drop_reason(refusal), dir, Some(dest));
            return false;
        }
        let dest = match self.check_address(dest) {
            Ok(dest) => dest,
            Err(refusal) => {
                let reason = address_drop_reason(refusal);
                self.metrics().dropped(reason, dir);
                debug!(
                    peer = %self.peer,
                    identity = self.identity,
                    reason = reason.as_str(),
                    range = refusal.as_str(),
                    addr = %dest,
                    "datagram dropped"
                );
                return false;
            }
        };
        let dest = match (self.local_is_v4, dest.ip()) {
            (true, IpAddr::V4(_)) | (false, IpAddr::V6(_)) => dest,
            // A socket bound to an IPv6 address reaches IPv4 peers through mapped addresses.
            (false, IpAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), dest.port())
            }
            (true, IpAddr::V6(_)) => {
                self.drop_frame(DropReason::FamilyMismatch, dir, Some(dest));
                return false;
            }
        };
        // A frame the datagram cannot hold would fail at send; refuse it before it costs the
        // session rate budget.
        if frame.len() > max_udp_payload(dest) {
            self.drop_frame(DropReason::Oversize, dir, Some(dest));
            return false;
        }
        if !self.outbound_rate.admit(frame.len(), now) {
            self.drop_frame(DropReason::RateLimited, dir, Some(dest));
            return false;
        }
        match self.udp.try_send_to(frame, dest) {
            Ok(_) => {
                self.metrics().forwarded(dir, frame.len());
                true
            }
            Err(err) => {
                debug!(peer = %self.peer, addr = %dest, error = %err, "UDP send failed");
                self.drop_frame(DropReason::SendFailed, dir, Some(dest));
                false
            }
        }
    }

    /// Reads every waiting datagram (up to [`MAX_DATAGRAMS_PER_WAKE`]) and queues the
    /// admitted ones on the WebSocket, flushing once. `Ok(true)` if any was delivered.
    /// Every write is bounded by the write timeout, so a client that stops reading cannot
    /// block the session's timers and shutdown signal for longer than that.
    async fn inbound_batch(&mut self, ws: &mut WebSocket) -> Result<bool, WriteError> {
        let limit = self.shared.config.write_timeout;
        let mut delivered = false;
        for _ in 0..MAX_DATAGRAMS_PER_WAKE {
            let message = match self.receive_one() {
                Ok(Inbound::Deliver(message)) => message,
                Ok(Inbound::Dropped) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    // ICMP errors from earlier sends surface here (e.g. connection refused);
                    // they concern one peer, not the session.
                    debug!(peer = %self.peer, error = %err, "UDP receive error");
                    continue;
                }
            };
            bounded_write(limit, ws.feed(Message::Binary(message.into()))).await?;
            delivered = true;
        }
        if delivered {
            bounded_write(limit, ws.flush()).await?;
        }
        Ok(delivered)
    }

    fn receive_one(&mut self) -> io::Result<Inbound> {
        RECV_BUFFER.with_borrow_mut(|buffer| {
            let (len, source) = self.udp.try_recv_from(buffer)?;
            let frame = buffer.get(..len).unwrap_or_default();
            Ok(self.admit_inbound(source, frame))
        })
    }

    fn admit_inbound(&mut self, source: SocketAddr, frame: &[u8]) -> Inbound {
        let dir = Direction::Inbound;
        if let Err(refusal) = validate::check(frame, dir) {
            self.drop_frame(frame_drop_reason(refusal), dir, Some(source));
            return Inbound::Dropped;
        }
        let source = match self.check_address(source) {
            Ok(source) => source,
            Err(refusal) => {
                self.drop_frame(address_drop_reason(refusal), dir, Some(source));
                return Inbound::Dropped;
            }
        };
        if !self
            .inbound_rate
            .admit(frame.len(), std::time::Instant::now())
        {
            self.drop_frame(DropReason::RateLimited, dir, Some(source));
            return Inbound::Dropped;
        }
        self.metrics().forwarded(dir, frame.len());
        Inbound::Deliver(header::encode(&source, frame))
    }
}

/// The largest UDP payload a datagram to `dest` can carry: IPv4 limits apply to IPv4-mapped
/// destinations, which leave as IPv4 packets.
fn max_udp_payload(dest: SocketAddr) -> usize {
    match dest.ip() {
        IpAddr::V4(_) => MAX_UDP_PAYLOAD_V4_BYTES,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => MAX_UDP_PAYLOAD_V4_BYTES,
        IpAddr::V6(_) => MAX_UDP_PAYLOAD_V6_BYTES,
    }
}

/// The metrics label of an address refusal.
fn address_drop_reason(refusal: Refusal) -> DropReason {
    match refusal {
        Refusal::RelaySelf => DropReason::RelaySelf,
        _ => DropReason::RefusedAddress,
    }
}

/// The metrics label of a frame refusal.
fn frame_drop_reason(refusal: FrameRefusal) -> DropReason {
    match refusal {
        FrameRefusal::NotPilot => DropReason::NotPilot,
        FrameRefusal::Plaintext => DropReason::Plaintext,
        FrameRefusal::Malformed => DropReason::MalformedFrame,
        FrameRefusal::BeaconDirection => DropReason::BeaconDirection,
    }
}

/// Whether a receive error is tungstenite refusing a message above `max_message_size`.
pub(crate) fn is_capacity_error(err: axum::Error) -> bool {
    matches!(
        err.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn udp_payload_limit_follows_the_family_on_the_wire() {
        let v4: SocketAddr = "198.51.100.1:9".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:198.51.100.1]:9".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        assert_eq!(max_udp_payload(v4), 65_507);
        assert_eq!(max_udp_payload(mapped), 65_507);
        assert_eq!(max_udp_payload(v6), 65_527);
    }
}
