//! Sans-IO implementation of the Pilot Protocol wire layer.
//!
//! `pilot-core` never opens a socket, reads a clock or draws randomness on its own: bytes,
//! time and an RNG are passed in, results come back as values. The same code therefore runs
//! natively, in `wasm32-unknown-unknown` (a Cloudflare Worker) and inside deterministic tests.
//!
//! The modules follow the layers of the wire specification, lowest first:
//!
//! | module | spec | what it owns |
//! |---|---|---|
//! | [`addr`] | §1 | 48-bit addresses, ports, text form |
//! | [`packet`] | §2 | the 34-byte header, CRC-32, encode/decode |
//! | [`frame`] | §3, §7 | tunnel frames PILT/PILS/PILK/PILA/PILP/PILF, beacon messages, TCP framing |
//! | [`crypto`] | §4 | X25519, Ed25519, HKDF-SHA256, AES-256-GCM, nonce layout, AAD |
//! | [`replay`] | §5 | replay window, receive epochs, fault counters and drop gates |
//! | [`keyexchange`] | §5.5, §5.6, §6, §7.1 | per-peer sessions: PILA/PILK exchange, pending queue, salvage, keepalive |
//! | [`stream`] | §8 | reliable streams: handshake, SACK, retransmission, congestion, close |
//! | [`services`] | §10 | echo, data exchange (1001), event stream (1002), trust (444): codecs and state machines |
//! | [`registry`] | §9.1–§9.5 | registry framing, JSON requests/responses, signed challenges |
//! | [`trust`] | §9.6 | port-444 trust handshake messages, receiver checks, replay cache |
//! | [`node`] | §6.8, §7, §8, §10 | the sans-IO node: frames in and out, streams, datagrams, pings, hosted services |
//! | [`time`] | | the driver's clock as seen by the engine |
//!
//! Imports point downward only: `services` and `replay` know nothing of each other, `frame`
//! uses `crypto` and `packet`, `packet` uses `addr`.
//!
//! Cargo features: `std` (default) adds `std::error::Error` impls; `getrandom` (default) adds
//! [`crypto::OsRng`], the operating system's RNG. With `--no-default-features` the crate is
//! `no_std` + `alloc` and every function that needs randomness takes the caller's RNG.
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod crypto;
pub mod frame;
pub mod keyexchange;
pub mod node;
pub mod packet;
pub mod registry;
pub mod replay;
pub mod services;
pub mod stream;
pub mod time;
pub mod trust;
