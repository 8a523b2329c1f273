//! The Worker's configuration: `wrangler.toml` vars and secrets.

use worker::Env;

/// The only transport implemented (README, Limitations).
pub const TRANSPORT_RELAY: &str = "relay";

/// Settings read from the environment of the Durable Object.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `PILOT_RELAY_URL`: `ws(s)://host:port` of the relay (no path).
    pub relay_url: Option<String>,
    /// `PILOT_RELAY_TOKEN` (secret): relay token, if the relay requires one.
    pub relay_token: Option<String>,
    /// `PILOT_TRANSPORT`: `relay` (the default and the only one implemented).
    pub transport: String,
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
            hostname: text(env, "PILOT_HOSTNAME"),
            public: text(env, "PILOT_PUBLIC").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            log: text(env, "PILOT_LOG"),
        }
    }
}
