//! The receive side of one session: epochs, fault counters and drop gates together, behind
//! the two calls an engine makes per PILS frame.

use core::time::Duration;

use super::epochs::{EpochVerdict, ReceiveEpochs};
use super::gates::{DropReason, FaultCounters, GateVerdict};
use super::window::{Accept, Reject, Verdict};
use super::AuthenticatedNonce;
use crate::time::Instant;

/// What to do with an authenticated PILS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvVerdict {
    /// Deliver: accepted in the newest epoch's window (the session's first frame is
    /// `Accept(First)`).
    Accept(Accept),
    /// Deliver: a never-seen nonce prefix began a new epoch, now the newest (spec §5.4).
    NewEpoch,
    /// Deliver: accepted in a retained older epoch's own window; the newest is untouched.
    AcceptOlderEpoch(Accept),
    /// Discard the frame, keep the session. `OutsideWindow` and `Replay` come from the newest
    /// epoch and were counted by their drop gate, which did not fire; `ZeroCounter` is never
    /// counted.
    Reject(Reject),
    /// Discard the frame, keep the session: rejected by a retained older epoch's window
    /// ("stale epoch"); not counted by any drop gate (spec §5.4).
    RejectStaleEpoch(Reject),
    /// Discard the frame, keep the session: its prefix belongs to a retired epoch; not counted.
    RejectRetiredEpoch,
    /// Discard the frame and drop the session: a drop gate fired (spec §5.3).
    DropSession(DropReason),
}

impl RecvVerdict {
    /// Whether the frame's plaintext should be delivered.
    pub fn is_deliver(self) -> bool {
        matches!(
            self,
            RecvVerdict::Accept(_) | RecvVerdict::NewEpoch | RecvVerdict::AcceptOlderEpoch(_)
        )
    }
}

/// Replay protection and fault recovery for the receive side of one session object.
///
/// Create one when the session is installed and discard it with the session; after a
/// [`RecvVerdict::DropSession`] or [`GateVerdict::Drop`] the caller deletes both. Because the
/// state belongs to one session object, a gate can only ever judge the session it was fed by
/// (the spec's "compare-and-drop", §5.3).
///
/// Drop-gate age is measured from the start of the newest epoch (V-NEW `dropGateAge`), and
/// from installation while no frame has authenticated yet: a peer that just began an epoch
/// gets the same grace as a freshly installed session.
///
/// Deliberately not `Clone` (like [`SendState`](crate::crypto::SendState)): a copy taken
/// before a frame and restored after it would accept that frame again.
///
/// ```compile_fail
/// // Replay state cannot be snapshotted.
/// let state = pilot_core::replay::ReceiveState::new(pilot_core::time::Instant::ZERO);
/// let _snapshot = state.clone();
/// ```
///
/// ```
/// use pilot_core::replay::{GateVerdict, ReceiveState};
/// use pilot_core::time::Instant;
///
/// let mut state = ReceiveState::new(Instant::ZERO);
/// // The AEAD open of a PILS frame failed: nothing but the decrypt-failure counter moves.
/// assert_eq!(state.on_auth_failure(Instant::from_millis(10)), GateVerdict::Keep);
/// assert_eq!(state.faults().decrypt_fail_count(), 1);
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct ReceiveState {
    installed_at: Instant,
    epochs: ReceiveEpochs,
    faults: FaultCounters,
}

impl ReceiveState {
    /// Receive state of a session installed at `installed_at`.
    pub fn new(installed_at: Instant) -> Self {
        Self {
            installed_at,
            epochs: ReceiveEpochs::new(),
            faults: FaultCounters::default(),
        }
    }

