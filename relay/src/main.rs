//! `pilot-relay`: runs the WebSocket ↔ UDP relay, or mints an access token.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use pilot_relay::auth::TokenPolicy;
use pilot_relay::config::{self, Config};
use pilot_relay::token::{self, TokenKey};
use std::io::IsTerminal as _;
use tracing::{error, info};

use tracing_subscriber::EnvFilter;
use zeroize::Zeroizing;

/// WebSocket ↔ UDP relay that gives each connected Pilot client (e.g. a Cloudflare Worker) a
/// real UDP endpoint. Forwards only Pilot traffic, only to public addresses.
///
/// Every flag can also be set by the environment variable shown next to it. Logging follows
/// RUST_LOG (default "info").
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a token for SUBJECT (tenant name, or a client's public key in hex),
    /// signed with the token key, valid for --ttl-secs.
    MintToken(MintArgs),
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// Token HMAC key, hex (at least 32 bytes). Prefer the environment variable or
    /// --token-key-file over the command line, where other users can see it.
    #[arg(long, env = "PILOT_RELAY_TOKEN_KEY", hide_env_values = true)]
    token_key: Option<String>,
    /// File holding the token HMAC key in hex.
    #[arg(long, env = "PILOT_RELAY_TOKEN_KEY_FILE", conflicts_with = "token_key")]
    token_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct MintArgs {
    /// Tenant name ([A-Za-z0-9_-], up to 64) or 64 hex digits of a public key (either case;
    /// written in lowercase). 64 hex digits always name an identity, never a tenant.
    #[arg(long)]
    subject: String,
    /// Validity from now, in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the HTTP/WebSocket listener.
    #[arg(long, env = "PILOT_RELAY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Local IP the per-session UDP sockets bind to.
    #[arg(long, env = "PILOT_RELAY_UDP_BIND_IP", default_value = "0.0.0.0")]
    udp_bind_ip: IpAddr,
    /// IP announced to clients as their UDP address (the relay's public IP behind NAT).
    #[arg(long, env = "PILOT_RELAY_PUBLIC_IP")]
    public_ip: Option<IpAddr>,
    /// CIDR exempt from the refusal of private/loopback/special ranges (repeatable,
    /// comma-separated in the environment variable).
    #[arg(long, env = "PILOT_RELAY_ALLOW_DEST", value_delimiter = ',')]
    allow_dest: Vec<IpNet>,
    /// Accept clients without a token (local development only). The environment variable
    /// takes 1/true/yes/on or 0/false/no/off.
    #[arg(long, env = "PILOT_RELAY_OPEN", value_parser = clap::builder::FalseyValueParser::new())]
    open: bool,
    /// Registry `host:port` that /v1/registry pipes to; the route is disabled without it.
    #[arg(long, env = "PILOT_RELAY_REGISTRY")]
    registry: Option<String>,
    /// Local IP of the connections to the registry, which records it as the Worker's
    /// real_addr IP. Default: --udp-bind-ip when that is a specific address, else the OS
    /// chooses; 0.0.0.0 forces the OS choice.
    #[arg(long, env = "PILOT_RELAY_REGISTRY_BIND_IP")]
    registry_bind_ip: Option<IpAddr>,
    /// Seconds a client has to authenticate.
    #[arg(long, env = "PILOT_RELAY_AUTH_TIMEOUT_SECS", default_value_t = config::DEFAULT_AUTH_TIMEOUT.as_secs())]
    auth_timeout_secs: u64,
    /// Seconds without a datagram either way before a session is closed.
    #[arg(long, env = "PILOT_RELAY_IDLE_TIMEOUT_SECS", default_value_t = config::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,
    /// Seconds between WebSocket pings.
    #[arg(long, env = "PILOT_RELAY_PING_INTERVAL_SECS", default_value_t = config::DEFAULT_PING_INTERVAL.as_secs())]
    ping_interval_secs: u64,
    /// Extra seconds a client has to answer a ping.
    #[arg(long, env = "PILOT_RELAY_PONG_TIMEOUT_SECS", default_value_t = config::DEFAULT_PONG_TIMEOUT.as_secs())]
    pong_timeout_secs: u64,
    /// Seconds sessions get to close after SIGTERM/Ctrl-C.
    #[arg(long, env = "PILOT_RELAY_DRAIN_TIMEOUT_SECS", default_value_t = config::DEFAULT_DRAIN_TIMEOUT.as_secs())]
    drain_timeout_secs: u64,
    /// Milliseconds one WebSocket write may wait for a client that is not reading before the
    /// connection is closed with 4012.
    #[arg(long, env = "PILOT_RELAY_WRITE_TIMEOUT_MS", default_value_t = config::DEFAULT_WRITE_TIMEOUT.as_millis() as u64)]
    write_timeout_ms: u64,
    /// Packets per second per session and direction.
    #[arg(long, env = "PILOT_RELAY_PACKETS_PER_SEC", default_value_t = config::DEFAULT_PACKETS_PER_SEC)]
    packets_per_sec: u32,
    /// Frame bytes per second per session and direction.
    #[arg(long, env = "PILOT_RELAY_BYTES_PER_SEC", default_value_t = config::DEFAULT_BYTES_PER_SEC)]
    bytes_per_sec: u64,
    /// Concurrent connections on this relay.
    #[arg(long, env = "PILOT_RELAY_MAX_SESSIONS", default_value_t = config::DEFAULT_MAX_SESSIONS)]
    max_sessions: u32,
    /// Concurrent connections per client IP.
    #[arg(long, env = "PILOT_RELAY_MAX_SESSIONS_PER_IP", default_value_t = config::DEFAULT_MAX_SESSIONS_PER_IP)]
    max_sessions_per_ip: u32,
    /// Concurrent sessions per client identity.
    #[arg(long, env = "PILOT_RELAY_MAX_SESSIONS_PER_IDENTITY", default_value_t = config::DEFAULT_MAX_SESSIONS_PER_IDENTITY)]
    max_sessions_per_identity: u32,
    /// WebSocket read/write buffer per connection, bytes.
    #[arg(long, env = "PILOT_RELAY_WS_BUFFER_BYTES", default_value_t = config::DEFAULT_WS_BUFFER_BYTES)]
    ws_buffer_bytes: usize,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, env = "PILOT_RELAY_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    key: KeyArgs,
}

/// A start-up failure, printed before exiting with status 2.
#[derive(Debug)]
struct StartError(String);

fn load_key(args: &KeyArgs) -> Result<Option<TokenKey>, StartError> {
    let hex_text = match (&args.token_key, &args.token_key_file) {
        (Some(text), _) => Zeroizing::new(text.clone()),
        (None, Some(path)) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| StartError(format!("reading {}: {e}", path.display())))?,
        ),
        (None, None) => return Ok(None),
    };
    let bytes =
        hex::decode(hex_text.trim()).map_err(|_| StartError("token key must be hex".to_owned()))?;
    TokenKey::new(bytes)
        .map(Some)
        .map_err(|e| StartError(e.to_string()))
}

