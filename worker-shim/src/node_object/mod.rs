//! The `PilotNode` Durable Object: one Pilot node per identity.
//!
//! Lifecycle: the first request (or alarm) loads the identity from storage (creating it on
//! first start), opens a relay session, registers through the registry pipe with the
//! session's UDP endpoint, and creates the engine. A lost relay session is reopened with
//! exponential backoff and the node registers again (the UDP port changes). An alarm every
//! 60 s sends the heartbeat (spec §9.5), polls relayed trust handshakes and restarts the
//! node if the object was evicted. `driver` runs the engine, `routes` serves the API.

mod config;
mod driver;
mod routes;
mod storage;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::select;
use pilot_core::addr::Addr;
use pilot_core::node::{Command, Input, Node, NodeConfig};
use pilot_core::registry::{
    Heartbeat, Register, RegisterOk, Request, Response, SetHostname, SetVisibility,
};
use pilot_core::services::trust_service::TrustedPeer;
use rand_core::OsRng;
use tracing::{info, warn};
use worker::{
    durable_object, DurableObject, Env, Request as HttpRequest, Response as HttpResponse, State,
};

use crate::api::{ApiError, ErrorCode};
use crate::notify::Notify;
use crate::registry_pipe::{RegistryPipe, RegistryRoute};
use crate::transport::{RelayTransport, TcpTransport, Transport};

pub use config::Config;
use driver::{now_ms, unexpected, Inner, Shared, Sink};

/// spec §9.5: a registered node sends a heartbeat every 60 seconds; the alarm carries it.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the registry inbox is polled for relayed trust handshakes (spec §9.6) while the
/// object runs: requests addressed to us wait there until we look.
pub const TRUST_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// The inbox poll interval while one of our own relayed requests awaits its answer.
pub const TRUST_POLL_INTERVAL_AWAITING: Duration = Duration::from_secs(1);
/// Longest a request waits for another request's start of the node.
const START_WAIT: Duration = Duration::from_secs(30);

/// The Durable Object class (`new_sqlite_classes = ["PilotNode"]`).
#[durable_object(alarm)]
pub struct PilotNode {
    shared: Rc<Shared>,
}

impl DurableObject for PilotNode {
    fn new(state: State, env: Env) -> Self {
        let config = Config::from_env(&env);
        crate::log::init(config.log.as_deref());
        let registry = RegistryPipe::new(registry_route(&config));
        let shared = Rc::new_cyclic(|me| Shared {
            state,
            config,
            notify: Notify::new(),
            inner: RefCell::new(Inner::default()),
            registry,
            me: me.clone(),
        });
        PilotNode { shared }
    }

    async fn fetch(&self, req: HttpRequest) -> worker::Result<HttpResponse> {
        routes::handle(&self.shared, req).await
    }

    async fn alarm(&self) -> worker::Result<HttpResponse> {
        on_alarm(&self.shared).await;
        HttpResponse::ok("")
    }
}

/// The relay's registry pipe, or with `PILOT_TRANSPORT=tcp` a direct connection to
/// `PILOT_REGISTRY` (checked again, with a hint, when the node starts).
fn registry_route(config: &Config) -> RegistryRoute {
    match (config.transport.as_str(), config.registry.as_deref()) {
        (config::TRANSPORT_TCP, Some(registry)) => {
            let (host, port) = config::split_host_port(registry).unwrap_or_default();
            RegistryRoute::Direct {
                host,
                port,
                tls: config.registry_tls,
            }
        }
        _ => RegistryRoute::Relay {
            url: config.relay_url.clone().unwrap_or_default(),
            token: config.relay_token.clone(),
        },
    }
}

/// Starts the node unless it runs: identity, relay session, registration, engine.
/// Concurrent callers wait for the one start in progress.
pub(crate) async fn ensure_started(shared: &Rc<Shared>) -> Result<(), ApiError> {
    let deadline = now_ms().saturating_add(START_WAIT.as_secs() * 1000);
    loop {
        let changed = shared.notify.changed();
        {
            let mut inner = shared.inner.borrow_mut();
            if inner.transport.is_some() && inner.registered {
                return Ok(());
            }
            if !inner.starting {
                inner.starting = true;
                break;
            }
        }
        let left = deadline.saturating_sub(now_ms());
        if left == 0 {
            return Err(ApiError::new(
                ErrorCode::NotReady,
                "the node is still starting",
            ));
        }
        let sleep = core::pin::pin!(worker::Delay::from(Duration::from_millis(left)));
        let _ = select(core::pin::pin!(changed), sleep).await;
    }
    let result = start(shared).await;
    {
        let mut inner = shared.inner.borrow_mut();
        inner.starting = false;
        match &result {
            Ok(()) => {
                inner.last_error = None;
                inner.backoff.reset();
            }
            Err(err) => inner.last_error = Some(err.message.clone()),
        }
    }
    shared.notify.notify();
    result
}

