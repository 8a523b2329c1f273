//! Receive epochs (spec §5.4, V-NEW): one replay window per sender nonce prefix.
//!
//! A peer that re-derives its session object without changing its X25519 key keeps the AES
//! key but draws a new 4-byte nonce prefix and restarts its counter at 1 (spec §4.3). Keying
//! windows by prefix lets that restart through without looking like a replay, while late
//! frames of the previous epoch are still judged against their own window.

use alloc::vec::Vec;

use super::window::{Accept, ReplayWindow, Verdict};
use super::AuthenticatedNonce;
use crate::time::Instant;

/// Older epochs whose windows are kept besides the newest one (spec §5.4
/// `RetainedRecvEpochs`); the least recently used is retired when a fifth would be kept.
pub const RETAINED_RECV_EPOCHS: usize = 4;

/// Epochs one session may begin in total, counting the first; one more drops the session.
///
/// Spec §5.4/§13.1: `MaxRecvEpochs` exists in V-NEW but its value is UNCONFIRMED. Our choice:
/// a peer only begins an epoch when it re-derives its session without a new X25519 key, a
/// handful of times in a session's life; 64 leaves ample room for that and bounds the
/// retired set (below) to 59 four-byte prefixes.
pub const MAX_RECV_EPOCHS: usize = 64;

/// Bound on retired prefixes. Only an eviction retires a prefix, and every evicted epoch was
/// begun, so the retired set can never exceed this; it is never pruned, so a retired prefix
/// stays rejected for the whole session.
const RETIRED_RECV_EPOCHS_MAX: usize = MAX_RECV_EPOCHS - 1 - RETAINED_RECV_EPOCHS;

/// One send epoch of the peer, as seen by the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Epoch {
    prefix: [u8; 4],
    window: ReplayWindow,
    /// When its first authenticated frame arrived.
    started_at: Instant,
}

impl Epoch {
    fn begin(nonce: AuthenticatedNonce, now: Instant) -> Self {
        let mut window = ReplayWindow::new();
        let _first = window.check_and_record(nonce.counter());
        Self {
            prefix: nonce.prefix(),
            window,
            started_at: now,
        }
    }
}

/// Where an authenticated frame landed, before any drop gate is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EpochVerdict {
    /// Judged in the newest epoch's window (the session's very first frame is
    /// `Newest(Accept(First))`).
    Newest(Verdict),
    /// A never-seen prefix began a new epoch, which is now the newest; the frame is accepted.
    NewEpoch,
    /// Judged in a retained older epoch's own window; the newest window was not touched.
    Older(Verdict),
    /// The prefix belongs to a retired (evicted) epoch: rejected forever.
    Retired,
    /// A never-seen prefix, but the session already began [`MAX_RECV_EPOCHS`] epochs.
    Exhausted,
    /// Counter 0, rejected before any epoch lookup so it can neither begin nor touch an epoch
    /// (see [`Reject::ZeroCounter`](super::Reject::ZeroCounter)).
    ZeroCounter,
}

/// The replay windows of one session, keyed by the sender's nonce prefix (spec §5.4).
///
/// Holds the newest epoch, up to [`RETAINED_RECV_EPOCHS`] older ones in least-recently-used
/// order, and the prefixes of retired epochs. Only [`AuthenticatedNonce`]s reach it, so a
/// forged frame can neither begin an epoch nor move a window (spec §5.2).
///
/// Deliberately not `Clone`: a copy taken before a frame and restored after it would accept
/// that frame again.
///
/// ```compile_fail
/// // Receive epochs cannot be snapshotted.
/// let epochs = pilot_core::replay::ReceiveEpochs::new();
/// let _snapshot = epochs.clone();
/// ```
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReceiveEpochs {
    newest: Option<Epoch>,
    /// Retained older epochs, least recently used first.
    older: Vec<Epoch>,
    /// Prefixes of evicted epochs; at most `RETIRED_RECV_EPOCHS_MAX`.
    retired: Vec<[u8; 4]>,
    /// Epochs begun in this session, at most [`MAX_RECV_EPOCHS`].
    begun: usize,
}

impl ReceiveEpochs {
    /// No epoch yet: the first authenticated frame will fix the newest prefix.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges an authenticated frame in its epoch's window and records it when accepted.
    ///
    /// `now` is the arrival time; it becomes the start of a new epoch.
    pub fn judge(&mut self, nonce: AuthenticatedNonce, now: Instant) -> EpochVerdict {
        if nonce.counter() == 0 {
            return EpochVerdict::ZeroCounter;
        }

        let prefix = nonce.prefix();
        let Some(newest) = self.newest.as_mut() else {
            self.newest = Some(Epoch::begin(nonce, now));
            self.begun = 1;
            return EpochVerdict::Newest(Verdict::Accept(Accept::First));
        };
        if newest.prefix == prefix {
            return EpochVerdict::Newest(newest.window.check_and_record(nonce.counter()));
        }

        if let Some(verdict) = self.judge_older(nonce) {
            return EpochVerdict::Older(verdict);
        }
        if self.retired.contains(&prefix) {
            return EpochVerdict::Retired;
        }
        self.begin_epoch(nonce, now)
    }

