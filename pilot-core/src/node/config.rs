//! Node settings and the limits behind them (spec §8.3, §6.8, §10).

use crate::services::broker::BrokerConfig;
use crate::services::echo::EchoConfig;
use crate::services::exchange_server::ExchangeConfig;
use crate::services::trust_service::TrustConfig;
use crate::stream;

/// Default bound on open connections of one node (all ports together, spec §8.3).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Connections per local port (spec §8.3: 1024 in the Go daemons).
pub const DEFAULT_MAX_CONNECTIONS_PER_PORT: usize = 1024;
/// Handshakes not yet completed per listening port: the accept queue (spec §8.3: 64).
pub const DEFAULT_ACCEPT_BACKLOG: usize = 64;

/// Settings of a [`Node`](super::Node). `NodeConfig::default()` gives the spec values with
/// every built-in service on, as the Go daemons run them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Private node (spec §6.8, default): SYNs and datagrams from nodes outside the trust
    /// set are dropped silently. Port 444 is exempt, or no one could ever ask for trust.
    pub private: bool,
    /// Settings of every stream connection.
    pub stream: stream::Config,
    /// Most connections open at once; a SYN beyond it is answered with RST.
    pub max_connections: usize,
    /// Most connections per local port; a SYN beyond it is answered with RST.
    pub max_connections_per_port: usize,
    /// Most connections per listening port still in the handshake; further SYNs get RST.
    pub accept_backlog: usize,
    /// Split outgoing frames longer than 1223 bytes into PILF fragments (spec §3.8). Off by
    /// default: with MSS 1024 no frame needs it, and V-FEB peers do not reassemble.
    pub fragment_large_frames: bool,
    /// Host echo on port 7 (spec §10.1).
    pub echo: Option<EchoConfig>,
    /// Host the data exchange server on port 1001 (spec §10.3).
    pub data_exchange: Option<ExchangeConfig>,
    /// Host the event stream broker on port 1002 (spec §10.4).
    pub event_stream: Option<BrokerConfig>,
    /// Host the trust handshake on port 444 (spec §9.6).
    pub trust: Option<TrustConfig>,
    /// Unix time, in seconds, at the driver's `Instant::ZERO`: trust messages carry wall-clock
    /// timestamps (spec §9.6), the engine only a monotonic clock.
    pub unix_secs_at_zero: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            private: true,
            stream: stream::Config::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_port: DEFAULT_MAX_CONNECTIONS_PER_PORT,
            accept_backlog: DEFAULT_ACCEPT_BACKLOG,
            fragment_large_frames: false,
            echo: Some(EchoConfig::default()),
            data_exchange: Some(ExchangeConfig::default()),
            event_stream: Some(BrokerConfig::default()),
            trust: Some(TrustConfig::default()),
            unix_secs_at_zero: 0,
        }
    }
}
