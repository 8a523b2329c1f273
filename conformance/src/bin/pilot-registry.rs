//! `pilot-registry`: a local, in-memory Pilot registry (spec §9) for tests and the demo.
//! Not a production registry; see conformance/README.md.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use conformance::registry_server::{
    Config, Policy, RegistryServer, DEFAULT_FIRST_NODE_ID, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_NODES,
};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Local in-memory Pilot registry (JSON protocol, spec §9) for tests and demos.
///
/// NOT a production registry: state lives in memory only and is lost on exit.
/// Prints `pilot-registry listening on <ip:port>` on stdout once bound.
#[derive(Debug, Parser)]
#[command(name = "pilot-registry", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "PILOT_REGISTRY_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,

    /// Close a connection after this many seconds without a request.
    #[arg(long, env = "PILOT_REGISTRY_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    idle_timeout_secs: u64,

    /// Refuse `register` requests without the proof-of-possession signature
    /// (by default a signature is checked when present).
    #[arg(long, env = "PILOT_REGISTRY_REQUIRE_REGISTER_SIGNATURE")]
    require_register_signature: bool,

    /// Node ID given to the first registered key; later keys count up from it.
    #[arg(long, env = "PILOT_REGISTRY_FIRST_NODE_ID", default_value_t = DEFAULT_FIRST_NODE_ID)]
    first_node_id: u32,

    /// Connections served at once.
    #[arg(long, env = "PILOT_REGISTRY_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Nodes held at once.
    #[arg(long, env = "PILOT_REGISTRY_MAX_NODES", default_value_t = DEFAULT_MAX_NODES)]
    max_nodes: usize,

    /// Log filter (tracing-subscriber EnvFilter syntax, e.g. `debug` or
    /// `conformance=debug`).
    #[arg(long, env = "PILOT_REGISTRY_LOG", default_value = "info")]
    log: String,
}

impl Cli {
    fn config(&self) -> Config {
        Config {
            listen: self.listen,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            policy: Policy {
                first_node_id: self.first_node_id,
                require_register_signature: self.require_register_signature,
                max_nodes: self.max_nodes,
            },
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
        // Colour codes only for a human at a terminal, not in captured test or CI logs.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let server = RegistryServer::bind(cli.config())
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;

    // Before the line below: a SIGTERM right after it must find the handler in place.
    let shutdown = conformance::shutdown_signal();
    // Scripts and tests read the bound address (useful with port 0) from this line.
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "pilot-registry listening on {}",
        server.local_addr()
    )?;
    stdout.flush()?;
    drop(stdout);

    server.run(shutdown).await?;
    info!("stopped");
    Ok(())
}
