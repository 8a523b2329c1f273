//! `pilot-replay-window.json`: the PILS receive replay window (spec §5.1, §5.2).
//!
//! Every event goes to three judges:
//!
//! * pilot-core's [`ReplayWindow`] (plain `u64` counters: the runner cannot mint an
//!   `AuthenticatedNonce`, only the PILS open path can);
//! * [`SpecTarget`], a deliberately naive model of our target behaviour written here (a set of
//!   accepted counters and their maximum, no bitmap), which pilot-core must match on every
//!   event, verdict and `max` alike;
//! * the Go reference, i.e. the event's `expect`/`reason`/`max_after`.
//!
//! While a case has neither `reference_quirk` nor an earlier `aead_ok: false` event, all three
//! must agree exactly. Two documented divergences are asserted instead of the reference:
//!
//! * **AEAD failures** (`aead_ok: false`). The reference checks the window before AES-GCM
//!   (V-FEB/V-FORK, spec §5.2) and leaves a forged counter's `max` behind. Our target (V-NEW)
//!   authenticates first: the failure goes to [`ReceiveState::on_auth_failure`], which takes
//!   no counter, so the window cannot move. The runner asserts that the window is unchanged,
//!   that the decrypt-failure counter went up, that the forged counter would still be
//!   accepted by a later genuine frame, and afterwards that we deliver every frame the
//!   reference delivers and reject every duplicate it rejects; a frame it calls too old may
//!   be accepted by us only because its `max` was pinned by the forgery.
//! * **Counter 0** (case "counter 0 first", `reference_quirk`). The reference accepts 0 as
//!   "first" forever without recording it, so one frame could be delivered any number of
//!   times; no Pilot sender uses 0 (spec §4.3), so we reject it as
//!   [`Reject::ZeroCounter`] and record nothing.
//!
//! A case marked `reference_quirk` must actually diverge somewhere, so a stale flag is caught.

use std::collections::BTreeSet;

use pilot_core::replay::{
    Accept, GateVerdict, ReceiveEpochs, ReceiveState, Reject, ReplayWindow, Verdict,
    REPLAY_WINDOW_COUNTERS,
};
use pilot_core::time::Instant;
use serde::Deserialize;

use crate::{case_name, typed, CaseOutcome, VectorFile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    window_size: u64,
    events: Vec<Event>,
    #[serde(default)]
    reference_quirk: bool,
    #[serde(default)]
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    counter: String,
    #[serde(default = "authentic")]
    aead_ok: bool,
    expect: Expect,
    reason: Reason,
    max_after: String,
}

fn authentic() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Accept,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reason {
    AcceptFirst,
    AcceptNewMax,
    AcceptInWindow,
    RejectTooOld,
    RejectDuplicate,
    RejectAuth,
}

/// The reference's reason for one of our window verdicts, if it has one.
fn reason_of(verdict: Verdict) -> Option<Reason> {
    match verdict {
        Verdict::Accept(Accept::First) => Some(Reason::AcceptFirst),
        Verdict::Accept(Accept::NewMax) => Some(Reason::AcceptNewMax),
        Verdict::Accept(Accept::InWindow) => Some(Reason::AcceptInWindow),
        Verdict::Reject(Reject::OutsideWindow) => Some(Reason::RejectTooOld),
        Verdict::Reject(Reject::Replay) => Some(Reason::RejectDuplicate),
        Verdict::Reject(Reject::ZeroCounter) => None,
    }
}

/// Our target behaviour, modelled as simply as possible: every accepted counter is kept.
#[derive(Debug, Default)]
struct SpecTarget {
    accepted: BTreeSet<u64>,
    max: u64,
}

impl SpecTarget {
    fn step(&mut self, counter: u64) -> Verdict {
        let verdict = if counter == 0 {
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
        };
        if verdict.is_accept() {
            self.accepted.insert(counter);
            self.max = self.max.max(counter);
        }
        verdict
    }
}

/// Runs every case of the file.
pub fn run(file: &VectorFile) -> Vec<CaseOutcome> {
    file.cases
        .iter()
        .map(|c| CaseOutcome::new(case_name(c), typed::<Case>(c).and_then(|case| check(&case))))
        .collect()
}

/// Per-case state of the three judges.
struct Judges {
    window: ReplayWindow,
    target: SpecTarget,
    /// Receives the AEAD failures; never sees an authenticated frame in this runner.
    receive: ReceiveState,
    auth_failures: u32,
    /// Set by the first `aead_ok: false` event: the reference's window is poisoned from then on.
    reference_poisoned: bool,
    divergences: usize,
}

fn check(case: &Case) -> Result<(), String> {
    if case.window_size != REPLAY_WINDOW_COUNTERS {
        return Err(format!(
            "window_size {} but pilot-core has {REPLAY_WINDOW_COUNTERS}",
            case.window_size
        ));
    }
    if case.events.is_empty() {
        return Err("case has no events".into());
    }

    let mut judges = Judges {
        window: ReplayWindow::new(),
        target: SpecTarget::default(),
        receive: ReceiveState::new(Instant::ZERO),
        auth_failures: 0,
        reference_poisoned: false,
        divergences: 0,
    };
    for (i, event) in case.events.iter().enumerate() {
        let counter: u64 = event
            .counter
            .parse()
            .map_err(|e| format!("event {i}: counter {:?}: {e}", event.counter))?;
        let max_after: u64 = event
            .max_after
            .parse()
            .map_err(|e| format!("event {i}: max_after {:?}: {e}", event.max_after))?;
        let result = if event.aead_ok {
            authentic_event(&mut judges, case, event, counter, max_after)
        } else {
            forged_event(&mut judges, event, counter, max_after)
        };
        result.map_err(|why| format!("event {i} (counter {counter}): {why}"))?;
    }

    if case.reference_quirk && judges.divergences == 0 {
        return Err(format!(
            "{:?} is marked reference_quirk ({}) but pilot-core agreed with every event",
            case.name, case.note
        ));
    }
    Ok(())
}

