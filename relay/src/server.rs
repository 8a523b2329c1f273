//! HTTP side of the relay: routes, upgrade checks, start-up and graceful shutdown.

use std::fmt;
use std::future::{Future, IntoFuture as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::TokenPolicy;
use crate::config::{Config, MAX_FRAME_BYTES};
use crate::header::V6_HEADER_BYTES;
use crate::limits::{Slot, SlotCounter};
use crate::metrics::Metrics;
use crate::policy::AddressPolicy;
use crate::{registry, session, token};

/// WebSocket subprotocol of `/v1/relay`.
pub const RELAY_SUBPROTOCOL: &str = "pilot-relay.v1";
/// WebSocket subprotocol of `/v1/registry`.
pub const REGISTRY_SUBPROTOCOL: &str = "pilot-registry.v1";
/// Path of the datagram relay.
pub const RELAY_PATH: &str = "/v1/relay";
/// Path of the registry pipe.
pub const REGISTRY_PATH: &str = "/v1/registry";
/// Time the relay waits for a client's close reply after sending its own close frame, so the
/// close frame is not lost to a TCP reset.
const CLOSE_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Close reason sent with [`crate::close::SERVICE_RESTART`].
pub(crate) const SHUTDOWN_REASON: &str = "relay shutting down; reconnect and re-register";

/// Why the relay could not start or stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The metrics registry could not be built.
    Metrics(prometheus::Error),
    /// The listener failed.
    Io(std::io::Error),
    /// The host's interface addresses could not be read (needed to refuse the relay itself
    /// as a destination when the UDP sockets bind to an unspecified address).
    Interfaces(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Metrics(e) => write!(f, "metrics registry: {e}"),
            Self::Io(e) => write!(f, "listener: {e}"),
            Self::Interfaces(e) => write!(f, "reading interface addresses: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// State shared by every connection of one relay instance.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) policy: AddressPolicy,
    pub(crate) metrics: Metrics,
    pub(crate) total_slots: Arc<SlotCounter<()>>,
    pub(crate) ip_slots: Arc<SlotCounter<IpAddr>>,
    pub(crate) identity_slots: Arc<SlotCounter<[u8; 32]>>,
    /// UDP ports of live sessions (all bound to `udp_bind_ip`), one slot each.
    pub(crate) session_ports: Arc<SlotCounter<u16>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

/// Slots a connection holds from upgrade to close.
#[derive(Debug)]
pub(crate) struct ConnectionSlots {
    _total: Slot<()>,
    _ip: Slot<IpAddr>,
}

/// One relay instance: configuration, metrics and the sessions it serves.
#[derive(Debug, Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

impl Relay {
    /// Builds a relay; nothing is bound until [`Relay::serve`].
    pub fn new(config: Config) -> Result<Self, ServeError> {
        let metrics = Metrics::new().map_err(ServeError::Metrics)?;
        let policy = AddressPolicy::new(config.allow_dest.clone())
            .with_own_addresses(own_addresses(&config)?);
        info!(own = ?policy.own_addresses(), "refusing the relay's own addresses as destinations");
        Ok(Self {
            shared: Arc::new(Shared {
                policy,
                session_ports: SlotCounter::new(1),
                total_slots: SlotCounter::new(config.max_sessions),
                ip_slots: SlotCounter::new(config.max_sessions_per_ip),
                identity_slots: SlotCounter::new(config.max_sessions_per_identity),
                metrics,
                config,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        })
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Serves `listener` until `shutdown` completes. Then it refuses new WebSocket upgrades
    /// (503), answers `/healthz` with `503 draining`, sends every client a close frame with
    /// code 1012 and waits up to the drain timeout for sessions to end; only then does it stop
    /// the listener. A relay serves once: after shutdown it stays shut down.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let shared = Arc::clone(&self.shared);
        // Stops the listener; separate from `shared.shutdown` so that /healthz keeps
        // answering 503 while sessions drain.
        let stop_listening = CancellationToken::new();
        let stop = stop_listening.clone();
        let listener = listener.tap_io(|tcp| {
            // Frames are small and latency-sensitive; never wait to coalesce them.
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(
            listener,
            router(Arc::clone(&shared)).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
        let mut server = std::pin::pin!(server);

        let mut server_done = false;
        tokio::select! {
            res = &mut server => {
                res.map_err(ServeError::Io)?;
                server_done = true;
            }
            () = shutdown => {}
        }

        info!(
            sessions = shared.metrics.sessions_active.get(),
            "shutting down: refusing upgrades, /healthz answers 503, closing sessions with 1012"
        );
        let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
        shared.shutdown.cancel();
        shared.tracker.close();
        // The server keeps being polled meanwhile, so /healthz and upgrade refusals are
        // answered during the drain.
        let drained = {
            let wait = tokio::time::timeout_at(deadline, shared.tracker.wait());
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    waited = &mut wait => break waited.is_ok(),
                    _ = &mut server, if !server_done => server_done = true,
                }
            }
        };
        stop_listening.cancel();
        if !server_done {
            // Plain HTTP requests in flight get the rest of the drain window, at least a
            // moment; upgraded connections are no longer the server's.
            let grace = deadline.max(tokio::time::Instant::now() + CLOSE_ACK_TIMEOUT);
            let _ = tokio::time::timeout_at(grace, &mut server).await;
        }
        if drained {
            info!("drained");
        } else {
            warn!(
                remaining = shared.tracker.len(),
                "drain deadline passed; abandoning remaining connections"
            );
        }
        Ok(())
    }
}

/// The relay's own addresses (see [`AddressPolicy::with_own_addresses`]): the public IP
/// (always, even when loopback: it is what clients are told), the UDP bind IP unless it is
/// unspecified or loopback, and, when it is unspecified, every non-loopback interface address,
/// read once now. Loopback addresses of the host are left to the range policy: refused unless
/// `--allow-dest` names them, and an operator who does so (a development relay next to a
/// local daemon) has chosen to let clients reach local services.
fn own_addresses(config: &Config) -> Result<Vec<IpAddr>, ServeError> {
    let mut own: Vec<IpAddr> = config.public_ip.into_iter().collect();
    if config.udp_bind_ip.is_unspecified() {
        let interfaces = if_addrs::get_if_addrs().map_err(ServeError::Interfaces)?;
        own.extend(
            interfaces
                .iter()
                .filter(|i| !i.is_loopback())
                .map(if_addrs::Interface::ip),
        );
    } else if !config.udp_bind_ip.is_loopback() {
        own.push(config.udp_bind_ip);
    }
    Ok(own)
}

/// Runs a relay with `config` on `listener` until `shutdown` completes (see [`Relay::serve`]).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Relay::new(config)?.serve(listener, shutdown).await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(RELAY_PATH, get(relay_upgrade))
        .route(REGISTRY_PATH, get(registry_upgrade))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// Takes the per-relay and per-IP connection slots, or answers why not.
fn admit(shared: &Shared, peer: SocketAddr) -> Result<ConnectionSlots, (StatusCode, &'static str)> {
    if shared.shutdown.is_cancelled() {
        shared.metrics.session_refused("shutting_down");
        info!(peer = %peer, reason = "shutting_down", "connection refused");
        return Err((StatusCode::SERVICE_UNAVAILABLE, "relay is shutting down\n"));
    }
    let Some(total) = shared.total_slots.acquire(()) else {
        shared.metrics.session_refused("relay_full");
        warn!(peer = %peer, reason = "relay_full", "connection refused");
        return Err((StatusCode::SERVICE_UNAVAILABLE, "relay is full\n"));
    };
    let Some(ip) = shared.ip_slots.acquire(peer.ip()) else {
        shared.metrics.session_refused("per_ip");
        warn!(peer = %peer, reason = "per_ip", "connection refused");
        return Err((StatusCode::TOO_MANY_REQUESTS, "too many connections\n"));
    };
    Ok(ConnectionSlots {
        _total: total,
        _ip: ip,
    })
}

async fn relay_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.protocols([RELAY_SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        shared.metrics.session_refused("no_subprotocol");
        info!(peer = %peer, reason = "no_subprotocol", "connection refused");
        return (
            StatusCode::BAD_REQUEST,
            "subprotocol pilot-relay.v1 required\n",
        )
            .into_response();
    }
    let slots = match admit(&shared, peer) {
        Ok(slots) => slots,
        Err(refusal) => return refusal.into_response(),
    };
    let tracked = shared.tracker.token();
    let buffer = shared.config.ws_buffer_bytes;
    ws.read_buffer_size(buffer)
        .write_buffer_size(buffer)
        .max_message_size(V6_HEADER_BYTES + MAX_FRAME_BYTES)
        .max_frame_size(V6_HEADER_BYTES + MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            session::run(socket, shared, peer).await;
            drop(slots);
            drop(tracked);
        })
}

async fn registry_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(target) = shared.config.registry.clone() else {
        return (StatusCode::NOT_FOUND, "no registry configured\n").into_response();
    };
    if let Err(reason) = check_bearer(&shared.config.tokens, &headers) {
        shared.metrics.auth_failed(reason);
        warn!(peer = %peer, reason, "registry pipe refused");
        return (StatusCode::UNAUTHORIZED, "valid bearer token required\n").into_response();
    }
    let ws = ws.protocols([REGISTRY_SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        shared.metrics.session_refused("no_subprotocol");
        info!(peer = %peer, reason = "no_subprotocol", "connection refused");
        return (
            StatusCode::BAD_REQUEST,
            "subprotocol pilot-registry.v1 required\n",
        )
            .into_response();
    }
    let slots = match admit(&shared, peer) {
        Ok(slots) => slots,
        Err(refusal) => return refusal.into_response(),
    };
    let tracked = shared.tracker.token();
    let max = shared.config.registry_max_message_bytes;
    ws.read_buffer_size(shared.config.ws_buffer_bytes)
        .write_buffer_size(shared.config.ws_buffer_bytes)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            registry::run(socket, shared, peer, target).await;
            drop(slots);
            drop(tracked);
        })
}

/// When tokens are required, `/v1/registry` needs `Authorization: Bearer <token>`. There is
/// no signature exchange on this route, so an identity token is accepted as-is.
fn check_bearer(policy: &TokenPolicy, headers: &HeaderMap) -> Result<(), &'static str> {
    let TokenPolicy::Required(key) = policy else {
        return Ok(());
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or("token_missing")?;
    token::verify(key, value, crate::unix_now())
        .map(|_| ())
        .map_err(|e| e.as_str())
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name is
/// case-insensitive (RFC 7235 §2.1, RFC 6750 §2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Why a bounded WebSocket write did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The connection failed or is closed.
    Failed,
    /// The write did not complete in time: the client is not reading.
    TimedOut,
}

/// Runs one WebSocket write (send, feed or flush) for at most `limit`.
pub(crate) async fn bounded_write<T>(
    limit: std::time::Duration,
    write: impl Future<Output = Result<T, axum::Error>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(WriteError::Failed),
        Err(_) => Err(WriteError::TimedOut),
    }
}

/// Sends a close frame and waits briefly for the client's reply. Both steps are bounded, so a
/// client that stopped reading cannot hold the connection open.
pub(crate) async fn close_socket(ws: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = axum::extract::ws::CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if bounded_write(CLOSE_ACK_TIMEOUT, ws.send(Message::Close(Some(frame))))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_ACK_TIMEOUT, async {
        while let Some(Ok(_)) = ws.recv().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k "] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