async fn start(shared: &Rc<Shared>) -> Result<(), ApiError> {
    let identity = storage::load_identity(shared).await?;
    let transport = open_transport(shared, &identity).await?;
    let endpoint = transport.endpoint();
    shared.inner.borrow_mut().transport = Some(Rc::clone(&transport));

    // spec §7.8: without an endpoint (direct TCP) the node registers an empty listen_addr.
    let listen_addr = endpoint.map(|e| e.to_string()).unwrap_or_default();
    let registered = match register(shared, &identity, &listen_addr).await {
        Ok(ok) => ok,
        Err(err) => {
            transport.close();
            shared.inner.borrow_mut().transport = None;
            return Err(err);
        }
    };
    let fresh = adopt_registration(shared, &registered).await;
    shared.inner.borrow_mut().registered = true;
    info!(addr = %Addr::new(registered.network_id, registered.node_id),
        transport = transport.kind(), endpoint = %listen_addr,
        public = shared.config.public, "registered");
    if fresh {
        wasm_bindgen_futures::spawn_local(Rc::clone(shared).run_timer());
        wasm_bindgen_futures::spawn_local(run_trust_poll(Rc::clone(shared)));
    }
    if let Err(err) = arm_alarm(shared).await {
        warn!(%err, "cannot set the heartbeat alarm");
    }
    Ok(())
}

/// Opens the configured transport: a relay session, or the (initially empty) TCP pool.
async fn open_transport(
    shared: &Rc<Shared>,
    identity: &Rc<pilot_core::crypto::Identity>,
) -> Result<Rc<dyn Transport>, ApiError> {
    let config = &shared.config;
    let sink = Rc::new(Sink(Rc::downgrade(shared)));
    match config.transport.as_str() {
        config::TRANSPORT_RELAY => {
            let Some(url) = config.relay_url.clone() else {
                return Err(ApiError::new(ErrorCode::NotReady, "PILOT_RELAY_URL is not set")
                    .with_hint("set PILOT_RELAY_URL (ws:// or wss:// URL of a pilot-relay) in wrangler.toml [vars]"));
            };
            let session = {
                let mut inner = shared.inner.borrow_mut();
                inner.session += 1;
                inner.session
            };
            let transport = RelayTransport::connect(
                &url,
                Rc::clone(identity),
                config.relay_token.clone(),
                session,
                sink,
            )
            .await
            .map_err(|e| ApiError::new(ErrorCode::NotReady, e.to_string()))?;
            Ok(Rc::new(transport))
        }
        config::TRANSPORT_TCP => {
            let usable = config
                .registry
                .as_deref()
                .and_then(config::split_host_port)
                .is_some();
            if !usable {
                return Err(ApiError::new(
                    ErrorCode::NotReady,
                    format!(
                        "PILOT_TRANSPORT=tcp needs PILOT_REGISTRY as host:port, got {:?}",
                        config.registry.as_deref().unwrap_or_default()
                    ),
                )
                .with_hint(
                    "set PILOT_REGISTRY (e.g. registry.example.com:9000) in wrangler.toml [vars]",
                ));
            }
            Ok(TcpTransport::new(sink))
        }
        other => Err(ApiError::new(
            ErrorCode::NotReady,
            format!("PILOT_TRANSPORT={other:?} is not a known transport"),
        )
        .with_hint("set PILOT_TRANSPORT to relay or tcp")),
    }
}

/// Registers `listen_addr` (spec §9.3), goes public if configured, and claims the hostname
/// (`PILOT_HOSTNAME`, else the one last set through the API).
async fn register(
    shared: &Rc<Shared>,
    identity: &pilot_core::crypto::Identity,
    listen_addr: &str,
) -> Result<RegisterOk, ApiError> {
    let registry_error = |e: crate::registry_pipe::RegistryCallError| {
        ApiError::new(ErrorCode::RegistryError, e.to_string())
    };
    let request = Request::Register(Register::signed(listen_addr.to_string(), identity));
    let ok = match shared
        .registry
        .call(&request)
        .await
        .map_err(registry_error)?
    {
        Response::RegisterOk(ok) => ok,
        Response::Error { error } => {
            return Err(ApiError::new(
                ErrorCode::RegistryError,
                format!("registry refused registration: {error}"),
            ))
        }
        other => return Err(unexpected(&other)),
    };
    if shared.config.public {
        let request = Request::SetVisibility(SetVisibility::signed(ok.node_id, true, identity));
        match shared
            .registry
            .call(&request)
            .await
            .map_err(registry_error)?
        {
            Response::SetVisibilityOk => {}
            other => warn!(answer = other.type_name(), "set_visibility refused"),
        }
    }
    let hostname = match shared.config.hostname.clone() {
        Some(configured) => Some(configured),
        None => storage::load_hostname(shared).await,
    };
    if let Some(hostname) = hostname {
        let request =
            Request::SetHostname(SetHostname::signed(ok.node_id, hostname.clone(), identity));
        match shared
            .registry
            .call(&request)
            .await
            .map_err(registry_error)?
        {
            Response::SetHostnameOk(_) => shared.inner.borrow_mut().hostname = hostname,
            other => warn!(answer = ?other.error_text(), "hostname refused"),
        }
    }
    Ok(ok)
}

