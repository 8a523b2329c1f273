//! Reliable streams (spec §8) as a sans-IO state machine.
//!
//! A [`Connection`] is one stream between a local and a remote port. It never touches a
//! socket or a clock: the node layer hands it the [`Segment`]s it demultiplexed (by local
//! port, remote address and remote port, §8.1) together with the current
//! [`Instant`](crate::time::Instant), and maps the segments it produces to Stream packets
//! (§2.1: flags, seq, ack, window, payload).
//!
//! Driving it is one loop: make a change (a received segment, an expired timer, a write),
//! then drain [`Connection::poll_transmit`] and [`Connection::poll_event`], then sleep until
//! [`Connection::poll_timeout`].
//!
//! ```
//! use pilot_core::stream::{Config, Connection, StreamEvent};
//! use pilot_core::time::Instant;
//!
//! let now = Instant::ZERO;
//! let mut dialer = Connection::connect(now, Config::default());
//! let syn = dialer.poll_transmit(now).expect("SYN");
//! let mut responder = Connection::accept(now, Config::default(), &syn.as_borrowed());
//!
//! dialer.write(b"hello").unwrap();
//! // Shuttle segments both ways until both sides are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(seg) = responder.poll_transmit(now) {
//!         dialer.handle_segment(now, seg.as_borrowed());
//!         moved = true;
//!     }
//!     while let Some(seg) = dialer.poll_transmit(now) {
//!         responder.handle_segment(now, seg.as_borrowed());
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(dialer.poll_event(), Some(StreamEvent::Connected));
//!
//! let mut buf = [0u8; 16];
//! let n = responder.read(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//! // Nothing is due before the delayed ACK or keepalive timers.
//! assert!(responder.poll_timeout().is_some());
//! ```
//!
//! The folder is the design: [`seq`] (serial arithmetic), [`sack`] (SACK payload codec),
//! `segment` (flags and fields), `config` (settings and protocol constants), `rtt` (RFC 6298
//! estimator), `congestion` (window and recovery), `send`/`recv` (bounded buffers and the
//! retransmission queue), [`timer`] (the timer table), and `connection`, the state machine
//! that ties them together: its `receive`, `transmit` and `timers` files are the three ways
//! its state changes.
//!
//! Choices where the Go versions differ (spec §8, §11): ISN 0; SYN retransmission as V-NEW
//! (250 ms doubling to 8 s, 7 retries); MSS 1024 and 512 receive slots as V-FORK; window 0
//! is a real zero window (V-NEW), so we never advertise 0 unless full, and the window of a
//! FIN is not trusted (V-FORK sends 0 there); SACK keeps the four highest blocks (V-NEW) and
//! SACKed bytes do not count as in flight; no half-close (all Go versions): the peer's FIN
//! ends our writing too, after what was already written. Probes (keepalive, zero window) are
//! empty ACKs one sequence number behind, which a Rust peer answers and a Go peer ignores
//! like any empty ACK. Data whose first bytes would parse as SACK is sent with the 4 magic
//! bytes in a segment of their own, so no receiver swallows it (§8.5).
//!
//! Loss recovery: fast retransmit on the third duplicate pure ACK (spec §8.7) with RFC 3042
//! limited transmit, SACK-driven hole marking, RACK-style time-based detection (which also
//! catches lost retransmissions) and NewReno's recovery point and partial-ACK rule.
//!
//! Limitations: no tail-loss probe, so a loss at the end of a flight waits for the RTO (at
//! 10 % loss and 35 ms RTT a 10 MiB transfer takes about 260 simulated seconds); the receive
//! queue drops an in-order segment at once when full instead of waiting 1 s as V-FORK does;
//! no HyStart; connection limits, port policy and TIME_WAIT reuse rules belong to the node.

mod config;
mod congestion;
mod connection;
mod error;
mod recv;
mod rtt;
pub mod sack;
mod segment;
mod send;
pub mod seq;
pub mod timer;

pub use config::*;
pub use congestion::{INITIAL_SSTHRESH_BYTES, INITIAL_WINDOW_SEGMENTS, MAX_CWND_BYTES};
pub use connection::{Connection, State, Stats, StreamEvent, INITIAL_SEQUENCE};
pub use error::StreamError;
pub use rtt::{INITIAL_RTO, MAX_RTO, MIN_RTO};
pub use segment::{Flags, Segment};
