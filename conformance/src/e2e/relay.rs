//! The relay of the test world, in-process on a runtime of its own so that it can be killed
//! the way a crashed process dies: every session task is dropped at once and every socket
//! closed, without the 1012 drain a graceful shutdown sends (relay/PROTOCOL.md §5).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use pilot_relay::auth::TokenPolicy;
use pilot_relay::Config;
use tokio::sync::oneshot;
use tracing::info;

/// How long a restart keeps trying to bind the old port while the kernel releases it.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between bind attempts during a restart.
const REBIND_RETRY_INTERVAL: Duration = Duration::from_millis(50);
/// Sessions get this long to close on a graceful stop (the end of a test).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A development relay: open (no tokens), loopback destinations allowed, UDP sockets and the
/// registry connection on `ip` (spec §9.3: the registry then records `ip` as `real_addr`).
pub fn loopback_config(ip: IpAddr, registry: SocketAddr) -> anyhow::Result<Config> {
    let mut config = Config::new(TokenPolicy::Open(None));
    config.udp_bind_ip = ip;
    config.allow_dest = vec!["127.0.0.0/8".parse().context("allow-dest CIDR")?];
    config.registry = Some(registry.to_string());
    config.drain_timeout = DRAIN_TIMEOUT;
    Ok(config)
}

/// A running relay. Dropping it kills it.
#[derive(Debug)]
pub struct RelayServer {
    config: Config,
    http_addr: SocketAddr,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    kill: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl RelayServer {
    /// Starts a relay with `config` listening on `listen` (port 0 picks a free port).
    pub fn start(config: Config, listen: SocketAddr) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(listen).with_context(|| format!("binding the relay on {listen}"))?;
        let http_addr = listener.local_addr()?;
        let running = spawn(config.clone(), listener)?;
        info!(%http_addr, udp_bind_ip = %config.udp_bind_ip, "relay started");
        Ok(Self {
            config,
            http_addr,
            running: Some(running),
        })
    }

    /// The HTTP/WebSocket listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The `ws://` base URL clients connect to.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.http_addr)
    }

    /// The IP the session UDP sockets are bound to.
    pub fn udp_ip(&self) -> IpAddr {
        self.config.udp_bind_ip
    }

    /// Kills the relay: every session and registry pipe is dropped without a close frame.
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.kill.send(());
            // The thread only drops its runtime; nothing in it blocks.
            let _ = running.thread.join();
            info!(http_addr = %self.http_addr, "relay killed");
        }
    }

    /// Starts the relay again on the same address, after [`kill`](Self::kill).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
        let listener = loop {
            match TcpListener::bind(self.http_addr) {
                Ok(listener) => break listener,
                Err(err) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %err, "relay port not free yet");
                    tokio::time::sleep(REBIND_RETRY_INTERVAL).await;
                }
                Err(err) => {
                    return Err(err).context(format!("rebinding the relay on {}", self.http_addr))
                }
            }
        };
        self.running = Some(spawn(self.config.clone(), listener)?);
        info!(http_addr = %self.http_addr, "relay restarted");
        Ok(())
    }
}

impl Drop for RelayServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the relay on a thread with its own runtime until `kill` fires; then the runtime is
/// dropped, which cancels every task it spawned.
fn spawn(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("e2e-relay")
        .enable_all()
        .build()
        .context("building the relay runtime")?;
    let relay = pilot_relay::Relay::new(config).map_err(|e| anyhow!("relay config: {e}"))?;
    let (kill, killed) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("e2e-relay-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!(error = %err, "relay listener");
                        return;
                    }
                };
                let never = std::future::pending::<()>();
                tokio::select! {
                    result = relay.serve(listener, never) => {
                        if let Err(err) = result {
                            tracing::error!(error = %err, "relay stopped");
                        }
                    }
                    _ = killed => {}
                }
            });
            // Leaving block_on drops `serve`; dropping the runtime drops every session.
            drop(runtime);
        })
        .context("spawning the relay thread")?;
    Ok(Running { kill, thread })
}