/// Creates the engine on the first registration (returns `true` then). The engine's
/// address cannot change while it runs, so a different node ID later is reported only.
async fn adopt_registration(shared: &Rc<Shared>, ok: &RegisterOk) -> bool {
    if let Some(node) = shared.inner.borrow().node.as_ref() {
        if node.addr().node != ok.node_id {
            warn!(
                ours = node.addr().node,
                given = ok.node_id,
                "registry assigned another node ID; the object keeps its address until evicted"
            );
        }
        return false;
    }
    let seed = match storage::load_seed(shared).await {
        Ok(seed) => seed,
        Err(err) => {
            warn!(%err, "identity vanished from storage");
            return false;
        }
    };
    let origin_ms = now_ms();
    let node_config = NodeConfig {
        private: !shared.config.public,
        unix_secs_at_zero: origin_ms / 1000,
        ..NodeConfig::default()
    };
    let addr = Addr::new(ok.network_id, ok.node_id);
    let node = Node::new(node_config, addr, &seed, OsRng);
    let (trusted, keys) = storage::load_trust(shared).await;
    {
        let mut inner = shared.inner.borrow_mut();
        inner.origin_ms = origin_ms;
        inner.node = Some(node);
        inner.peer_keys = keys.clone();
    }
    // Back into the trust service itself (not the driver's extra-trusted set), so that
    // `/v1/trusted` lists them and the next persist writes them again.
    let since_unix_secs = origin_ms / 1000;
    for node_id in trusted {
        let peer = TrustedPeer {
            key: keys.get(&node_id).copied(),
            since_unix_secs,
        };
        if let Err(err) = shared.with_node(|n, _| n.restore_trusted(node_id, peer)) {
            warn!(node = node_id, %err, "stored trust not restored");
        }
    }
    for (node_id, key) in keys {
        let _ = shared.with_node(|n, now| {
            n.handle_input(
                now,
                Input::PeerKey {
                    node: node_id,
                    key: Some(key),
                },
            )
        });
    }
    storage::save_node_id(shared, ok.node_id).await;
    true
}

/// Sets the heartbeat alarm 60 s from now. Set on every start rather than only when none is
/// stored: a stored alarm of a previous instance did not fire in local workerd after a
/// restart, and a heartbeat 60 s after each registration is what spec §9.5 asks anyway.
async fn arm_alarm(shared: &Shared) -> worker::Result<()> {
    shared.state.storage().set_alarm(HEARTBEAT_INTERVAL).await
}

/// The alarm: start or heartbeat, poll relayed trust handshakes, persist, re-arm.
async fn on_alarm(shared: &Rc<Shared>) {
    let running = {
        let inner = shared.inner.borrow();
        inner.transport.is_some() && inner.registered
    };
    if running {
        heartbeat(shared).await;
        poll_handshakes(shared).await;
    } else if let Err(err) = ensure_started(shared).await {
        warn!(%err, "start from alarm failed");
        spawn_reconnect(Rc::clone(shared));
    }
    persist_if_needed(shared).await;
    // The alarm fired, so none is set: set the next one.
    if let Err(err) = shared.state.storage().set_alarm(HEARTBEAT_INTERVAL).await {
        warn!(%err, "cannot re-arm the heartbeat alarm");
    }
}

async fn heartbeat(shared: &Rc<Shared>) {
    let request = {
        let inner = shared.inner.borrow();
        let (Some(identity), Some(node)) = (inner.identity.as_ref(), inner.node.as_ref()) else {
            return;
        };
        Request::Heartbeat(Heartbeat::signed(node.addr().node, None, identity))
    };
    match shared.registry.call(&request).await {
        Ok(Response::HeartbeatOk(_)) => tracing::debug!("heartbeat"),
        // spec §9.5: "node not found" means the registry forgot us (e.g. it restarted).
        Ok(Response::Error { error }) if error.contains("not found") => {
            warn!(%error, "registry forgot this node; registering again");
            shared.inner.borrow_mut().registered = false;
            if let Err(err) = reregister(shared).await {
                warn!(%err, "re-registration failed");
            }
        }
        Ok(other) => warn!(answer = ?other.error_text(), "heartbeat refused"),
        Err(err) => warn!(%err, "heartbeat failed"),
    }
}

