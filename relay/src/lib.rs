//! A WebSocket ↔ UDP relay for the Pilot Protocol.
//!
//! A Cloudflare Worker cannot send or receive UDP. It connects to this relay over a
//! WebSocket, proves which Ed25519 identity it holds, and gets a UDP socket of its own on the
//! relay: every binary message it sends leaves that socket as one datagram, and every datagram
//! that arrives there comes back as one binary message. Peers see an ordinary UDP endpoint.
//! The wire protocol is described in `PROTOCOL.md`, operations in `README.md`.
//!
//! The relay is safe to expose because it forwards only well-formed Pilot frames and
//! correctly directed beacon messages (spec §3.1, §7.2; [`validate`]) to public addresses
//! other than its own ([`policy`]), within per-session token buckets, connection limits and
//! write timeouts, and counts every refusal ([`metrics`]).
//!
//! The server is a library so that it can run in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), pilot_relay::ServeError> {
//! use pilot_relay::{auth::TokenPolicy, Config};
//! let config = Config::new(TokenPolicy::Open(None));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(pilot_relay::ServeError::Io)?;
//! pilot_relay::serve(config, listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod auth;
pub mod close;
pub mod config;
pub mod header;
mod limits;
pub mod metrics;
pub mod policy;
mod ratelimit;
mod registry;
mod server;
mod session;
pub mod token;
pub mod validate;

pub use config::{Config, MAX_FRAME_BYTES};
pub use server::{
    serve, Relay, ServeError, REGISTRY_PATH, REGISTRY_SUBPROTOCOL, RELAY_PATH, RELAY_SUBPROTOCOL,
};

/// Seconds since the Unix epoch by the system clock (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
