//! `pilot-peer`: a native Pilot peer (spec §4–§10) driving pilot-core's `Node` over UDP (and
//! TCP, spec §7.5), with a registry client. `run` serves and listens on a control socket;
//! `handshake`, `pending`, `approve`, `reject` and `trusted` act on the running daemon through
//! that socket; `info`, `ping`, `connect`, `send-message`, `send-file`, `send-datagram`,
//! `subscribe` and `publish` start a short-lived node of their own, act, print the outcome and
//! exit. See conformance/README.md.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use conformance::peer::{
    ack_line, control_call, ensure_control_free, serve_control, ControlRequest, Peer, PeerConfig,
    PeerError, ReceivedDatagram, ReceivedMessage, Transport,
};
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

    /// Also accept tunnel frames over TCP here (`u32 BE length ‖ frame`, spec §7.5) and
    /// advertise this address as a `tcp` endpoint in the registry.
    #[arg(long, env = "PILOT_PEER_TCP_LISTEN")]
    tcp_listen: Option<SocketAddr>,

    /// How to reach nodes this peer contacts: `udp`, or `tcp` (their advertised TCP endpoint,
    /// UDP when they advertise none).
    #[arg(long, env = "PILOT_PEER_TRANSPORT", value_enum, default_value_t = TransportArg::Udp)]
    transport: TransportArg,

    /// Close a TCP connection that delivers no complete frame for this many seconds, so idle
    /// or trickling clients cannot hold every connection slot.
    #[arg(long, env = "PILOT_PEER_TCP_IDLE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    tcp_idle_secs: u64,

    /// Trust every authenticated node that asks (for demos; off by default).
    #[arg(long, env = "PILOT_PEER_AUTO_APPROVE")]
    auto_approve: bool,

    /// Seconds between fetches of the registry's trust inbox (relayed handshakes, spec
    /// §9.6); every second while our own relayed requests await answers.
    #[arg(long, env = "PILOT_PEER_TRUST_POLL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    trust_poll_secs: u64,

    /// Control socket of a `run` daemon (Unix socket, mode 0600), used by `handshake`,
    /// `pending`, `approve`, `reject` and `trusted`. Default: the identity file's path with
    /// `.sock` appended.
    #[arg(long, env = "PILOT_PEER_CONTROL")]
    control: Option<PathBuf>,

    /// Trust store: the nodes this peer trusts, kept across restarts (JSON, mode 0600).
    /// Default: the identity file's path with `.trust.json` appended; none without
    /// `--identity`.
    #[arg(long, env = "PILOT_PEER_TRUST_STORE")]
    trust_store: Option<PathBuf>,

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
    /// (444) until Ctrl-C or SIGTERM. Prints one line per received message and datagram.
    Run {
        /// Also receive datagrams on this port (repeatable) and print them.
        #[arg(long = "datagram-port")]
        datagram_ports: Vec<u16>,
    },
    /// Ask a node for trust, through the running daemon: direct over port 444 when it can
    /// be reached, else relayed through the registry.
    Handshake {
        /// The node.
        addr: Addr,
        /// Why (shown to the node's operator).
        #[arg(long, default_value = "")]
        justification: String,
    },
    /// List the trust requests the running daemon holds for a decision.
    Pending,
    /// Approve a node's pending trust request at the running daemon.
    Approve {
        /// The requester's node ID.
        node: u32,
    },
    /// Decline a node's pending trust request at the running daemon.
    Reject {
        /// The requester's node ID.
        node: u32,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List the nodes the running daemon trusts.
    Trusted,
    /// Send one datagram to a node's port (spec §8.11).
    SendDatagram {
        /// The node.
        addr: Addr,
        /// Its port.
        port: u16,
        /// The payload.
        #[arg(long)]
        data: String,
    },
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
enum TransportArg {
    Udp,
    Tcp,
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

    if let Some(request) = control_request(&cli.command) {
        return run_control(&cli, &request).await;
    }

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
        trust_poll_interval: Duration::from_secs(cli.trust_poll_secs),
        auto_approve: cli.auto_approve,
        tcp_listen: cli.tcp_listen,
        tcp_idle_timeout: Duration::from_secs(cli.tcp_idle_secs),
        transport: match cli.transport {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
        },
        trust_store: cli.trust_store.clone().or_else(|| {
            cli.identity
                .as_ref()
                .map(|id| with_suffix(id, ".trust.json"))
        }),
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
    if let (Cmd::Run { .. }, Some(path)) = (&cli.command, control_path(&cli)) {
        ensure_control_free(&path).await?;
    }
    let peer = Peer::start(config).await.context("cannot start the peer")?;
    if let Cmd::Run { datagram_ports } = &cli.command {
        return serve(&cli, peer, datagram_ports).await;
    }
    let timeout = Duration::from_secs(cli.timeout_secs);

    // An async block, so that a failed command still shuts the peer down (and deregisters).
    let result = async {
        match &cli.command {
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
        Cmd::SendDatagram { addr, port, data } => {
            // A datagram to a node we have no tunnel with waits for the key exchange; this
            // process would exit before that and lose it. A ping first brings the tunnel up.
            with_timeout(timeout, peer.ping(*addr))
                .await
                .with_context(|| format!("cannot open a tunnel to {addr}"))?;
            with_timeout(
                timeout,
                peer.send_datagram(*addr, *port, data.as_bytes().to_vec()),
            )
            .await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"peer": addr.to_string(), "port": port, "sent": data.len()})
                );
            } else {
                println!("sent {} bytes to {addr}:{port}", data.len());
            }
            Ok(())
        }
        Cmd::Run { .. }
        | Cmd::Handshake { .. }
        | Cmd::Pending
        | Cmd::Approve { .. }
        | Cmd::Reject { .. }
        | Cmd::Trusted => unreachable_command(),
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