async fn reregister(shared: &Rc<Shared>) -> Result<(), ApiError> {
    let (identity, endpoint) = {
        let inner = shared.inner.borrow();
        let identity = inner.identity.clone();
        let endpoint = inner.transport.as_ref().map(|t| t.endpoint());
        (identity, endpoint)
    };
    let (Some(identity), Some(endpoint)) = (identity, endpoint) else {
        return Err(ApiError::new(ErrorCode::NotReady, "no transport"));
    };
    let listen_addr = endpoint.map(|e| e.to_string()).unwrap_or_default();
    let ok = register(shared, &identity, &listen_addr).await?;
    adopt_registration(shared, &ok).await;
    shared.inner.borrow_mut().registered = true;
    shared.notify.notify();
    Ok(())
}

async fn poll_handshakes(shared: &Rc<Shared>) {
    let request = {
        let inner = shared.inner.borrow();
        let Some(trust) = inner.node.as_ref().and_then(|n| n.trust_service()) else {
            return;
        };
        trust.poll_request()
    };
    match shared.registry.call(&request).await {
        Ok(Response::PollHandshakesOk(inbox)) => {
            let _ = shared.with_node(|node, now| {
                node.handle_input(now, Input::Command(Command::TrustInbox(Box::new(inbox))))
            });
        }
        Ok(other) => warn!(answer = ?other.error_text(), "poll_handshakes refused"),
        Err(err) => warn!(%err, "poll_handshakes failed"),
    }
}

/// Polls the registry inbox every [`TRUST_POLL_INTERVAL`], or every
/// [`TRUST_POLL_INTERVAL_AWAITING`] while an outgoing relayed request is unanswered, for as
/// long as the object lives (the alarm polls too, after an eviction).
async fn run_trust_poll(shared: Rc<Shared>) {
    let mut last_poll_ms = now_ms();
    loop {
        let changed = shared.notify.changed();
        let (running, awaiting) = {
            let inner = shared.inner.borrow();
            let awaiting = inner
                .node
                .as_ref()
                .and_then(|n| n.trust_service())
                .is_some_and(|t| t.outgoing().next().is_some());
            (inner.transport.is_some() && inner.registered, awaiting)
        };
        let interval = if awaiting {
            TRUST_POLL_INTERVAL_AWAITING
        } else {
            TRUST_POLL_INTERVAL
        };
        let due_ms = last_poll_ms.saturating_add(interval.as_millis() as u64);
        let now = now_ms();
        if now >= due_ms {
            if running {
                poll_handshakes(&shared).await;
                persist_if_needed(&shared).await;
            }
            last_poll_ms = now_ms();
            continue;
        }
        // A change (a new outgoing request, say) wakes us to recompute the interval.
        let sleep = core::pin::pin!(worker::Delay::from(Duration::from_millis(due_ms - now)));
        let _ = select(core::pin::pin!(changed), sleep).await;
    }
}

/// Reopens the relay session (and registers again) with exponential backoff, once.
pub(crate) fn spawn_reconnect(shared: Rc<Shared>) {
    {
        let mut inner = shared.inner.borrow_mut();
        if inner.reconnecting {
            return;
        }
        inner.reconnecting = true;
    }
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let delay = shared.inner.borrow_mut().backoff.next_delay();
            worker::Delay::from(delay).await;
            match ensure_started(&shared).await {
                Ok(()) => {
                    info!("relay session restored");
                    break;
                }
                Err(err) => warn!(%err, retry_in_ms = delay.as_millis() as u64, "reconnect failed"),
            }
        }
        shared.inner.borrow_mut().reconnecting = false;
    });
}

/// Writes the trust set and peer key cache if they changed.
pub(crate) async fn persist_if_needed(shared: &Shared) {
    let snapshot = {
        let mut inner = shared.inner.borrow_mut();
        if !inner.persist_pending {
            return;
        }
        inner.persist_pending = false;
        let trusted: Vec<u32> = inner
            .node
            .as_ref()
            .and_then(|n| n.trust_service())
            .map(|t| t.trusted().map(|(node, _)| node).collect())
            .unwrap_or_default();
        (trusted, inner.peer_keys.clone())
    };
    storage::save_trust(shared, &snapshot.0, &snapshot.1).await;
}
