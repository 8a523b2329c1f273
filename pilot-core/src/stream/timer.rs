//! The connection's timers: one enum, one table, one answer to "when do I wake up next".

use crate::time::Instant;

/// A timer of a [`Connection`](super::Connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// SYN (dialer) or SYN-ACK (responder) unanswered: send it again, or give up.
    SynRetransmit,
    /// The oldest unacknowledged segment has waited one RTO: retransmit, or reset after 8 sends.
    Retransmit,
    /// In-order data has waited 40 ms for an ACK to piggyback on: send a pure ACK.
    DelayedAck,
    /// A partial segment has been held back 40 ms by Nagle: send it anyway.
    Nagle,
    /// The peer's window has been zero with data waiting: probe, or reset after 30 probes.
    ZeroWindowProbe,
    /// Nothing received for the keepalive interval: probe, or reset after 3 silent probes.
    Keepalive,
    /// Nothing sent, unread or moving for the idle timeout (or FIN_WAIT silent 10 s): close.
    Idle,
    /// TIME_WAIT is over: the connection is closed.
    TimeWait,
}

impl Timer {
    /// Every timer, in the order expired ones are handled.
    pub(crate) const ALL: [Timer; 8] = [
        Timer::SynRetransmit,
        Timer::Retransmit,
        Timer::DelayedAck,
        Timer::Nagle,
        Timer::ZeroWindowProbe,
        Timer::Keepalive,
        Timer::Idle,
        Timer::TimeWait,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// Deadline of each armed timer.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, deadline: Instant) {
        if let Some(slot) = self.deadlines.get_mut(timer.index()) {
            *slot = Some(deadline);
        }
    }

    /// Arms `timer` unless it already runs (keeps the earlier deadline).
    pub(crate) fn set_if_idle(&mut self, timer: Timer, deadline: Instant) {
        if self.get(timer).is_none() {
            self.set(timer, deadline);
        }
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        if let Some(slot) = self.deadlines.get_mut(timer.index()) {
            *slot = None;
        }
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = Default::default();
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines.get(timer.index()).copied().flatten()
    }

    /// The earliest deadline of all armed timers.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns `timer` if its deadline is at or before `now`.
    pub(crate) fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.get(timer) {
            Some(deadline) if deadline <= now => {
                self.stop(timer);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_minimum_over_armed_timers() {
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Idle, Instant::from_millis(50));
        table.set(Timer::DelayedAck, Instant::from_millis(40));
        assert_eq!(table.next(), Some(Instant::from_millis(40)));
        table.stop(Timer::DelayedAck);
        assert_eq!(table.next(), Some(Instant::from_millis(50)));
    }

    #[test]
    fn set_if_idle_keeps_the_running_deadline() {
        let mut table = TimerTable::default();
        table.set_if_idle(Timer::Retransmit, Instant::from_millis(10));
        table.set_if_idle(Timer::Retransmit, Instant::from_millis(99));
        assert_eq!(table.get(Timer::Retransmit), Some(Instant::from_millis(10)));
    }

    #[test]
    fn only_due_timers_expire() {
        let mut table = TimerTable::default();
        table.set(Timer::Nagle, Instant::from_millis(10));
        assert!(!table.take_expired(Timer::Nagle, Instant::from_millis(9)));
        assert!(table.take_expired(Timer::Nagle, Instant::from_millis(10)));
        assert_eq!(table.get(Timer::Nagle), None);
    }
}