    /// Judges a frame of a retained older epoch; `None` if the prefix is not retained.
    fn judge_older(&mut self, nonce: AuthenticatedNonce) -> Option<Verdict> {
        let index = self.older.iter().position(|e| e.prefix == nonce.prefix())?;
        let epoch = self.older.get_mut(index)?;
        let verdict = epoch.window.check_and_record(nonce.counter());
        if verdict.is_accept() {
            // Only an accepted frame counts as use: replays of captured frames must not keep
            // a dead epoch alive.
            let epoch = self.older.remove(index);
            self.older.push(epoch);
        }
        Some(verdict)
    }

    /// Makes a never-seen prefix the newest epoch, keeping the previous newest as an older one.
    fn begin_epoch(&mut self, nonce: AuthenticatedNonce, now: Instant) -> EpochVerdict {
        if self.begun >= MAX_RECV_EPOCHS {
            return EpochVerdict::Exhausted;
        }
        self.begun += 1;

        let previous = self.newest.replace(Epoch::begin(nonce, now));
        if let Some(previous) = previous {
            self.older.push(previous);
        }
        if self.older.len() > RETAINED_RECV_EPOCHS {
            let evicted = self.older.remove(0);
            // The bound holds by construction (see RETIRED_RECV_EPOCHS_MAX); the check keeps
            // memory bounded even if the constants are ever changed inconsistently.
            if self.retired.len() < RETIRED_RECV_EPOCHS_MAX {
                self.retired.push(evicted.prefix);
            }
        }
        EpochVerdict::NewEpoch
    }

    /// The newest epoch's prefix, once a frame arrived.
    pub fn newest_prefix(&self) -> Option<[u8; 4]> {
        self.newest.as_ref().map(|e| e.prefix)
    }

    /// When the newest epoch began, once a frame arrived.
    pub fn newest_started_at(&self) -> Option<Instant> {
        self.newest.as_ref().map(|e| e.started_at)
    }

    /// The newest epoch's window, once a frame arrived.
    pub fn newest_window(&self) -> Option<&ReplayWindow> {
        self.newest.as_ref().map(|e| &e.window)
    }

    /// The window of `prefix` if it is the newest or a retained older epoch.
    pub fn window(&self, prefix: [u8; 4]) -> Option<&ReplayWindow> {
        self.newest
            .iter()
            .chain(self.older.iter())
            .find(|e| e.prefix == prefix)
            .map(|e| &e.window)
    }

    /// Number of retained older epochs (at most [`RETAINED_RECV_EPOCHS`]).
    pub fn older_count(&self) -> usize {
        self.older.len()
    }

    /// Number of retired prefixes.
    pub fn retired_count(&self) -> usize {
        self.retired.len()
    }

    /// Whether `prefix` belongs to a retired epoch.
    pub fn is_retired(&self, prefix: [u8; 4]) -> bool {
        self.retired.contains(&prefix)
    }

    /// Epochs begun in this session (at most [`MAX_RECV_EPOCHS`]).
    pub fn begun_count(&self) -> usize {
        self.begun
    }
}

/// Test-only copy, to compare state before and after a call. The type is deliberately not
/// `Clone`: outside tests a snapshot could be restored to accept a frame twice.
#[cfg(test)]
impl ReceiveEpochs {
    pub(crate) fn snapshot(&self) -> Self {
        Self {
            newest: self.newest.clone(),
            older: self.older.clone(),
            retired: self.retired.clone(),
            begun: self.begun,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::replay::window::Reject;

    const A: [u8; 4] = *b"AAAA";
    const B: [u8; 4] = *b"BBBB";

    fn n(prefix: [u8; 4], counter: u64) -> AuthenticatedNonce {
        AuthenticatedNonce::new(prefix, counter)
    }

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1_000)
    }

    fn prefix(i: usize) -> [u8; 4] {
        u32::try_from(i).unwrap().to_be_bytes()
    }

    #[test]
    fn first_frame_fixes_the_newest_prefix() {
        let mut epochs = ReceiveEpochs::new();
        assert_eq!(
            epochs.judge(n(A, 9), at(1)),
            EpochVerdict::Newest(Verdict::Accept(Accept::First))
        );
        assert_eq!(epochs.newest_prefix(), Some(A));
        assert_eq!(epochs.newest_started_at(), Some(at(1)));
        assert_eq!(epochs.begun_count(), 1);
    }

    #[test]
    fn peer_new_epoch_restarts_receive_window() {
        let mut epochs = ReceiveEpochs::new();
        for c in 1..=500 {
            epochs.judge(n(A, c), at(1));
        }
        // Counter 1 under a new prefix is behind the old window, yet it is a new epoch.
        assert_eq!(epochs.judge(n(B, 1), at(2)), EpochVerdict::NewEpoch);
        assert_eq!(epochs.newest_prefix(), Some(B));
        assert_eq!(epochs.newest_started_at(), Some(at(2)));
        assert_eq!(epochs.newest_window().map(ReplayWindow::max), Some(1));
        assert_eq!(
            epochs.judge(n(B, 2), at(2)),
            EpochVerdict::Newest(Verdict::Accept(Accept::NewMax))
        );
    }

