//! One loopback test world for the Worker end to end: the local registry, the relay, a native
//! peer and the Worker under `wrangler dev`, wired together and torn down on drop.
//!
//! | part | where | why there |
//! |---|---|---|
//! | registry ([`crate::registry_server`]) | `127.0.0.1`, free port | what peers look each other up in |
//! | relay ([`relay::RelayServer`]) | `127.0.0.2`, HTTP and UDP | a different IP than the registry sees from anyone else, so the Worker's recorded `real_addr` proves address learning through the relay (relay/PROTOCOL.md §6) |
//! | native peer ([`crate::peer::Peer`]) | `127.0.0.1`, UDP | a private node the Worker must be trusted by |
//! | Worker ([`worker::WorkerProcess`]) | `127.0.0.1`, free port | `wrangler dev`, talking to the relay over WebSockets |
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use conformance::e2e::{World, WorldConfig};
//! let world = World::start(WorldConfig::from_env()).await?;
//! let info = world.wait_registered(std::time::Duration::from_secs(30)).await?;
//! println!("Worker {} behind {}", info.address, world.relay.http_addr());
//! world.shutdown().await
//! # }
//! ```
//!
//! Everything binds to 127.0.0.0/8 only. Every wait is bounded; every child process is
//! killed when its handle drops, also when a test panics.

pub mod client;
pub mod relay;
pub mod scenario;
pub mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use pilot_core::addr::Addr;
use pilot_core::crypto::Identity;
use pilot_core::registry::{Request, Resolve, Response};
use rand_core::{OsRng, RngCore as _};
use tempfile::TempDir;
use tracing::info;

use crate::peer::{load_or_create_identity, Peer, PeerConfig, RegistryClient};
use crate::registry_server::{self, RegistryHandle, RegistryServer};
use client::{Info, WorkerApi};
use relay::RelayServer;
use worker::{WorkerConfig, WorkerProcess};

/// The relay's IP: HTTP listener, session UDP sockets and registry connections.
pub const RELAY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The registry's and the native peer's IP.
pub const HOST_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Environment variable naming the Worker's directory (default: `worker-shim/`).
pub const WORKER_DIR_ENV: &str = "PILOT_WORKER_DIR";
/// Set to `1` to keep the world's temp dir (logs, identities, DO storage) after it stops.
pub const KEEP_STATE_ENV: &str = "PILOT_E2E_KEEP";
/// Worker variable carrying the relay's base URL.
pub const RELAY_URL_VAR: &str = "PILOT_RELAY_URL";
/// Heartbeat interval of the native peer: short, so a registry record refreshed after a
/// relay restart is seen within a test.
const PEER_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the native peer polls the registry for relayed trust handshakes (default 10 s):
/// the two private ends can reach each other only through that inbox at first.
const PEER_TRUST_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Pause between polls of the Worker's state.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How to build a [`World`].
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// The Worker's directory.
    pub worker_dir: PathBuf,
    /// Longest wait for `wrangler dev` to answer.
    pub worker_ready_timeout: Duration,
    /// Keep the temp dir (its path is logged) instead of removing it.
    pub keep_state: bool,
}

impl WorldConfig {
    /// `$PILOT_WORKER_DIR`, else `worker-shim/` of this repository.
    pub fn from_env() -> Self {
        let worker_dir = std::env::var_os(WORKER_DIR_ENV).map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker-shim"),
            PathBuf::from,
        );
        Self {
            worker_dir,
            worker_ready_timeout: worker::DEFAULT_READY_TIMEOUT,
            keep_state: std::env::var_os(KEEP_STATE_ENV).is_some_and(|v| v == "1"),
        }
    }
}

/// The running world. Fields are public so scenarios can kill and restart parts.
#[derive(Debug)]
pub struct World {
    /// The local registry.
    pub registry: RegistryHandle,
    /// The relay (killable, restartable on the same port).
    pub relay: RelayServer,
    /// The native peer.
    pub peer: Peer,
    /// The native peer's identity file.
    pub peer_identity: PathBuf,
    /// The Worker (restartable with the same Durable Object storage).
    pub worker: WorkerProcess,
    /// Holds identities, DO storage and logs; removed on drop.
    pub state_dir: TempDir,
}

