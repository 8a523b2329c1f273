//! `pilot-peer`: a native Pilot peer (spec §4–§10) driving pilot-core's `Node` over UDP, with
//! a registry client. `run` serves; `info`, `ping`, `connect`, `send-message`, `send-file`,
//! `subscribe` and `publish` start a short-lived node of their own, act, print the outcome and exit. See
//! conformance/README.md.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use conformance::peer::{ack_line, Peer, PeerConfig};
use pilot_core::addr::Addr;
use pilot_core::services::dataexchange::FrameType;
use pilot_core::services::exchange_server::ExchangeReply;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Native Pilot peer: registers with a registry and speaks the tunnel protocol over UDP.
///
/// Logs go to stderr; results to stdout (one line, or one JSON object with --json).
#[derive(Debug, Parser)]
#[command(name = "pilot-peer", version)]
struct Cli {
    /// Registry address (TCP).
    #[arg(long, env = "PILOT_PEER_REGISTRY", default_value = "127.0.0.1:9000")]
    registry: SocketAddr,

    /// UDP address to bind and register; port 0 picks a free port.
    #[arg(long, env = "PILOT_PEER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Identity file: `{"version":1,"seed":"<base64 Ed25519 seed>"}`, created with mode
    /// 0600 when missing. Without it a throwaway identity is used and deleted on exit.
    #[arg(long, env = "PILOT_PEER_IDENTITY")]
    identity: Option<PathBuf>,

    /// Public node (spec §6.8): anyone may resolve it and open streams (no trust gate).
    #[arg(long, env = "PILOT_PEER_PUBLIC")]
    public: bool,

    /// Seconds between registry heartbeats (spec §9.5: 60).
    #[arg(long, env = "PILOT_PEER_HEARTBEAT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_secs: u64,

    /// Print results as JSON.
    #[arg(long, env = "PILOT_PEER_JSON")]
    json: bool,

    /// Give up on a one-shot command after this many seconds.
    #[arg(long, env = "PILOT_PEER_TIMEOUT_SECS", default_value_t = 10)]
    timeout_secs: u64,

