//! Fault counters and drop gates (spec §5.3): when a session has stopped working, drop it so
//! the key-exchange layer can build a new one.

use core::fmt;
use core::time::Duration;

/// Consecutive AEAD failures after which the decrypt drop gate may fire (spec §5.3).
pub const DECRYPT_FAIL_DROP_COUNT: u32 = 5;

/// The decrypt drop gate never fires before the newest epoch is this old (spec §5.3).
pub const DECRYPT_FAIL_MIN_AGE: Duration = Duration::from_secs(3);

/// Consecutive outside-window rejections after which the outside-window gate may fire.
pub const OUTSIDE_WINDOW_DROP_COUNT: u32 = 5;

/// Consecutive replay rejections after which the replay gate may fire.
pub const REPLAY_DROP_COUNT: u32 = 5;

/// The outside-window and replay gates never fire by count before the newest epoch is this
/// old (spec §5.3; older releases used 30 events and 3 s).
pub const WINDOW_FAULT_MIN_AGE: Duration = Duration::from_secs(1);

/// From this epoch age on, the first outside-window rejection drops the session ("aged fast
/// drop", spec §5.3).
///
/// V-NEW applies the same rule to replays; we do not. An in-window duplicate of an
/// authenticated frame is what a network that duplicates datagrams produces, so on a session
/// older than a minute every duplicate would tear the session down and lose the frames in
/// flight. With receive epochs (spec §5.4) a peer that restarts its counter does so under a
/// new prefix, so replays cannot wedge a session; a real fault still trips the count gate
/// (five consecutive replays with nothing accepted in between). Replay state is receiver-local
/// (spec §5 preamble), so this leniency is invisible to the peer.
pub const AGED_FAST_DROP_AGE: Duration = Duration::from_secs(60);

/// Why a drop gate fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Too many consecutive AEAD failures: the peer most likely uses another key.
    DecryptFailures,
    /// Authenticated frames keep arriving below the window: the peer's counter went back.
    OutsideWindow,
    /// Authenticated frames keep repeating: the peer restarted its counter in this epoch.
    Replay,
    /// A new send epoch arrived after the session had begun [`MAX_RECV_EPOCHS`].
    ///
    /// [`MAX_RECV_EPOCHS`]: super::MAX_RECV_EPOCHS
    EpochsExhausted,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::DecryptFailures => "drop gate: repeated AEAD failures",
            DropReason::OutsideWindow => "drop gate: repeated frames outside the replay window",
            DropReason::Replay => "drop gate: repeated replayed frames",
            DropReason::EpochsExhausted => "drop gate: too many receive epochs",
        })
    }
}

/// What a drop gate says after a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateVerdict {
    /// Keep the session.
    Keep,
    /// Delete the session and start a key exchange (spec §5.3, §6.5).
    Drop(DropReason),
}

/// The decrypt drop gate: `count` consecutive AEAD failures at drop-gate age `age`.
pub fn decrypt_gate_fires(count: u32, age: Duration) -> bool {
    count >= DECRYPT_FAIL_DROP_COUNT && age >= DECRYPT_FAIL_MIN_AGE
}

/// The outside-window drop gate: `count` consecutive rejections at drop-gate age `age`, with
/// `threshold` the count that fires it before the epoch is aged.
pub fn window_gate_fires(count: u32, threshold: u32, age: Duration) -> bool {
    if age >= AGED_FAST_DROP_AGE {
        // spec §5.3: on an aged epoch a genuine peer never falls behind its own window, so
        // the first such authenticated frame is proof enough.
        return count >= 1;
    }
    count >= threshold && age >= WINDOW_FAULT_MIN_AGE
}

/// The replay drop gate: `count` consecutive in-window duplicates at drop-gate age `age`.
/// Unlike [`window_gate_fires`] it has no aged fast drop (see [`AGED_FAST_DROP_AGE`]).
pub fn replay_gate_fires(count: u32, age: Duration) -> bool {
    count >= REPLAY_DROP_COUNT && age >= WINDOW_FAULT_MIN_AGE
}

/// The three consecutive-fault counters of one session (spec §5.3).
///
/// Each counts one kind of fault and is never fed by another kind. A frame accepted in the
/// newest epoch clears all three; one accepted in an older epoch clears only the decrypt
/// failures (V-NEW: window faults are cleared only by the newest epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounters {
    decrypt_fail: u32,
    outside_window: u32,
    replay: u32,
}

impl FaultCounters {
    /// Consecutive AEAD failures (`DecryptFailCount`).
    pub fn decrypt_fail_count(&self) -> u32 {
        self.decrypt_fail
    }

    /// Consecutive authenticated frames below the newest window (`OutsideWindowCount`).
    pub fn outside_window_count(&self) -> u32 {
        self.outside_window
    }

    /// Consecutive authenticated duplicates in the newest window (`ReplayCount`).
    pub fn replay_count(&self) -> u32 {
        self.replay
    }

