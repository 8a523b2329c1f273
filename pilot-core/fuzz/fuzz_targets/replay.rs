//! Fuzz target: the replay window (spec §5.1) and the AEAD-failure path (spec §5.2).
//!
//! The input is read as a sequence of operations. Every window verdict must agree with a
//! naive model (a set of every accepted counter and their maximum), `check` must never move
//! the window, and an AEAD failure must never touch replay state. Nothing may panic.
#![no_main]

use std::collections::BTreeSet;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pilot_core::replay::{
    Accept, ReceiveEpochs, ReceiveState, Reject, ReplayWindow, Verdict, REPLAY_WINDOW_COUNTERS,
};
use pilot_core::time::Instant;

#[derive(Default)]
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

/// Reads the input front to back; running out of bytes ends the run.
struct Ops<'a>(&'a [u8]);

impl Ops<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        let (bytes, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_be_bytes(*bytes))
    }

    fn u64(&mut self) -> Option<u64> {
        let (bytes, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*bytes))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops(data);
    let mut window = ReplayWindow::new();
    let mut model = Model::default();
    let mut receive = ReceiveState::new(Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut failures = 0u32;

    while let Some(tag) = ops.u8() {
        // Counters near the maximum reach the window's edges; absolute ones reach the rest.
        let counter = match tag % 5 {
            0 => ops.u64(),
            1 => ops.u16().map(|d| window.max().saturating_add(u64::from(d))),
            2 | 3 => ops.u16().map(|d| window.max().saturating_sub(u64::from(d & 0x1ff))),
            _ => {
                let Some(millis) = ops.u16() else { break };
                now = now + Duration::from_millis(u64::from(millis));
                let _gate = receive.on_auth_failure(now);
                failures = failures.saturating_add(1);
                // Only failures reach `receive`, so its epochs must stay as a fresh session's.
                let fresh = ReceiveEpochs::new();
                assert_eq!(receive.epochs(), &fresh, "an AEAD failure moved replay state");
                assert_eq!(receive.faults().decrypt_fail_count(), failures);
                continue;
            }
        };
        let Some(counter) = counter else { break };

        if tag % 5 == 3 {
            let before = window.clone();
            assert_eq!(window.check(counter), model.check(counter), "check {counter}");
            assert_eq!(window, before, "check moved the window");
        } else {
            let ours = window.check_and_record(counter);
            assert_eq!(ours, model.check_and_record(counter), "counter {counter}");
            assert_eq!(window.max(), model.max);
        }
    }
});
