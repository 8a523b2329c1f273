//! Everything a relay instance is told at start-up. Nothing else is read at run time and
//! nothing is persisted.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::auth::TokenPolicy;

/// Largest frame (one UDP payload) the relay forwards, in bytes.
pub const MAX_FRAME_BYTES: usize = 65_535;
/// Largest UDP payload over IPv4: 65,535 minus the 20-byte IPv4 and 8-byte UDP headers.
pub const MAX_UDP_PAYLOAD_V4_BYTES: usize = 65_507;
/// Largest UDP payload over IPv6 without jumbograms: the 16-bit payload length (65,535)
/// minus the 8-byte UDP header.
pub const MAX_UDP_PAYLOAD_V6_BYTES: usize = 65_527;
/// Default time a client has from the upgrade to a valid auth reply.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time without a datagram in either direction before a session is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default interval between WebSocket pings from the relay.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default extra time a client has to show life after a ping.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest wait for one WebSocket write (send or flush) before the client is taken
/// to have stopped reading.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time sessions get to close after a shutdown signal.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed to connect to the registry.
pub const DEFAULT_REGISTRY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default packet budget per session and direction.
pub const DEFAULT_PACKETS_PER_SEC: u32 = 2_000;
/// Default byte budget per session and direction (4 MiB/s).
pub const DEFAULT_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;
/// Default limit of concurrent connections (sessions and registry pipes) on the relay.
pub const DEFAULT_MAX_SESSIONS: u32 = 10_000;
/// Default limit of concurrent connections per client IP. Generous because many Workers
/// share a few egress addresses of their platform.
pub const DEFAULT_MAX_SESSIONS_PER_IP: u32 = 256;
/// Default limit of concurrent sessions per Ed25519 identity.
pub const DEFAULT_MAX_SESSIONS_PER_IDENTITY: u32 = 4;
/// Default WebSocket read and write buffer size per connection, in bytes.
pub const DEFAULT_WS_BUFFER_BYTES: usize = 8 * 1024;
/// Default largest WebSocket message on `/v1/registry`, in bytes.
pub const DEFAULT_REGISTRY_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Configuration of one relay instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Local IP the per-session UDP sockets bind to (port 0: the OS picks one per session).
    pub udp_bind_ip: IpAddr,
    /// IP announced to clients as their session's address; the bound IP if `None`.
    pub public_ip: Option<IpAddr>,
    /// CIDRs exempt from the special-range refusal (see [`crate::policy`]).
    pub allow_dest: Vec<IpNet>,
    /// Whether a token is required, and the key that verifies tokens.
    pub tokens: TokenPolicy,
    /// `host:port` of the registry that `/v1/registry` pipes to; the route is off if `None`.
    pub registry: Option<String>,
    /// Local IP the registry connections bind to; `None` follows a specific `udp_bind_ip`
    /// (see [`Config::registry_source_ip`]).
    pub registry_bind_ip: Option<IpAddr>,
    /// Time from upgrade to a valid auth reply.
    pub auth_timeout: Duration,
    /// Time without a datagram in either direction before a session is closed.
    pub idle_timeout: Duration,
    /// Interval between WebSocket pings.
    pub ping_interval: Duration,
    /// Extra time after a ping interval in which the client must have sent anything.
    pub pong_timeout: Duration,
    /// Time sessions get to close after shutdown before the relay stops waiting.
    pub drain_timeout: Duration,
    /// Longest wait for one WebSocket write (or registry write); a client that does not read
    /// for this long is closed with [`crate::close::WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// Time allowed to connect to the registry.
    pub registry_connect_timeout: Duration,
    /// Packets per second per session and direction (also the burst).
    pub packets_per_sec: u32,
    /// Frame bytes per second per session and direction (also the burst).
    pub bytes_per_sec: u64,
    /// Concurrent connections on the relay.
    pub max_sessions: u32,
    /// Concurrent connections per client IP.
    pub max_sessions_per_ip: u32,
    /// Concurrent sessions per identity.
    pub max_sessions_per_identity: u32,
    /// WebSocket read/write buffer size per connection.
    pub ws_buffer_bytes: usize,
    /// Largest WebSocket message on `/v1/registry`.
    pub registry_max_message_bytes: usize,
}

impl Config {
    /// A configuration with the given token policy and every other setting at its default:
    /// UDP on `0.0.0.0`, no allow-list, no registry.
    pub fn new(tokens: TokenPolicy) -> Self {
        Self {
            udp_bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_ip: None,
            allow_dest: Vec::new(),
            tokens,
            registry: None,
            registry_bind_ip: None,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            registry_connect_timeout: DEFAULT_REGISTRY_CONNECT_TIMEOUT,
            packets_per_sec: DEFAULT_PACKETS_PER_SEC,
            bytes_per_sec: DEFAULT_BYTES_PER_SEC,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_ip: DEFAULT_MAX_SESSIONS_PER_IP,
            max_sessions_per_identity: DEFAULT_MAX_SESSIONS_PER_IDENTITY,
            ws_buffer_bytes: DEFAULT_WS_BUFFER_BYTES,
            registry_max_message_bytes: DEFAULT_REGISTRY_MAX_MESSAGE_BYTES,
        }
    }

    /// The source IP of connections to the registry, or `None` to let the OS choose.
    ///
    /// The registry records the connection's IP as a node's `real_addr` (spec §9.3), so it
    /// must be the IP the session sockets answer on: `registry_bind_ip` if set, else a
    /// specific `udp_bind_ip`. An unspecified address (`0.0.0.0`, `::`) means the OS picks
    /// by route, which is right when the relay has a single egress address.
    pub fn registry_source_ip(&self) -> Option<IpAddr> {
        let ip = self.registry_bind_ip.unwrap_or(self.udp_bind_ip);
        (!ip.is_unspecified()).then_some(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(udp_bind_ip: &str, registry_bind_ip: Option<&str>) -> Config {
        let mut config = Config::new(TokenPolicy::Open(None));
        config.udp_bind_ip = udp_bind_ip.parse().unwrap_or(config.udp_bind_ip);
        config.registry_bind_ip = registry_bind_ip.and_then(|ip| ip.parse().ok());
        config
    }

    #[test]
    fn registry_source_follows_a_specific_udp_bind_ip() {
        let ip = config("127.0.0.2", None).registry_source_ip();
        assert_eq!(ip, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    }

    #[test]
    fn registry_source_is_left_to_the_os_for_a_wildcard_udp_bind_ip() {
        assert_eq!(config("0.0.0.0", None).registry_source_ip(), None);
        assert_eq!(config("::", None).registry_source_ip(), None);
    }

    #[test]
    fn explicit_registry_bind_ip_wins() {
        let ip = config("127.0.0.2", Some("127.0.0.3")).registry_source_ip();
        assert_eq!(ip, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
        assert_eq!(
            config("127.0.0.2", Some("0.0.0.0")).registry_source_ip(),
            None
        );
    }
}