    /// Counts an AEAD failure and asks the decrypt drop gate.
    pub(crate) fn on_decrypt_failure(&mut self, age: Duration) -> GateVerdict {
        self.decrypt_fail = self.decrypt_fail.saturating_add(1);
        if decrypt_gate_fires(self.decrypt_fail, age) {
            GateVerdict::Drop(DropReason::DecryptFailures)
        } else {
            GateVerdict::Keep
        }
    }

    /// Counts an outside-window rejection in the newest epoch and asks its gate.
    pub(crate) fn on_outside_window(&mut self, age: Duration) -> GateVerdict {
        self.outside_window = self.outside_window.saturating_add(1);
        if window_gate_fires(self.outside_window, OUTSIDE_WINDOW_DROP_COUNT, age) {
            GateVerdict::Drop(DropReason::OutsideWindow)
        } else {
            GateVerdict::Keep
        }
    }

    /// Counts a replay rejection in the newest epoch and asks its gate: count and grace only,
    /// never the aged fast drop (see [`AGED_FAST_DROP_AGE`]).
    pub(crate) fn on_replay(&mut self, age: Duration) -> GateVerdict {
        self.replay = self.replay.saturating_add(1);
        if replay_gate_fires(self.replay, age) {
            GateVerdict::Drop(DropReason::Replay)
        } else {
            GateVerdict::Keep
        }
    }

    /// A frame was accepted in some epoch: the key works, so AEAD failures are not consecutive.
    pub(crate) fn on_accepted(&mut self) {
        self.decrypt_fail = 0;
    }

    /// A frame was accepted in the newest epoch: the window is healthy again.
    pub(crate) fn on_accepted_in_newest(&mut self) {
        self.decrypt_fail = 0;
        self.outside_window = 0;
        self.replay = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn decrypt_gate_needs_count_and_age() {
        assert!(!decrypt_gate_fires(4, Duration::from_secs(3600)));
        assert!(!decrypt_gate_fires(5, Duration::from_millis(2_999)));
        assert!(decrypt_gate_fires(5, Duration::from_secs(3)));
    }

    #[test]
    fn decrypt_gate_has_no_aged_fast_drop() {
        // Anyone can send a junk PILS; one must never tear down an aged session.
        assert!(!decrypt_gate_fires(1, AGED_FAST_DROP_AGE * 10));
    }

    #[test]
    fn window_gate_needs_threshold_and_grace() {
        assert!(!window_gate_fires(4, REPLAY_DROP_COUNT, 30 * SECOND));
        assert!(!window_gate_fires(
            5,
            REPLAY_DROP_COUNT,
            Duration::from_millis(999)
        ));
        assert!(window_gate_fires(5, REPLAY_DROP_COUNT, SECOND));
    }

    #[test]
    fn aged_epoch_drops_on_first_window_fault() {
        assert!(!window_gate_fires(
            1,
            OUTSIDE_WINDOW_DROP_COUNT,
            AGED_FAST_DROP_AGE - SECOND
        ));
        assert!(window_gate_fires(
            1,
            OUTSIDE_WINDOW_DROP_COUNT,
            AGED_FAST_DROP_AGE
        ));
        assert!(!window_gate_fires(
            0,
            OUTSIDE_WINDOW_DROP_COUNT,
            AGED_FAST_DROP_AGE
        ));
    }

    #[test]
    fn network_duplicate_on_aged_session_does_not_drop_it() {
        let mut faults = FaultCounters::default();
        let aged = AGED_FAST_DROP_AGE * 2;
        for _ in 1..REPLAY_DROP_COUNT {
            assert_eq!(faults.on_replay(aged), GateVerdict::Keep);
        }
        assert_eq!(
            faults.on_replay(aged),
            GateVerdict::Drop(DropReason::Replay),
            "five consecutive replays still drop the session"
        );
    }

    #[test]
    fn replay_and_outside_counters_never_cross_count() {
        let mut faults = FaultCounters::default();
        for _ in 0..4 {
            assert_eq!(faults.on_replay(10 * SECOND), GateVerdict::Keep);
        }
        assert_eq!(faults.on_outside_window(10 * SECOND), GateVerdict::Keep);
        assert_eq!(
            (faults.replay_count(), faults.outside_window_count()),
            (4, 1)
        );
        assert_eq!(
            faults.on_replay(10 * SECOND),
            GateVerdict::Drop(DropReason::Replay)
        );
    }

    #[test]
    fn acceptance_in_an_older_epoch_resets_only_decrypt_failures() {
        let mut faults = FaultCounters::default();
        let _ = faults.on_decrypt_failure(SECOND);
        let _ = faults.on_replay(SECOND);
        let _ = faults.on_outside_window(SECOND);
        faults.on_accepted();
        assert_eq!(faults.decrypt_fail_count(), 0);
        assert_eq!(
            (faults.replay_count(), faults.outside_window_count()),
            (1, 1)
        );
        faults.on_accepted_in_newest();
        assert_eq!(faults, FaultCounters::default());
    }

    #[test]
    fn drop_reasons_read_differently() {
        let all = [
            DropReason::DecryptFailures,
            DropReason::OutsideWindow,
            DropReason::Replay,
            DropReason::EpochsExhausted,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(alloc::format!("{a}"), alloc::format!("{b}"));
            }
        }
    }
}