    #[test]
    fn earlier_epoch_frames_use_their_own_window() {
        let mut epochs = ReceiveEpochs::new();
        epochs.judge(n(A, 1), at(1));
        epochs.judge(n(A, 3), at(1));
        epochs.judge(n(B, 1), at(2));
        let newest_before = epochs.newest_window().cloned();

        assert_eq!(
            epochs.judge(n(A, 2), at(3)),
            EpochVerdict::Older(Verdict::Accept(Accept::InWindow))
        );
        assert_eq!(
            epochs.judge(n(A, 2), at(3)),
            EpochVerdict::Older(Verdict::Reject(Reject::Replay))
        );
        assert_eq!(
            epochs.judge(n(A, 1000), at(3)),
            EpochVerdict::Older(Verdict::Accept(Accept::NewMax))
        );
        assert_eq!(epochs.newest_window().cloned(), newest_before);
        assert_eq!(epochs.newest_prefix(), Some(B));
        assert_eq!(epochs.window(A).map(ReplayWindow::max), Some(1000));
        assert_eq!(epochs.window(*b"CCCC"), None);
    }

    #[test]
    fn least_recently_used_older_epoch_is_retired() {
        let mut epochs = ReceiveEpochs::new();
        // Epochs 0..=4: 0..=3 are older, 4 is newest.
        for i in 0..=4 {
            epochs.judge(n(prefix(i), 1), at(1));
        }
        assert_eq!(epochs.older_count(), RETAINED_RECV_EPOCHS);
        // Using epoch 0 makes epoch 1 the least recently used.
        epochs.judge(n(prefix(0), 2), at(2));
        assert_eq!(epochs.judge(n(prefix(5), 1), at(3)), EpochVerdict::NewEpoch);

        assert!(epochs.is_retired(prefix(1)));
        assert!(!epochs.is_retired(prefix(0)));
        assert_eq!(epochs.judge(n(prefix(1), 2), at(4)), EpochVerdict::Retired);
        assert!(matches!(
            epochs.judge(n(prefix(0), 3), at(4)),
            EpochVerdict::Older(Verdict::Accept(_))
        ));
    }

    #[test]
    fn rejected_frames_do_not_refresh_an_older_epoch() {
        let mut epochs = ReceiveEpochs::new();
        for i in 0..=4 {
            epochs.judge(n(prefix(i), 1), at(1));
        }
        // A replayed frame of epoch 0 is rejected and must leave it least recently used.
        assert_eq!(
            epochs.judge(n(prefix(0), 1), at(2)),
            EpochVerdict::Older(Verdict::Reject(Reject::Replay))
        );
        epochs.judge(n(prefix(5), 1), at(3));
        assert!(epochs.is_retired(prefix(0)));
    }

    #[test]
    fn forgotten_epoch_cannot_lock_out_the_live_epoch() {
        let mut epochs = ReceiveEpochs::new();
        for i in 0..=5 {
            epochs.judge(n(prefix(i), 1), at(1));
        }
        assert_eq!(
            epochs.judge(n(prefix(0), 5_000), at(2)),
            EpochVerdict::Retired
        );
        assert_eq!(epochs.newest_prefix(), Some(prefix(5)));
        assert_eq!(
            epochs.judge(n(prefix(5), 2), at(2)),
            EpochVerdict::Newest(Verdict::Accept(Accept::NewMax))
        );
    }

    #[test]
    fn epoch_limit_refuses_a_new_epoch_without_recording_it() {
        let mut epochs = ReceiveEpochs::new();
        for i in 0..MAX_RECV_EPOCHS {
            let verdict = epochs.judge(n(prefix(i), 1), at(1));
            assert!(verdict != EpochVerdict::Exhausted, "epoch {i}");
        }
        assert_eq!(epochs.begun_count(), MAX_RECV_EPOCHS);
        assert_eq!(epochs.retired_count(), RETIRED_RECV_EPOCHS_MAX);

        let before = epochs.snapshot();
        assert_eq!(
            epochs.judge(n(prefix(MAX_RECV_EPOCHS), 1), at(2)),
            EpochVerdict::Exhausted
        );
        assert_eq!(epochs, before);
        // Known epochs still work.
        assert!(matches!(
            epochs.judge(n(prefix(MAX_RECV_EPOCHS - 1), 2), at(2)),
            EpochVerdict::Newest(Verdict::Accept(_))
        ));
    }

    #[test]
    fn counter_zero_never_begins_an_epoch() {
        let mut epochs = ReceiveEpochs::new();
        assert_eq!(epochs.judge(n(A, 0), at(1)), EpochVerdict::ZeroCounter);
        assert_eq!(epochs, ReceiveEpochs::new());
        epochs.judge(n(A, 1), at(1));
        assert_eq!(epochs.judge(n(B, 0), at(1)), EpochVerdict::ZeroCounter);
        assert_eq!(epochs.begun_count(), 1);
    }
}
