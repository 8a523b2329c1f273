//! pilot-core's step functions for JavaScript: a wasm-bindgen module for Cloudflare Workers
//! and Node >= 20.
//!
//! Every function is a pure step over bytes, time and (where keys or nonce prefixes are
//! drawn) the platform CSPRNG: nothing here opens a socket or reads a clock. Time comes in
//! as milliseconds on any monotonic clock the caller picks.
//!
//! | module | JS surface | spec |
//! |---|---|---|
//! | `addr` | `parseAddr`, `formatAddr`, `encodeAddr`, `decodeAddr`, socket variants | §1 |
//! | `packet` | `encodePacket`, `decodePacket` | §2 |
//! | `frame` | `classifyFrame`, PILK, `decodePila`/`verifyPila`, relay envelope, TCP framing | §3, §7 |
//! | `fragment` | `Fragmenter`, `Reassembler` (PILF) | §3.8 |
//! | `keys` | `Identity`, `TunnelKey`, `verifySignature` | §4.1 |
//! | `session` | `buildPila`, `handlePila`, `Session` (PILS seal/open + replay verdict) | §3.3–§5 |
//! | `services` | data exchange and event stream codecs | §10 |
//! | `node` | `Node`: the whole sans-IO engine (peers, streams, datagrams, services) | §6–§10 |
//!
//! Errors reach JavaScript as `Error` objects named `PilotError` with a stable `code`
//! ([`error::PilotError`]).
#![no_std]

extern crate alloc;

pub mod addr;
pub mod error;
pub mod fragment;
pub mod frame;
pub mod keys;
pub mod node;
pub mod packet;
pub mod services;
pub mod session;

mod js;
mod rng;

use wasm_bindgen::prelude::*;

/// The package version (this crate's), for logs.
#[wasm_bindgen]
pub fn version() -> alloc::string::String {
    env!("CARGO_PKG_VERSION").into()
}
