//! Fuzz target: receive epochs (spec §5.4) fed by genuinely authenticated frames.
//!
//! The input is read as a sequence of operations. Each frame is sealed for real under a fixed
//! session key with an input-chosen (prefix, counter) and opened with `pils::open`, so the
//! `ReceiveState` sees true `AuthenticatedNonce`s; forged copies of such frames must fail to
//! open and go to the auth-failure path. Time moves by input-chosen steps. Checked after every
//! step: no (prefix, counter) is delivered twice within one session, at most
//! `RETAINED_RECV_EPOCHS` older epochs are kept, at most `MAX_RECV_EPOCHS` are begun, a new
//! epoch only ever starts for a never-seen prefix, and nothing panics. When a drop gate
//! fires the session is discarded and a fresh one installed, as an engine would.
#![no_main]

use std::collections::BTreeSet;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pilot_core::crypto::{SendState, SessionKey};
use pilot_core::frame::pils;
use pilot_core::replay::{
    GateVerdict, ReceiveState, RecvVerdict, MAX_RECV_EPOCHS, RETAINED_RECV_EPOCHS,
};
use pilot_core::time::Instant;

/// Any fixed key works; a known one keeps crashes reproducible. It protects nothing, so
/// reusing nonces under it (which fixed prefixes do on purpose here) is harmless.
const SESSION_KEY: [u8; 32] = [0x5a; 32];
const SENDER_NODE: u32 = 7;
const PACKET: &[u8] = b"replay-epochs";

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

    fn u32(&mut self) -> Option<u32> {
        let (bytes, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*bytes))
    }

    fn u64(&mut self) -> Option<u64> {
        let (bytes, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*bytes))
    }
}

/// One session as the engine would hold it, plus what the checks remember about it.
struct Session {
    state: ReceiveState,
    delivered: BTreeSet<([u8; 4], u64)>,
    prefixes_seen: BTreeSet<[u8; 4]>,
}

impl Session {
    fn install(now: Instant) -> Self {
        Self {
            state: ReceiveState::new(now),
            delivered: BTreeSet::new(),
            prefixes_seen: BTreeSet::new(),
        }
    }
}

/// Seals one genuine PILS frame carrying `(prefix, counter)`; `None` for counter 0, which no
/// sender can produce (its counter pre-increments and refuses to wrap).
fn seal(key: &SessionKey, prefix: [u8; 4], counter: u64) -> Option<Vec<u8>> {
    let last = counter.checked_sub(1)?;
    let mut send = SendState::with_fixed_prefix_and_counter_for_replay(prefix, last);
    let mut frame = Vec::new();
    let nonce = pils::seal(key, &mut send, SENDER_NODE, PACKET, &mut frame).ok()?;
    assert_eq!((nonce.prefix, nonce.counter), (prefix, counter));
    Some(frame)
}

fuzz_target!(|data: &[u8]| {
    let key = SessionKey::from_bytes(&SESSION_KEY);
    let mut ops = Ops(data);
    let mut now = Instant::ZERO;
    let mut session = Session::install(now);

    while let Some(tag) = ops.u8() {
        match tag % 8 {
            // Time steps: short ones around the drop-gate ages, long ones past any of them.
            0 => {
                let Some(millis) = ops.u16() else { break };
                now = now + Duration::from_millis(u64::from(millis));
            }
            1 => {
                let Some(secs) = ops.u32() else { break };
                now = now + Duration::from_secs(u64::from(secs));
            }
            // A forged frame: a genuine one with one bit flipped must not open, and only the
            // failure path is told about it.
            2 => {
                let (Some(prefix), Some(counter), Some(flip)) = (ops.u8(), ops.u8(), ops.u16())
                else {
                    break;
                };
                let prefix = [0, 0, 0, prefix];
                let Some(mut frame) = seal(&key, prefix, u64::from(counter).max(1)) else {
                    continue;
                };
                let bit = usize::from(flip) % (frame.len() * 8);
                if let Some(byte) = frame.get_mut(bit / 8) {
                    *byte ^= 1 << (bit % 8);
                }
                if pils::open(&key, &mut frame).is_ok() {
                    panic!("a frame with a flipped bit opened");
                }
                if session.state.on_auth_failure(now) != GateVerdict::Keep {
                    session = Session::install(now);
                }
            }
            // A genuine frame. Prefixes mostly from a small set so epochs recur, sometimes
            // any 4 bytes; counters absolute, near the epoch's max, or near the end.
            _ => {
                let Some(pick) = ops.u8() else { break };
                let prefix = if pick & 0x80 == 0 {
                    [0, 0, 0, pick]
                } else {
                    let Some(wide) = ops.u32() else { break };
                    wide.to_be_bytes()
                };
                let max = session
                    .state
                    .epochs()
                    .window(prefix)
                    .map_or(0, |window| window.max());
                let counter = match tag % 8 {
                    3 => ops.u8().map(u64::from),
                    4 => ops.u16().map(|d| max.saturating_add(u64::from(d))),
                    5 => ops.u16().map(|d| max.saturating_sub(u64::from(d & 0x1ff))),
                    6 => ops.u64(),
                    _ => ops.u8().map(|d| u64::MAX - u64::from(d)),
                };
                let Some(counter) = counter else { break };
                let Some(mut frame) = seal(&key, prefix, counter) else {
                    continue;
                };
                let opened = match pils::open(&key, &mut frame) {
                    Ok(opened) => opened,
                    Err(err) => panic!("a genuine frame did not open: {err:?}"),
                };
                assert_eq!(opened.packet, PACKET);
                let nonce = opened.nonce;
                assert_eq!((nonce.prefix(), nonce.counter()), (prefix, counter));

                let verdict = session.state.on_authenticated(nonce, now);
                if let RecvVerdict::DropSession(_) = verdict {
                    session = Session::install(now);
                    continue;
                }
                if verdict == RecvVerdict::NewEpoch {
                    assert!(
                        !session.prefixes_seen.contains(&prefix),
                        "prefix {prefix:?} began a second epoch"
                    );
                    assert_eq!(session.state.epochs().newest_prefix(), Some(prefix));
                }
                if verdict.is_deliver() {
                    assert!(
                        session.delivered.insert((prefix, counter)),
                        "({prefix:?}, {counter}) delivered twice: {verdict:?}"
                    );
                    session.prefixes_seen.insert(prefix);
                }
            }
        }

        let epochs = session.state.epochs();
        assert!(epochs.older_count() <= RETAINED_RECV_EPOCHS);
        assert!(epochs.begun_count() <= MAX_RECV_EPOCHS);
        // Every epoch begins with a delivered frame of a prefix no other epoch had.
        assert_eq!(epochs.begun_count(), session.prefixes_seen.len());
    }
});
