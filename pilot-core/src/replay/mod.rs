//! Replay protection for PILS (spec §5): window, receive epochs, fault counters, drop gates.
//!
//! | file | spec | what it owns |
//! |---|---|---|
//! | `window` | §5.1 | [`ReplayWindow`]: 256-counter sliding window of one epoch |
//! | `epochs` | §5.4 | [`ReceiveEpochs`]: one window per sender nonce prefix, LRU, retirement |
//! | `gates` | §5.3 | [`FaultCounters`] and the drop-gate predicates |
//! | `receive` | §5.2–§5.4 | [`ReceiveState`]: all of the above for one session |
//!
//! An engine keeps one [`ReceiveState`] per installed session and makes one of two calls per
//! received PILS frame: [`ReceiveState::on_authenticated`] when the AEAD open succeeded (the
//! PILS decoder hands it an [`AuthenticatedNonce`]), [`ReceiveState::on_auth_failure`] when it
//! failed. Authentication comes first (spec §5.2, V-NEW).
//!
//! What the types enforce, precisely: [`ReceiveState`] and [`ReceiveEpochs`] move only on an
//! [`AuthenticatedNonce`], which only the PILS open path can create, so through them nothing
//! unauthenticated reaches a window. Neither is `Clone`, so their state cannot be snapshotted
//! and restored to accept a frame twice. [`ReplayWindow`] is the raw §5.1 building block: it
//! takes plain counters and trusts its caller to feed only authenticated ones (it stays
//! public, and `Clone`, for tests and the conformance runner, which drive it directly).
//! Nothing binds a nonce to the session key it was opened with; see [`AuthenticatedNonce`].
//!
//! Deliberate differences from the Go reference, each pinned by a test:
//! * counter 0 is rejected ([`Reject::ZeroCounter`]) instead of being accepted as "first"
//!   again and again (vector case "counter 0 first", a `reference_quirk`);
//! * an AEAD failure moves no window (V-NEW), unlike V-FEB/V-FORK/V-MID whose forged counter
//!   pins `max` (vector case "forged high counter poisons the window");
//! * `MaxRecvEpochs` is UNCONFIRMED (spec §13.1): we use [`MAX_RECV_EPOCHS`] = 64.
//!
//! Choices where the spec leaves room (receiver-local policy, invisible to Go peers):
//! * `DecryptFailCount` is reset by every *accepted* frame, in any epoch, rather than by every
//!   frame that decrypts: a captured genuine frame replayed by an attacker authenticates but
//!   must not hold off the decrypt drop gate.
//! * An older epoch counts as "used" for LRU eviction only when it accepts a frame, for the
//!   same reason.
//! * Retired prefixes are never forgotten; the set is bounded by [`MAX_RECV_EPOCHS`] (at most
//!   59 entries) because only begun epochs can be evicted.
//! * Rejections of counter 0, of stale epochs and of retired epochs feed no drop gate.
//! * The replay gate has no aged fast drop (V-NEW drops an aged session on its first replay):
//!   networks duplicate datagrams, and with epochs a replay cannot wedge a session; see
//!   [`AGED_FAST_DROP_AGE`].

mod epochs;
mod gates;
mod receive;
mod window;

pub use epochs::{EpochVerdict, ReceiveEpochs, MAX_RECV_EPOCHS, RETAINED_RECV_EPOCHS};
pub use gates::{
    decrypt_gate_fires, replay_gate_fires, window_gate_fires, DropReason, FaultCounters,
    GateVerdict, AGED_FAST_DROP_AGE, DECRYPT_FAIL_DROP_COUNT, DECRYPT_FAIL_MIN_AGE,
    OUTSIDE_WINDOW_DROP_COUNT, REPLAY_DROP_COUNT, WINDOW_FAULT_MIN_AGE,
};
pub use receive::{ReceiveState, RecvVerdict};
pub use window::{Accept, Reject, ReplayWindow, Verdict, REPLAY_WINDOW_COUNTERS};

/// The nonce of a PILS frame whose AEAD tag has been verified.
///
/// Only the PILS open path in this crate can create one, so replay state can only ever be
/// moved by authenticated frames (spec §5.2: authenticate before the window).
///
/// It is not bound to the session key that authenticated it: it proves the frame opened
/// under *some* key, not under the key of the session whose [`ReceiveState`] it is fed to.
/// Feeding one session's nonce to another session's state is a caller bug; an engine keeps
/// each session's key and receive state together and feeds the nonce straight from that
/// key's open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedNonce {
    prefix: [u8; 4],
    counter: u64,
}

impl AuthenticatedNonce {
    /// Wraps a nonce after its frame authenticated. Crate-private on purpose.
    pub(crate) fn new(prefix: [u8; 4], counter: u64) -> Self {
        Self { prefix, counter }
    }

    /// The sender's 4-byte nonce prefix: identifies its send epoch (spec §5.4).
    pub fn prefix(&self) -> [u8; 4] {
        self.prefix
    }

    /// The send counter (spec §4.3).
    pub fn counter(&self) -> u64 {
        self.counter
    }
}
