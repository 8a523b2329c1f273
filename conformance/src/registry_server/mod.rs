//! A local, in-memory Pilot registry speaking the JSON protocol of spec §9, for tests and the
//! demo. Not a production registry: nothing is persisted, nodes never expire, and the owner
//! string re-binds node IDs without proof (see conformance/README.md).
//!
//! Bind, read the address, serve until told to stop:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use conformance::registry_server::{Config, RegistryServer};
//!
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
//!     ..Config::default()
//! };
//! let server = RegistryServer::bind(config).await?;
//! let registry = server.spawn();
//! println!("registry on {}", registry.local_addr());
//! registry.shutdown().await
//! # }
//! ```
//!
//! [`state`] holds the records and answers requests without I/O; [`connection`] runs one TCP
//! connection; this module accepts connections and stops on request.

mod connection;
mod state;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, info_span, warn, Instrument};

pub use state::{HostnameError, Policy, Refusal};

use state::Registry;

/// Port of the reference registry (spec §9.1).
pub const DEFAULT_PORT: u16 = 9000;
/// spec §9.1: a connection silent this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Connections served at once; further clients wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Nodes held at once.
pub const DEFAULT_MAX_NODES: usize = 100_000;
/// The first node ID handed out: the first after the special addresses 0–3 (spec §1.3:
/// zero, registry, beacon, nameserver), so no node collides with a symbolic address.
pub const DEFAULT_FIRST_NODE_ID: u32 = 4;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to bind; port 0 picks a free port (read it back with
    /// [`RegistryServer::local_addr`]).
    pub listen: SocketAddr,
    /// A connection that sends nothing (or accepts no response) for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Node ID assignment and registration rules.
    pub policy: Policy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DEFAULT_PORT),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            policy: Policy {
                first_node_id: DEFAULT_FIRST_NODE_ID,
                require_register_signature: false,
                max_nodes: DEFAULT_MAX_NODES,
            },
        }
    }
}

/// A bound, not yet serving, registry.
#[derive(Debug)]
pub struct RegistryServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Config,
}

impl RegistryServer {
    /// Binds the listening socket.
    pub async fn bind(config: Config) -> io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        Ok(RegistryServer {
            listener,
            local_addr,
            config,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then drops every open connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let RegistryServer {
            listener,
            local_addr,
            config,
        } = self;
        let registry = Arc::new(Mutex::new(Registry::new(config.policy.clone())));
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        info!(%local_addr, "registry serving");

        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = Arc::clone(&slots).acquire_owned() => slot.map_err(io::Error::other)?,
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                // Reap finished connections while waiting, so the set stays small.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(error = %err, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                },
            };

            // Responses are small and strictly alternate with requests: send them at once.
            if let Err(err) = stream.set_nodelay(true) {
                warn!(%peer, error = %err, "cannot disable Nagle");
            }
            let registry = Arc::clone(&registry);
            let idle_timeout = config.idle_timeout;
            connections.spawn(
                async move {
                    connection::serve(stream, peer, registry, idle_timeout).await;
                    drop(slot);
                }
                .instrument(info_span!("connection", %peer)),
            );
        }

        info!(open = connections.len(), "registry shutting down");
        connections.shutdown().await;
        Ok(())
    }

    /// Runs the server on the current tokio runtime until the handle says stop (or is
    /// dropped).
    pub fn spawn(self) -> RegistryHandle {
        let local_addr = self.local_addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            // A dropped handle also stops the server: tests cannot leak it.
            let _ = stopped.await;
        }));
        RegistryHandle {
            local_addr,
            stop,
            task,
        }
    }
}

/// A registry running in the background; dropping it stops the server.
#[derive(Debug)]
pub struct RegistryHandle {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl RegistryHandle {
    /// The address the registry listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and waits for the server to finish.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(io::Error::other)?
    }
}