impl World {
    /// Starts registry, relay, native peer and Worker, in that order.
    pub async fn start(config: WorldConfig) -> anyhow::Result<Self> {
        let state_dir = tempfile::Builder::new()
            .prefix("pilot-e2e-")
            .disable_cleanup(config.keep_state)
            .tempdir()
            .context("creating the state directory")?;
        if config.keep_state {
            eprintln!("e2e world state kept in {}", state_dir.path().display());
        }

        let registry = RegistryServer::bind(registry_server::Config {
            listen: SocketAddr::new(HOST_IP, 0),
            ..registry_server::Config::default()
        })
        .await
        .context("binding the registry")?
        .spawn();
        info!(addr = %registry.local_addr(), "registry up");

        let relay_config = relay::loopback_config(RELAY_IP, registry.local_addr())?;
        let relay = RelayServer::start(relay_config, SocketAddr::new(RELAY_IP, 0))?;

        let peer_identity = state_dir.path().join("peer-identity.json");
        let peer = Peer::start(peer_config(registry.local_addr(), peer_identity.clone()))
            .await
            .context("starting the native peer")?;
        info!(addr = %peer.addr(), udp = %peer.udp_addr(), "native peer up");

        let mut worker_config =
            WorkerConfig::new(&config.worker_dir, state_dir.path(), random_token());
        worker_config.ready_timeout = config.worker_ready_timeout;
        worker_config
            .vars
            .push((RELAY_URL_VAR.to_owned(), relay.ws_url()));
        let worker = WorkerProcess::start(worker_config).await?;

        Ok(Self {
            registry,
            relay,
            peer,
            peer_identity,
            worker,
            state_dir,
        })
    }

    /// Starts another private native peer on 127.0.0.1 with its own identity (`name`).
    pub async fn start_extra_peer(&self, name: &str) -> anyhow::Result<Peer> {
        let identity = self.state_dir.path().join(format!("{name}-identity.json"));
        Peer::start(peer_config(self.registry.local_addr(), identity))
            .await
            .with_context(|| format!("starting native peer {name}"))
    }

    /// A client of the Worker's API.
    pub fn api(&self) -> WorkerApi {
        self.worker.api()
    }

    /// Polls `/v1/info` until the Worker is registered with a relay endpoint.
    pub async fn wait_registered(&self, timeout: Duration) -> anyhow::Result<Info> {
        let api = self.api();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match api.info().await {
                Ok(info) if info.registered && info.endpoint.is_some() => return Ok(info),
                Ok(info) => format!("{info:?}"),
                Err(err) => err.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the Worker did not register within {timeout:?} (last: {last}); see {}",
                    self.worker.log_file().display()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The Worker's `real_addr` in the registry, resolved as the native peer (spec §9.4:
    /// a private Worker answers only requesters it trusts).
    pub async fn registered_real_addr(&self, worker: Addr) -> anyhow::Result<SocketAddr> {
        let seed = load_or_create_identity(&self.peer_identity)?;
        let identity = Identity::from_seed(&seed);
        let request = Resolve::signed(self.peer.addr().node, worker.node, &identity);
        let mut registry = RegistryClient::new(self.registry.local_addr());
        match registry.call(&Request::Resolve(request)).await? {
            Response::ResolveOk(ok) => ok
                .real_addr
                .parse()
                .with_context(|| format!("real_addr {:?} is not ip:port", ok.real_addr)),
            other => bail!("resolve of {worker} refused: {other:?}"),
        }
    }

    /// Stops the Worker, the peer, the relay and the registry.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let World {
            registry,
            mut relay,
            peer,
            mut worker,
            state_dir,
            ..
        } = self;
        worker.stop().await;
        peer.shutdown().await?;
        relay.kill();
        registry.shutdown().await?;
        drop(state_dir);
        Ok(())
    }
}

/// A private native peer on 127.0.0.1 with the world's short intervals.
fn peer_config(registry: SocketAddr, identity: PathBuf) -> PeerConfig {
    let mut config = PeerConfig::new(registry, identity);
    config.heartbeat_interval = PEER_HEARTBEAT_INTERVAL;
    config.trust_poll_interval = PEER_TRUST_POLL_INTERVAL;
    config
}

/// 32 random bytes in hex: the Worker's API bearer token for this world.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
