//! The Worker's configuration: `wrangler.toml` vars and secrets.

use worker::Env;

pub use crate::host_port::split_host_port;

/// Frames and registry traffic through the relay (the default).
pub const TRANSPORT_RELAY: &str = "relay";
/// Direct TCP `connect()` to peers' `tcp` endpoints and to the registry (spec §7.5).
pub const TRANSPORT_TCP: &str = "tcp";

/// Settings read from the environment of the Durable Object.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `PILOT_RELAY_URL`: `ws(s)://host:port` of the relay (no path).
    pub relay_url: Option<String>,
    /// `PILOT_RELAY_TOKEN` (secret): relay token, if the relay requires one.
    pub relay_token: Option<String>,
    /// `PILOT_TRANSPORT`: `relay` (the default) or `tcp`.
    pub transport: String,
    /// `PILOT_REGISTRY`: `host:port` of the registry, used by the `tcp` transport.
    pub registry: Option<String>,
    /// `PILOT_REGISTRY_TLS`: `true` opens the registry connection with TLS.
    pub registry_tls: bool,
    /// `PILOT_HOSTNAME`: hostname claimed at registration.
    pub hostname: Option<String>,
    /// `PILOT_PUBLIC`: `true` registers a public node (anyone may dial it; no trust gate).
    pub public: bool,
    /// `PILOT_LOG`: `error`, `warn`, `info` (default), `debug`, `trace`.
    pub log: Option<String>,
}

fn text(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Config {
    /// Reads every setting; missing ones take their defaults.
    pub fn from_env(env: &Env) -> Config {
        Config {
            relay_url: text(env, "PILOT_RELAY_URL"),
            relay_token: text(env, "PILOT_RELAY_TOKEN"),
            transport: text(env, "PILOT_TRANSPORT").unwrap_or_else(|| TRANSPORT_RELAY.into()),
            registry: text(env, "PILOT_REGISTRY"),
            registry_tls: text(env, "PILOT_REGISTRY_TLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            hostname: text(env, "PILOT_HOSTNAME"),
            public: text(env, "PILOT_PUBLIC").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            log: text(env, "PILOT_LOG"),
        }
    }
}