    /// Judges a frame whose AEAD tag verified (spec §5.2: authenticate before the window),
    /// records it when accepted, and asks the drop gates on rejection.
    pub fn on_authenticated(&mut self, nonce: AuthenticatedNonce, now: Instant) -> RecvVerdict {
        match self.epochs.judge(nonce, now) {
            EpochVerdict::Newest(Verdict::Accept(accept)) => {
                // spec §5.3 (V-NEW): only a success in the newest epoch clears the window
                // fault counters.
                self.faults.on_accepted_in_newest();
                RecvVerdict::Accept(accept)
            }
            EpochVerdict::NewEpoch => {
                self.faults.on_accepted_in_newest();
                RecvVerdict::NewEpoch
            }
            EpochVerdict::Older(Verdict::Accept(accept)) => {
                self.faults.on_accepted();
                RecvVerdict::AcceptOlderEpoch(accept)
            }
            EpochVerdict::Newest(Verdict::Reject(reject)) => self.on_newest_rejection(reject, now),
            EpochVerdict::Older(Verdict::Reject(reject)) => RecvVerdict::RejectStaleEpoch(reject),
            EpochVerdict::Retired => RecvVerdict::RejectRetiredEpoch,
            EpochVerdict::Exhausted => RecvVerdict::DropSession(DropReason::EpochsExhausted),
            EpochVerdict::ZeroCounter => RecvVerdict::Reject(Reject::ZeroCounter),
        }
    }

    /// Counts a PILS frame whose AEAD open failed and asks the decrypt drop gate.
    ///
    /// Takes no nonce on purpose: an unauthenticated counter never reaches a window, so a
    /// forged frame cannot pin `max` (spec §5.2, the V-FEB/V-FORK forged-counter quirk).
    pub fn on_auth_failure(&mut self, now: Instant) -> GateVerdict {
        let age = self.drop_gate_age(now);
        self.faults.on_decrypt_failure(age)
    }

    /// Age the drop gates judge: time since the newest epoch began, or since installation
    /// before the first authenticated frame.
    pub fn drop_gate_age(&self, now: Instant) -> Duration {
        let since = self.epochs.newest_started_at().unwrap_or(self.installed_at);
        now.saturating_duration_since(since)
    }

    /// When the session was installed.
    pub fn installed_at(&self) -> Instant {
        self.installed_at
    }

    /// The receive epochs and their windows.
    pub fn epochs(&self) -> &ReceiveEpochs {
        &self.epochs
    }

    /// The consecutive-fault counters.
    pub fn faults(&self) -> &FaultCounters {
        &self.faults
    }