fn build_config(args: &RunArgs) -> Result<Config, StartError> {
    let key = load_key(&args.key)?;
    let tokens = match (args.open, key) {
        (true, key) => TokenPolicy::Open(key),
        (false, Some(key)) => TokenPolicy::Required(key),
        (false, None) => {
            return Err(StartError(
                "a token key is required (PILOT_RELAY_TOKEN_KEY or --token-key-file); \
                 use --open only for local development"
                    .to_owned(),
            ))
        }
    };
    let mut config = Config::new(tokens);
    config.udp_bind_ip = args.udp_bind_ip;
    config.public_ip = args.public_ip;
    config.allow_dest = args.allow_dest.clone();
    config.registry = args.registry.clone();
    config.registry_bind_ip = args.registry_bind_ip;
    config.auth_timeout = Duration::from_secs(args.auth_timeout_secs);
    config.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    config.ping_interval = Duration::from_secs(args.ping_interval_secs.max(1));
    config.pong_timeout = Duration::from_secs(args.pong_timeout_secs);
    config.drain_timeout = Duration::from_secs(args.drain_timeout_secs);
    config.write_timeout = Duration::from_millis(args.write_timeout_ms.max(1));
    config.packets_per_sec = args.packets_per_sec;
    config.bytes_per_sec = args.bytes_per_sec;
    config.max_sessions = args.max_sessions;
    config.max_sessions_per_ip = args.max_sessions_per_ip;
    config.max_sessions_per_identity = args.max_sessions_per_identity;
    config.ws_buffer_bytes = args.ws_buffer_bytes;
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received"),
        () = term => info!("SIGTERM received"),
    }
}

fn run(args: &RunArgs) -> Result<(), StartError> {
    let config = build_config(args)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .build()
        .map_err(|e| StartError(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| StartError(format!("binding {}: {e}", args.listen)))?;
        let local = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        info!(
            listen = %local,
            udp_bind_ip = %config.udp_bind_ip,
            public_ip = ?config.public_ip,
            open = matches!(config.tokens, TokenPolicy::Open(_)),
            registry = ?config.registry,
            registry_source_ip = ?config.registry_source_ip(),
            "pilot-relay listening"
        );
        pilot_relay::serve(config, listener, shutdown_signal())
            .await
            .map_err(|e| StartError(e.to_string()))
    })
}

fn mint(args: &MintArgs) -> Result<(), StartError> {
    let key = load_key(&args.key)?.ok_or_else(|| StartError("no token key given".to_owned()))?;
    let expiry = pilot_relay::unix_now().saturating_add(args.ttl_secs);
    let token = token::mint(&key, &args.subject, expiry).map_err(|e| StartError(e.to_string()))?;
    println!("{token}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match &cli.command {
        Some(Command::MintToken(args)) => mint(args),
        None => run(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError(msg)) => {
            error!("{msg}");
            eprintln!("pilot-relay: {msg}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tokens_are_required_unless_open() {
        let args = Cli::parse_from(["pilot-relay"]).run;
        assert!(build_config(&args).is_err());
        let args = Cli::parse_from([
            "pilot-relay",
            "--open",
            "--allow-dest",
            "127.0.0.0/8,::1/128",
        ])
        .run;
        let config = build_config(&args).map_err(|e| e.0);
        assert!(matches!(config, Ok(ref c) if c.allow_dest.len() == 2));
        let key = "ab".repeat(32);
        let args = Cli::parse_from(["pilot-relay", "--token-key", key.as_str()]).run;
        assert!(matches!(
            build_config(&args).map(|c| c.tokens),
            Ok(TokenPolicy::Required(_))
        ));
    }
}