/// An `aead_ok: false` event: the frame failed authentication, so only the failure path runs.
fn forged_event(
    judges: &mut Judges,
    event: &Event,
    counter: u64,
    max_after: u64,
) -> Result<(), String> {
    if (event.expect, event.reason) != (Expect::Reject, Reason::RejectAuth) {
        return Err(format!(
            "vector expects {:?}/{:?} for an AEAD failure",
            event.expect, event.reason
        ));
    }

    let window_before = judges.window.clone();
    let epochs_before = epochs_summary(judges.receive.epochs());
    let gate = judges.receive.on_auth_failure(Instant::ZERO);
    judges.auth_failures += 1;
    judges.reference_poisoned = true;

    if gate != GateVerdict::Keep {
        return Err(format!("decrypt gate fired at age 0: {gate:?} (needs 3 s)"));
    }
    if judges.receive.faults().decrypt_fail_count() != judges.auth_failures {
        return Err(format!(
            "decrypt-failure count {} after {} failures",
            judges.receive.faults().decrypt_fail_count(),
            judges.auth_failures
        ));
    }
    if judges.window != window_before || epochs_summary(judges.receive.epochs()) != epochs_before {
        return Err("an AEAD failure changed replay state".into());
    }
    // The genuine frame with this counter must still get through (spec §5.2).
    let later = judges.window.check(counter);
    if !later.is_accept() {
        return Err(format!(
            "a later genuine frame with this counter would be {later:?}"
        ));
    }
    if max_after != judges.window.max() {
        // The reference pinned max at the forged counter; ours stayed.
        judges.divergences += 1;
    }
    Ok(())
}

/// An authenticated event: pilot-core must match the spec-target model, and the reference
/// unless a documented divergence applies.
/// What can be observed of receive epochs. `ReceiveEpochs` is not `Clone` (a snapshot could
/// be restored to accept a frame twice), so compare this before and after instead.
type EpochsSummary = (Option<[u8; 4]>, Option<ReplayWindow>, usize, usize, usize);

fn epochs_summary(epochs: &ReceiveEpochs) -> EpochsSummary {
    (
        epochs.newest_prefix(),
        epochs.newest_window().cloned(),
        epochs.older_count(),
        epochs.retired_count(),
        epochs.begun_count(),
    )
}

fn authentic_event(
    judges: &mut Judges,
    case: &Case,
    event: &Event,
    counter: u64,
    max_after: u64,
) -> Result<(), String> {
    let asked = judges.window.check(counter);
    let ours = judges.window.check_and_record(counter);
    let target = judges.target.step(counter);
    if asked != ours {
        return Err(format!(
            "check said {asked:?}, check_and_record said {ours:?}"
        ));
    }
    if ours != target || judges.window.max() != judges.target.max {
        return Err(format!(
            "pilot-core {ours:?} max {}, spec target {target:?} max {}",
            judges.window.max(),
            judges.target.max
        ));
    }
    if ours.is_accept() && judges.window.check(counter) != Verdict::Reject(Reject::Replay) {
        return Err("an accepted counter was not recorded".into());
    }

    let our_expect = if ours.is_accept() {
        Expect::Accept
    } else {
        Expect::Reject
    };
    let agrees = our_expect == event.expect
        && reason_of(ours) == Some(event.reason)
        && judges.window.max() == max_after;
    if agrees {
        return Ok(());
    }
    judges.divergences += 1;

    if ours == Verdict::Reject(Reject::ZeroCounter) {
        // Documented: the reference's counter-0 quirk (spec §5.1 step 1, §4.3).
        return if case.reference_quirk {
            Ok(())
        } else {
            Err("counter 0 in a case not marked reference_quirk".into())
        };
    }
    if judges.reference_poisoned {
        return poisoned_reference_divergence(ours, event);
    }
    Err(format!(
        "reference says {:?}/{:?} max {max_after}, pilot-core {ours:?} max {}",
        event.expect,
        event.reason,
        judges.window.max()
    ))
}

/// After a forged frame pinned the reference's `max`, only these differences are allowed.
fn poisoned_reference_divergence(ours: Verdict, event: &Event) -> Result<(), String> {
    match (event.expect, event.reason, ours) {
        // We deliver whatever the reference delivers (the reason may differ, as our max
        // was never pinned).
        (Expect::Accept, _, Verdict::Accept(_)) => Ok(()),
        // The reference saw "too old" only because of the forged max; we accept.
        (Expect::Reject, Reason::RejectTooOld, Verdict::Accept(_)) => Ok(()),
        _ => Err(format!(
            "reference says {:?}/{:?}, pilot-core {ours:?}: not explained by the forged max",
            event.expect, event.reason
        )),
    }
}