    fn on_newest_rejection(&mut self, reject: Reject, now: Instant) -> RecvVerdict {
        let age = self.drop_gate_age(now);
        let gate = match reject {
            Reject::OutsideWindow => self.faults.on_outside_window(age),
            Reject::Replay => self.faults.on_replay(age),
            // Not a window fault: no Pilot sender uses counter 0 (spec §4.3).
            Reject::ZeroCounter => GateVerdict::Keep,
        };
        match gate {
            GateVerdict::Keep => RecvVerdict::Reject(reject),
            GateVerdict::Drop(reason) => RecvVerdict::DropSession(reason),
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
    use crate::replay::epochs::{MAX_RECV_EPOCHS, RETAINED_RECV_EPOCHS};
    use crate::replay::gates::{DECRYPT_FAIL_DROP_COUNT, REPLAY_DROP_COUNT};

    const A: [u8; 4] = *b"AAAA";
    const B: [u8; 4] = *b"BBBB";

    fn n(prefix: [u8; 4], counter: u64) -> AuthenticatedNonce {
        AuthenticatedNonce::new(prefix, counter)
    }

    fn at_ms(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    fn at(secs: u64) -> Instant {
        at_ms(secs * 1_000)
    }

    /// A session installed at 0 whose newest epoch `A` began at 0 with counters 1..=10.
    fn running() -> ReceiveState {
        let mut state = ReceiveState::new(at(0));
        for c in 1..=10 {
            assert!(state.on_authenticated(n(A, c), at(0)).is_deliver());
        }
        state
    }

    #[test]
    fn forged_high_counter_does_not_move_window() {
        let mut state = running();
        let before = state.epochs().snapshot();
        // The frame with counter 2^63 failed AEAD: only the failure path is called.
        assert_eq!(state.on_auth_failure(at(1)), GateVerdict::Keep);
        assert_eq!(state.epochs(), &before);
        assert_eq!(
            state.on_authenticated(n(A, 11), at(1)),
            RecvVerdict::Accept(Accept::NewMax)
        );
    }

    #[test]
    fn forged_frames_preserve_replay_and_reordering() {
        let mut state = ReceiveState::new(at(0));
        for c in [1, 2, 5] {
            state.on_authenticated(n(A, c), at(0));
        }
        state.on_auth_failure(at(0));
        assert_eq!(
            state.on_authenticated(n(A, 3), at(0)),
            RecvVerdict::Accept(Accept::InWindow)
        );
        assert_eq!(
            state.on_authenticated(n(A, 5), at(0)),
            RecvVerdict::Reject(Reject::Replay)
        );
    }

    #[test]
    fn decrypt_gate_fires_after_five_failures_once_three_seconds_old() {
        let mut state = running();
        for _ in 1..DECRYPT_FAIL_DROP_COUNT {
            assert_eq!(state.on_auth_failure(at(1)), GateVerdict::Keep);
        }
        // Count reached but the epoch is only 1 s old.
        assert_eq!(state.on_auth_failure(at(1)), GateVerdict::Keep);
        assert_eq!(
            state.on_auth_failure(at(3)),
            GateVerdict::Drop(DropReason::DecryptFailures)
        );
    }

    #[test]
    fn decrypt_gate_age_counts_from_install_before_the_first_frame() {
        let mut state = ReceiveState::new(at(10));
        for _ in 0..DECRYPT_FAIL_DROP_COUNT {
            assert_eq!(state.on_auth_failure(at(12)), GateVerdict::Keep);
        }
        assert_eq!(
            state.on_auth_failure(at(13)),
            GateVerdict::Drop(DropReason::DecryptFailures)
        );
    }

    #[test]
    fn accepted_frame_resets_decrypt_failures() {
        let mut state = running();
        for _ in 0..4 {
            state.on_auth_failure(at(5));
        }
        state.on_authenticated(n(A, 11), at(5));
        assert_eq!(state.faults().decrypt_fail_count(), 0);
        assert_eq!(state.on_auth_failure(at(5)), GateVerdict::Keep);
    }

    #[test]
    fn replay_count_increments_and_resets() {
        let mut state = running();
        for expected in 1..=3 {
            assert_eq!(
                state.on_authenticated(n(A, 4), at_ms(500)),
                RecvVerdict::Reject(Reject::Replay)
            );
            assert_eq!(state.faults().replay_count(), expected);
        }
        state.on_authenticated(n(A, 11), at_ms(500));
        assert_eq!(state.faults().replay_count(), 0);
    }

    #[test]
    fn replay_gate_needs_threshold_and_grace() {
        let mut state = running();
        for _ in 0..REPLAY_DROP_COUNT + 3 {
            // Inside the 1 s grace: never drops, however many.
            assert_eq!(
                state.on_authenticated(n(A, 4), at_ms(900)),
                RecvVerdict::Reject(Reject::Replay)
            );
        }
        assert_eq!(
            state.on_authenticated(n(A, 4), at(1)),
            RecvVerdict::DropSession(DropReason::Replay)
        );
    }

    #[test]
    fn authenticated_outside_window_frame_tears_down_aged_session() {
        let mut state = ReceiveState::new(at(0));
        state.on_authenticated(n(A, 1), at(0));
        state.on_authenticated(n(A, 1_000), at(0));
        assert_eq!(
            state.on_authenticated(n(A, 2), at(60)),
            RecvVerdict::DropSession(DropReason::OutsideWindow)
        );
    }

    #[test]
    fn unauthenticated_frame_cannot_trigger_the_aged_fast_drop() {
        let mut state = running();
        assert_eq!(state.on_auth_failure(at(3_600)), GateVerdict::Keep);
    }

    #[test]
    fn new_epoch_restarts_the_window_without_arming_a_gate() {
        let mut state = running();
        // The peer re-derived its session an hour later: counter 1 again, new prefix.
        assert_eq!(
            state.on_authenticated(n(B, 1), at(3_600)),
            RecvVerdict::NewEpoch
        );
        assert_eq!(state.drop_gate_age(at(3_600)), Duration::ZERO);
        assert_eq!(
            state.on_authenticated(n(B, 2), at(3_600)),
            RecvVerdict::Accept(Accept::NewMax)
        );
        // A genuine replay right after the new epoch is inside its grace.
        assert_eq!(
            state.on_authenticated(n(B, 2), at(3_600)),
            RecvVerdict::Reject(Reject::Replay)
        );
    }

    #[test]
    fn stale_epoch_rejections_do_not_feed_the_gates() {
        let mut state = running();
        state.on_authenticated(n(B, 1), at(100));
        for _ in 0..10 {
            assert_eq!(
                state.on_authenticated(n(A, 3), at(200)),
                RecvVerdict::RejectStaleEpoch(Reject::Replay)
            );
        }
        assert_eq!(state.faults(), &FaultCounters::default());
        assert_eq!(
            state.on_authenticated(n(A, 11), at(200)),
            RecvVerdict::AcceptOlderEpoch(Accept::NewMax)
        );
        assert_eq!(state.epochs().newest_prefix(), Some(B));
    }

    #[test]
    fn older_epoch_success_does_not_reset_newest_window_faults() {
        let mut state = running();
        state.on_authenticated(n(B, 1), at(0));
        state.on_authenticated(n(B, 1), at(0));
        assert_eq!(state.faults().replay_count(), 1);
        state.on_authenticated(n(A, 11), at(0));
        assert_eq!(state.faults().replay_count(), 1);
    }

    #[test]
    fn same_epoch_replay_is_still_a_replay() {
        let mut state = running();
        state.on_authenticated(n(B, 1), at(0));
        assert_eq!(
            state.on_authenticated(n(B, 1), at(0)),
            RecvVerdict::Reject(Reject::Replay)
        );
    }

    #[test]
    fn retired_epoch_is_rejected_without_counting() {
        let mut state = ReceiveState::new(at(0));
        for i in 0..=RETAINED_RECV_EPOCHS + 1 {
            let prefix = u32::try_from(i).unwrap().to_be_bytes();
            state.on_authenticated(n(prefix, 1), at(0));
        }
        assert_eq!(
            state.on_authenticated(n(0u32.to_be_bytes(), 2), at(120)),
            RecvVerdict::RejectRetiredEpoch
        );
        assert_eq!(state.faults(), &FaultCounters::default());
    }

    #[test]
    fn epoch_limit_drops_the_session() {
        let mut state = ReceiveState::new(at(0));
        for i in 0..MAX_RECV_EPOCHS {
            let prefix = u32::try_from(i).unwrap().to_be_bytes();
            assert!(state.on_authenticated(n(prefix, 1), at(0)).is_deliver());
        }
        let prefix = u32::try_from(MAX_RECV_EPOCHS).unwrap().to_be_bytes();
        assert_eq!(
            state.on_authenticated(n(prefix, 1), at(0)),
            RecvVerdict::DropSession(DropReason::EpochsExhausted)
        );
    }

    #[test]
    fn counter_zero_is_rejected_and_not_counted() {
        let mut state = running();
        assert_eq!(
            state.on_authenticated(n(A, 0), at(120)),
            RecvVerdict::Reject(Reject::ZeroCounter)
        );
        assert_eq!(state.faults(), &FaultCounters::default());
    }
}

/// Epoch and gate properties; here because only the crate can mint an `AuthenticatedNonce`.
#[cfg(test)]
mod props {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::replay::epochs::{MAX_RECV_EPOCHS, RETAINED_RECV_EPOCHS};

    #[derive(Debug, Clone)]
    enum Op {
        /// An authenticated frame of prefix number `prefix`.
        Frame { prefix: u32, counter: u64 },
        /// A PILS frame whose AEAD open failed.
        AuthFailure,
        /// The clock moves on.
        Wait { millis: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u32..6, 0u64..40).prop_map(|(prefix, counter)| Op::Frame { prefix, counter }),
            2 => (0u32..100, 0u64..600).prop_map(|(prefix, counter)| Op::Frame { prefix, counter }),
            1 => Just(Op::AuthFailure),
            1 => (0u64..20_000).prop_map(|millis| Op::Wait { millis }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn epochs_respect_caps_and_never_deliver_twice(
            ops in proptest::collection::vec(op(), 0..600),
        ) {
            let mut state = ReceiveState::new(Instant::ZERO);
            let mut now = Instant::ZERO;
            let mut delivered = BTreeSet::new();
            let mut seen_prefixes: Vec<[u8; 4]> = Vec::new();

            for op in ops {
                match op {
                    Op::Wait { millis } => now = now + Duration::from_millis(millis),
                    Op::AuthFailure => {
                        let before = state.epochs().snapshot();
                        let _gate = state.on_auth_failure(now);
                        prop_assert_eq!(state.epochs(), &before);
                    }
                    Op::Frame { prefix, counter } => {
                        let prefix = prefix.to_be_bytes();
                        let newest_before = state.epochs().newest_prefix();
                        let known = seen_prefixes.contains(&prefix);
                        let nonce = AuthenticatedNonce::new(prefix, counter);
                        let verdict = state.on_authenticated(nonce, now);

                        if verdict.is_deliver() {
                            prop_assert!(counter != 0);
                            prop_assert!(
                                delivered.insert((prefix, counter)),
                                "{:?} delivered twice",
                                (prefix, counter)
                            );
                            if !known {
                                seen_prefixes.push(prefix);
                            }
                        }
                        match verdict {
                            RecvVerdict::NewEpoch => {
                                prop_assert!(!known);
                                prop_assert_eq!(state.epochs().newest_prefix(), Some(prefix));
                            }
                            RecvVerdict::DropSession(DropReason::EpochsExhausted) => {
                                prop_assert!(!known);
                                prop_assert_eq!(state.epochs().begun_count(), MAX_RECV_EPOCHS);
                            }
                            RecvVerdict::Accept(Accept::First) => {
                                prop_assert_eq!(newest_before, None);
                            }
                            _ => {
                                if newest_before.is_some() {
                                    prop_assert_eq!(state.epochs().newest_prefix(), newest_before);
                                }
                            }
                        }
                        if verdict == RecvVerdict::RejectRetiredEpoch {
                            prop_assert!(state.epochs().is_retired(prefix));
                        }
                    }
                }
                let epochs = state.epochs();
                prop_assert!(epochs.older_count() <= RETAINED_RECV_EPOCHS);
                prop_assert!(epochs.begun_count() <= MAX_RECV_EPOCHS);
                prop_assert_eq!(epochs.begun_count(), seen_prefixes.len());
                prop_assert!(epochs.retired_count() <= MAX_RECV_EPOCHS - 1 - RETAINED_RECV_EPOCHS);
                prop_assert_eq!(
                    epochs.retired_count(),
                    epochs.begun_count().saturating_sub(1 + RETAINED_RECV_EPOCHS)
                );
            }
        }

        #[test]
        fn stale_and_retired_rejections_never_feed_a_gate(
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let mut state = ReceiveState::new(Instant::ZERO);
            let mut now = Instant::ZERO;
            for op in ops {
                match op {
                    Op::Wait { millis } => now = now + Duration::from_millis(millis),
                    Op::AuthFailure => {
                        let _gate = state.on_auth_failure(now);
                    }
                    Op::Frame { prefix, counter } => {
                        let before = state.faults().clone();
                        let verdict = state.on_authenticated(
                            AuthenticatedNonce::new(prefix.to_be_bytes(), counter),
                            now,
                        );
                        if matches!(
                            verdict,
                            RecvVerdict::RejectStaleEpoch(_)
                                | RecvVerdict::RejectRetiredEpoch
                                | RecvVerdict::Reject(Reject::ZeroCounter)
                        ) {
                            prop_assert_eq!(state.faults(), &before);
                        }
                    }
                }
            }
        }
    }
}
