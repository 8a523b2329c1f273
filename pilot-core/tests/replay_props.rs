//! Properties of the replay layer's public API (spec §5).
//!
//! Epoch and drop-gate properties need `AuthenticatedNonce`s, which only the crate can mint;
//! they live in `src/replay/receive.rs` (`mod props`). Here: the window against a naive model,
//! and the AEAD-failure path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::time::Duration;

use pilot_core::replay::{
    Accept, GateVerdict, ReceiveEpochs, ReceiveState, Reject, ReplayWindow, Verdict,
    DECRYPT_FAIL_DROP_COUNT, DECRYPT_FAIL_MIN_AGE, REPLAY_WINDOW_COUNTERS,
};
use pilot_core::time::Instant;
use proptest::prelude::*;

/// The window as a set of every accepted counter plus their maximum: no bitmap, no sliding.
#[derive(Debug, Default)]
struct Model {
    accepted: BTreeSet<u64>,
    max: u64,
}

impl Model {
    fn check(&self, counter: u64) -> Verdict {
        if counter == 0 {
            Verdict::Reject(Reject::ZeroCounter)
        } else if self.accepted.is_empty() {
            Verdict::Accept(Accept::First)
        } else if counter > self.max {
            Verdict::Accept(Accept::NewMax)
        } else if self.max - counter >= REPLAY_WINDOW_COUNTERS {
            Verdict::Reject(Reject::OutsideWindow)
        } else if self.accepted.contains(&counter) {
            Verdict::Reject(Reject::Replay)
        } else {
            Verdict::Accept(Accept::InWindow)
        }
    }

    fn check_and_record(&mut self, counter: u64) -> Verdict {
        let verdict = self.check(counter);
        if verdict.is_accept() {
            self.accepted.insert(counter);
            self.max = self.max.max(counter);
        }
        verdict
    }
}

/// How the next counter is chosen: mostly near the current maximum, where the window's
/// edges are, sometimes anywhere.
#[derive(Debug, Clone)]
enum Step {
    Absolute(u64),
    Ahead(u16),
    Behind(u16),
}

impl Step {
    fn counter(&self, max: u64) -> u64 {
        match *self {
            Step::Absolute(c) => c,
            Step::Ahead(d) => max.saturating_add(u64::from(d)),
            Step::Behind(d) => max.saturating_sub(u64::from(d)),
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => any::<u64>().prop_map(Step::Absolute),
        1 => (0u64..600).prop_map(Step::Absolute),
        1 => (u64::MAX - 600..=u64::MAX).prop_map(Step::Absolute),
        3 => (0u16..300).prop_map(Step::Ahead),
        4 => (0u16..300).prop_map(Step::Behind),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn window_agrees_with_the_set_model(steps in proptest::collection::vec(step(), 0..400)) {
        let mut window = ReplayWindow::new();
        let mut model = Model::default();
        for step in &steps {
            let counter = step.counter(window.max());
            let ours = window.check_and_record(counter);
            prop_assert_eq!(ours, model.check_and_record(counter), "counter {}", counter);
            prop_assert_eq!(window.max(), model.max);
        }
    }

    #[test]
    fn no_counter_is_ever_accepted_twice(
        counters in proptest::collection::vec(0u64..700, 0..2_000),
    ) {
        let mut window = ReplayWindow::new();
        let mut delivered = BTreeSet::new();
        for counter in counters {
            if window.check_and_record(counter).is_accept() {
                prop_assert!(delivered.insert(counter), "counter {} delivered twice", counter);
            }
        }
    }

    #[test]
    fn check_never_changes_the_window_and_predicts_the_record(
        steps in proptest::collection::vec((step(), any::<bool>()), 0..300),
    ) {
        let mut window = ReplayWindow::new();
        for (step, record) in &steps {
            let counter = step.counter(window.max());
            let before = window.clone();
            let asked = window.check(counter);
            prop_assert_eq!(&window, &before);
            if *record {
                prop_assert_eq!(window.check_and_record(counter), asked);
            }
        }
    }

    #[test]
    fn accepted_counter_is_then_a_replay(steps in proptest::collection::vec(step(), 1..300)) {
        let mut window = ReplayWindow::new();
        for step in &steps {
            let counter = step.counter(window.max());
            if window.check_and_record(counter).is_accept() {
                prop_assert_eq!(window.check(counter), Verdict::Reject(Reject::Replay));
            }
        }
    }

    #[test]
    fn auth_failures_never_change_replay_state(
        installed_ms in 0u64..1_000_000,
        gaps_ms in proptest::collection::vec(0u64..2_000, 0..40),
    ) {
        let installed = Instant::from_millis(installed_ms);
        let mut state = ReceiveState::new(installed);
        // No frame authenticated yet: the epochs must stay as a fresh session's.
        let epochs_before = ReceiveEpochs::new();
        let mut now = installed;
        for (i, gap) in gaps_ms.iter().enumerate() {
            now = now + Duration::from_millis(*gap);
            let gate = state.on_auth_failure(now);
            let count = u32::try_from(i + 1).unwrap();

            prop_assert_eq!(state.epochs(), &epochs_before);
            prop_assert_eq!(state.faults().decrypt_fail_count(), count);
            prop_assert_eq!(state.faults().replay_count(), 0);
            prop_assert_eq!(state.faults().outside_window_count(), 0);
            let should_drop = count >= DECRYPT_FAIL_DROP_COUNT
                && now - installed >= DECRYPT_FAIL_MIN_AGE;
            prop_assert_eq!(gate != GateVerdict::Keep, should_drop);
        }
    }
}
