//! A Cloudflare Worker that is a Pilot peer.
//!
//! The `PilotNode` Durable Object (one per identity, `idFromName`) drives pilot-core's
//! sans-IO [`Node`](pilot_core::node::Node) the way the native peer does, on the Workers
//! runtime: frames travel through the project's relay (a WebSocket per session that owns a
//! real UDP socket) or over direct TCP to peers, registry requests through the relay's
//! registry pipe or a direct TCP connection, timers are
//! `setTimeout` while the node runs and a Durable Object alarm (every 60 s) wakes it for
//! heartbeats and reconnects. Applications use it through the HTTP API of `API.md`, with
//! [`PilotClient`](client::PilotClient) from Rust Workers.
//!
//! Layout: the modules that are plain logic (`api`, `relay_wire`, `backoff`, `token`,
//! `notify`, `host_port`) build and are tested on every target; the Worker itself
//! (`node_object`, `byte_link`, `transport`, `registry_pipe`, `client`, `entry`) exists only
//! for `wasm32`.

extern crate alloc;

pub mod api;
pub mod backoff;
pub mod host_port;
pub mod notify;
pub mod relay_wire;
pub mod token;

#[cfg(target_arch = "wasm32")]
pub mod byte_link;
#[cfg(target_arch = "wasm32")]
pub mod client;
#[cfg(target_arch = "wasm32")]
mod entry;
#[cfg(target_arch = "wasm32")]
mod log;
// `#[durable_object]` generates the JS-facing constructor and handlers without docs.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
mod node_object;
#[cfg(target_arch = "wasm32")]
mod registry_pipe;
#[cfg(target_arch = "wasm32")]
pub mod transport;

#[cfg(target_arch = "wasm32")]
pub use node_object::PilotNode;
