//! The per-peer timer table: every deadline of a peer in one place, so the next wake-up is
//! the minimum over one small array.

use crate::time::Instant;

/// What a peer can be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Fires [`super::KEY_RETRANSMIT_INTERVAL`] after the last key-exchange send while one is
    /// pending: send the next round, or give up after [`super::KEY_EXCHANGE_MAX_SENDS`].
    KeyRetransmit = 0,
    /// Fires [`super::KEEPALIVE_IDLE`] after the last frame sent on a session: send a tunnel
    /// keepalive (spec §7.1).
    Keepalive = 1,
}

/// Deadlines of one peer, indexed by [`Timer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 2],
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(slot) = self.deadlines.get_mut(timer as usize) {
            *slot = Some(at);
        }
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        if let Some(slot) = self.deadlines.get_mut(timer as usize) {
            *slot = None;
        }
    }

    /// When `timer` fires, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(timer as usize).copied().flatten()
    }

    /// Whether `timer` is armed and due at `now`; disarms it if so.
    pub(crate) fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.get(timer) {
            Some(at) if at <= now => {
                self.stop(timer);
                true
            }
            _ => false,
        }
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_earliest_armed_deadline_and_expiry_disarms() {
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Keepalive, Instant::from_millis(25_000));
        table.set(Timer::KeyRetransmit, Instant::from_millis(4_000));
        assert_eq!(table.next(), Some(Instant::from_millis(4_000)));
        assert!(!table.take_expired(Timer::KeyRetransmit, Instant::from_millis(3_999)));
        assert!(table.take_expired(Timer::KeyRetransmit, Instant::from_millis(4_000)));
        assert_eq!(table.get(Timer::KeyRetransmit), None);
        assert_eq!(table.next(), Some(Instant::from_millis(25_000)));
    }
}