    /// Log filter (tracing-subscriber EnvFilter syntax, e.g. `debug`).
    #[arg(long, env = "PILOT_PEER_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Register and serve echo (7), data exchange (1001), event stream (1002) and trust
    /// (444) until Ctrl-C or SIGTERM.
    Run,
    /// Register and print this node's address, UDP endpoint and public key, then exit.
    Info,
    /// Ping a node and print the round-trip time.
    Ping {
        /// The node, e.g. `0:0000.0000.0005`.
        addr: Addr,
    },
    /// Open a stream to a port, send a message and print what comes back (echo on port 7).
    Connect {
        /// The node.
        addr: Addr,
        /// Its port.
        port: u16,
        /// The text to send.
        #[arg(long)]
        message: String,
    },
    /// Send one data exchange frame to port 1001 and print the ACK line.
    SendMessage {
        /// The node.
        addr: Addr,
        /// The payload.
        #[arg(long)]
        data: String,
        /// The frame type.
        #[arg(long = "type", value_enum, default_value_t = MessageType::Text)]
        message_type: MessageType,
    },
    /// Send a file as one FILE frame to port 1001 and print the ACK line.
    SendFile {
        /// The node.
        addr: Addr,
        /// The file; only its base name is sent.
        path: PathBuf,
    },
    /// Subscribe to a topic (`*` for all) at a node's event stream broker (port 1002) and
    /// print each event as `<topic> <payload>` until Ctrl-C or `--count` events.
    Subscribe {
        /// The node.
        addr: Addr,
        /// The topic.
        topic: String,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Publish one event on a topic at a node's event stream broker (port 1002).
    Publish {
        /// The node.
        addr: Addr,
        /// The topic.
        topic: String,
        /// The payload.
        #[arg(long)]
        data: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MessageType {
    Text,
    Json,
    Binary,
}

impl From<MessageType> for FrameType {
    fn from(value: MessageType) -> Self {
        match value {
            MessageType::Text => FrameType::Text,
            MessageType::Json => FrameType::Json,
            MessageType::Binary => FrameType::Binary,
        }
    }
}

/// An identity file deleted on drop (for runs without `--identity`).
struct Throwaway(PathBuf);

impl Drop for Throwaway {
    fn drop(&mut self) {
        // NotFound: the command failed before the peer created the file.
        if let Err(err) = std::fs::remove_file(&self.0).or_else(|err| {
            (err.kind() == std::io::ErrorKind::NotFound)
                .then_some(())
                .ok_or(err)
        }) {
            warn!(path = %self.0.display(), %err, "cannot remove throwaway identity");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).context("invalid --log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let (identity, _throwaway) = match &cli.identity {
        Some(path) => (path.clone(), None),
        None => {
            let path = std::env::temp_dir().join(format!(
                "pilot-peer-{}-{}.json",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            (path.clone(), Some(Throwaway(path)))
        }
    };
    let config = PeerConfig {
        registry: cli.registry,
        listen: cli.listen,
        identity,
        public: cli.public,
        // A throwaway identity is never seen again: free its registry record.
        deregister_on_shutdown: _throwaway.is_some(),
        heartbeat_interval: Duration::from_secs(cli.heartbeat_secs),
    };
    // Read the file first: a missing file should not cost a registration.
    let mut file = match &cli.command {
        Cmd::SendFile { path, .. } => {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .with_context(|| format!("{} names no file", path.display()))?;
            let data =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some((name, data))
        }
        _ => None,
    };
    let peer = Peer::start(config)
        .await
        .with_context(|| format!("cannot start a peer with registry {}", cli.registry))?;
    let timeout = Duration::from_secs(cli.timeout_secs);

    // An async block, so that a failed command still shuts the peer down (and deregisters).
    let result = async {
        match &cli.command {
        Cmd::Run => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"address": peer.addr().to_string(), "udp": peer.udp_addr().to_string()})
                );
            } else {
                println!("pilot-peer {} on udp {}", peer.addr(), peer.udp_addr());
            }
            conformance::shutdown_signal().await;
            Ok(())
        }
        Cmd::Info => {
            let key = pilot_core::registry::PublicKey(peer.public_key()).to_base64();
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "address": peer.addr().to_string(),
                        "udp": peer.udp_addr().to_string(),
                        "public_key": key,
                        "public": peer.is_public(),
                    })
                );
            } else {
                println!("address    {}", peer.addr());
                println!("udp        {}", peer.udp_addr());
                println!("public key {key}");
                println!("public     {}", peer.is_public());
            }
            Ok(())
        }
        Cmd::Ping { addr } => {
            let rtt = with_timeout(timeout, peer.ping(*addr)).await?;
            let ms = rtt.as_secs_f64() * 1000.0;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"peer": addr.to_string(), "rtt_ms": ms})
                );
            } else {
                println!("pong from {addr} in {ms:.3} ms");
            }
            Ok(())
        }
        Cmd::Connect {
            addr,
            port,
            message,
        } => {
            let reply = with_timeout(
                timeout,
                peer.exchange(*addr, *port, message.as_bytes().to_vec()),
            )
            .await?;
            let text = String::from_utf8_lossy(&reply);
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"peer": addr.to_string(), "port": port, "reply": text})
                );
            } else {
                println!("{text}");
            }
            Ok(())
        }
        Cmd::SendMessage {
            addr,
            data,
            message_type,
        } => {
            let reply = with_timeout(
                timeout,
                peer.send_message(*addr, (*message_type).into(), data.as_bytes().to_vec()),
            )
            .await?;
            print_ack(cli.json, *addr, &reply);
            match reply {
                ExchangeReply::Acked { .. } => Ok(()),
                ExchangeReply::Failed { .. } => {
                    Err(anyhow::anyhow!("the peer refused the message"))
                }
            }
        }
        Cmd::SendFile { addr, .. } => {
            let (name, data) = file.take().context("the file was read before starting")?;
            let reply = with_timeout(timeout, peer.send_file(*addr, name, data)).await?;
            print_ack(cli.json, *addr, &reply);
            match reply {
                ExchangeReply::Acked { .. } => Ok(()),
                ExchangeReply::Failed { .. } => Err(anyhow::anyhow!("the peer refused the file")),
            }
        }
        Cmd::Subscribe { addr, topic, count } => {
            let mut subscription =
                with_timeout(timeout, peer.subscribe(*addr, topic.as_bytes().to_vec())).await?;
            let mut seen = 0u64;
            let shutdown = conformance::shutdown_signal();
            tokio::pin!(shutdown);
            loop {
                if count.is_some_and(|count| seen >= count) {
                    break Ok(());
                }
                tokio::select! {
                    event = subscription.next() => match event {
                        Some((topic, payload)) => {
                            seen += 1;
                            let topic = String::from_utf8_lossy(&topic);
                            let payload = String::from_utf8_lossy(&payload);
                            if cli.json {
                                println!("{}", serde_json::json!({"topic": topic, "payload": payload}));
                            } else {
                                println!("{topic} {payload}");
                            }
                        }
                        None => break Err(anyhow::anyhow!("the subscription stream ended")),
                    },
                    () = &mut shutdown => break Ok(()),
                }
            }
        }
        Cmd::Publish { addr, topic, data } => {
            with_timeout(
                timeout,
                peer.publish(*addr, topic.as_bytes().to_vec(), data.as_bytes().to_vec()),
            )
            .await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"peer": addr.to_string(), "topic": topic, "published": true})
                );
            } else {
                println!("published on {topic} at {addr}");
            }
            Ok(())
        }
        }
    }
    .await;
    peer.shutdown().await?;
    info!("stopped");
    result
}

fn print_ack(json: bool, addr: Addr, reply: &ExchangeReply) {
    if json {
        let (ok, frame_type) = match reply {
            ExchangeReply::Acked { frame_type, .. } => (true, frame_type),
            ExchangeReply::Failed { frame_type, .. } => (false, frame_type),
        };
        println!(
            "{}",
            serde_json::json!({
                "peer": addr.to_string(),
                "ok": ok,
                "type": frame_type.to_string(),
                "reply": ack_line(reply),
            })
        );
    } else {
        println!("{}", ack_line(reply));
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = Result<T, conformance::peer::PeerError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, op).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("no answer within {} s", timeout.as_secs()),
    }
}