/// Commands handled before a peer is started; never reached in the one-shot match.
fn unreachable_command() -> anyhow::Result<()> {
    bail!("internal error: command dispatched to the wrong handler")
}

/// The control request of a command that acts on a running daemon.
fn control_request(command: &Cmd) -> Option<ControlRequest> {
    Some(match command {
        Cmd::Handshake {
            addr,
            justification,
        } => ControlRequest::Handshake {
            addr: addr.to_string(),
            justification: justification.clone(),
        },
        Cmd::Pending => ControlRequest::Pending,
        Cmd::Approve { node } => ControlRequest::Approve { node: *node },
        Cmd::Reject { node, reason } => ControlRequest::Reject {
            node: *node,
            reason: reason.clone(),
        },
        Cmd::Trusted => ControlRequest::Trusted,
        _ => return None,
    })
}

/// `--control`, else the identity file's path with `.sock` appended.
fn control_path(cli: &Cli) -> Option<PathBuf> {
    cli.control
        .clone()
        .or_else(|| cli.identity.as_ref().map(|id| with_suffix(id, ".sock")))
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

async fn run_control(cli: &Cli, request: &ControlRequest) -> anyhow::Result<()> {
    let path = control_path(cli).context(
        "this command talks to a running `pilot-peer run`: give its --identity or --control",
    )?;
    let answer = control_call(&path, request).await?;
    if cli.json {
        println!("{answer}");
        return Ok(());
    }
    match request {
        ControlRequest::Handshake { addr, .. } => {
            let path = field(&answer, "path").as_str().unwrap_or("?");
            println!("trust requested from {addr} ({path})");
        }
        ControlRequest::Pending => {
            let pending = field(&answer, "pending")
                .as_array()
                .cloned()
                .unwrap_or_default();
            if pending.is_empty() {
                println!("no pending trust requests");
            }
            for p in pending {
                println!(
                    "{} node {} ({}) {:?}",
                    field(&p, "address").as_str().unwrap_or("?"),
                    field(&p, "node"),
                    field(&p, "path").as_str().unwrap_or("?"),
                    field(&p, "justification").as_str().unwrap_or("")
                );
            }
        }
        ControlRequest::Approve { node } => println!("approved node {node}"),
        ControlRequest::Reject { node, .. } => println!("rejected node {node}"),
        ControlRequest::Trusted => {
            let trusted = field(&answer, "trusted")
                .as_array()
                .cloned()
                .unwrap_or_default();
            let list: Vec<String> = trusted.iter().map(ToString::to_string).collect();
            println!("trusted: {}", list.join(" "));
        }
    }
    Ok(())
}

/// `run`: serve the control socket, print received messages and datagrams until a signal.
async fn serve(cli: &Cli, peer: Peer, datagram_ports: &[u16]) -> anyhow::Result<()> {
    // Before announcing the address: a SIGTERM right after it must find the handler in place.
    let shutdown = conformance::shutdown_signal();
    let peer = Arc::new(peer);
    let control = match control_path(cli) {
        Some(path) => Some(serve_control(&path, Arc::clone(&peer)).await?),
        None => None,
    };
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "address": peer.addr().to_string(),
                "udp": peer.udp_addr().to_string(),
                "tcp": peer.tcp_addr().map(|a| a.to_string()),
                "control": control.as_ref().map(|c| c.path().display().to_string()),
            })
        );
    } else {
        let tcp = peer
            .tcp_addr()
            .map(|a| format!(" tcp {a}"))
            .unwrap_or_default();
        println!("pilot-peer {} on udp {}{tcp}", peer.addr(), peer.udp_addr());
        if let Some(control) = &control {
            println!("control socket {}", control.path().display());
        }
    }
    let mut printers = tokio::task::JoinSet::new();
    for &port in datagram_ports {
        peer.listen_datagrams(port).await?;
        let (peer, json) = (Arc::clone(&peer), cli.json);
        printers.spawn(async move {
            loop {
                match peer.next_datagram(port, PRINT_POLL).await {
                    Ok(datagram) => print_datagram(json, port, &datagram),
                    Err(PeerError::Timeout(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }
    {
        let (peer, json) = (Arc::clone(&peer), cli.json);
        printers.spawn(async move {
            loop {
                match peer.next_message(PRINT_POLL).await {
                    Ok(message) => print_message(json, &message),
                    Err(PeerError::Timeout(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }
    shutdown.await;
    printers.shutdown().await;
    drop(control);
    peer.stop().await?;
    info!("stopped");
    Ok(())
}

/// How long the printers wait per call before checking again (they end with the peer).
const PRINT_POLL: Duration = Duration::from_secs(1);

/// `text` with control characters escaped (`\n`, `\u{1b}`, …): payloads and file names come
/// from remote peers, and raw escape sequences or newlines could forge output lines or drive
/// the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_message(json: bool, message: &ReceivedMessage) {
    let text = String::from_utf8_lossy(&message.payload);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "kind": "message",
                "from": message.from.to_string(),
                "type": message.frame_type.to_string(),
                "filename": message.filename,
                "bytes": message.payload.len(),
                "payload": text,
            })
        );
    } else {
        let name = message
            .filename
            .as_deref()
            .map(|n| format!(" {}", printable(n)))
            .unwrap_or_default();
        println!(
            "message from {} {}{name} ({} bytes): {}",
            message.from,
            message.frame_type,
            message.payload.len(),
            printable(&text)
        );
    }
}

fn print_datagram(json: bool, port: u16, datagram: &ReceivedDatagram) {
    let text = String::from_utf8_lossy(&datagram.payload);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "kind": "datagram",
                "from": datagram.from.to_string(),
                "src_port": datagram.src_port,
                "port": port,
                "bytes": datagram.payload.len(),
                "payload": text,
            })
        );
    } else {
        println!(
            "datagram from {}:{} to port {port} ({} bytes): {}",
            datagram.from,
            datagram.src_port,
            datagram.payload.len(),
            printable(&text)
        );
    }
}

/// A field of a control answer, `null` when missing.
fn field<'a>(value: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    value.get(name).unwrap_or(&serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn remote_text_cannot_forge_lines_or_drive_the_terminal() {
        let hostile = "hi\nmessage from 0:0000.0000.0004 TEXT (2 bytes): ok\u{1b}[2J\r\u{7}";
        let shown = printable(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "hi\\nmessage from 0:0000.0000.0004 TEXT (2 bytes): ok\\u{1b}[2J\\r\\u{7}"
        );
        assert_eq!(printable("héllo wörld ✓"), "héllo wörld ✓");
    }
}
