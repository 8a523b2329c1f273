//! Timer handling: what each expiry does, and the timers derived from the state.

use super::{Connection, State};
use crate::stream::config::{
    FIN_WAIT_TIMEOUT, KEEPALIVE_MAX_PROBES, KEEPALIVE_PROBE_INTERVAL, MAX_TRANSMISSIONS,
    SYN_INITIAL_RTO, SYN_MAX_RETRIES, SYN_MAX_RTO, TIME_WAIT, ZERO_WINDOW_MAX_PROBES,
    ZERO_WINDOW_PROBE_INITIAL, ZERO_WINDOW_PROBE_MAX,
};
use crate::stream::error::StreamError;
use crate::stream::timer::Timer;
use crate::time::Instant;

impl Connection {
    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        for timer in Timer::ALL {
            if self.state == State::Closed {
                break;
            }
            if self.timers.take_expired(timer, now) {
                self.on_timer(now, timer);
            }
        }
        self.refresh_timers(now);
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::SynRetransmit => self.on_syn_timeout(now),
            Timer::Retransmit => self.on_retransmit_timeout(now),
            Timer::DelayedAck => self.ack_pending = true,
            Timer::Nagle => self.nagle_expired = true,
            Timer::ZeroWindowProbe => {
                if self.count_zero_window_probe() {
                    return;
                }
                self.probe_pending = true;
                self.zero_window_probe_interval =
                    (self.zero_window_probe_interval * 2).min(ZERO_WINDOW_PROBE_MAX);
                self.timers.set(
                    Timer::ZeroWindowProbe,
                    now + self.zero_window_probe_interval,
                );
            }
            Timer::Keepalive => {
                if self.keepalive_probes >= KEEPALIVE_MAX_PROBES {
                    self.time_out();
                } else {
                    self.keepalive_probes += 1;
                    self.probe_pending = true;
                }
            }
            Timer::Idle => match self.state {
                State::Established => self.close(),
                State::FinWait => self.finish(StreamError::Closed),
                _ => {}
            },
            Timer::TimeWait => self.finish(StreamError::Closed),
        }
    }

    fn on_syn_timeout(&mut self, now: Instant) {
        if !matches!(self.state, State::SynSent | State::SynReceived) {
            return;
        }
        self.syn_retries += 1;
        if self.syn_retries > SYN_MAX_RETRIES {
            self.time_out();
            return;
        }
        self.syn_pending = true;
        // spec §8.3: doubling from 250 ms, capped at 8 s.
        let factor = 1u32.checked_shl(self.syn_retries).unwrap_or(u32::MAX);
        let delay = SYN_INITIAL_RTO.saturating_mul(factor).min(SYN_MAX_RTO);
        self.timers.set(Timer::SynRetransmit, now + delay);
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        if self.retransmit.is_empty() {
            return;
        }
        // spec §8.7: 8 transmissions of a segment, then RST. A peer that keeps answering
        // with a zero window is alive, so then the zero-window probe limit applies instead.
        if self.peer_window == 0 {
            if self.count_zero_window_probe() {
                return;
            }
        } else {
            self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
            if self.consecutive_timeouts >= MAX_TRANSMISSIONS {
                self.time_out();
                return;
            }
        }
        self.recovery_epoch = self.recovery_epoch.wrapping_add(1);
        self.stats.timeouts += 1;
        let flight = usize::try_from(self.retransmit.flight_bytes()).unwrap_or(usize::MAX);
        self.congestion.on_timeout(flight, self.snd_nxt);
        self.retransmit.mark_all_unsacked_lost(self.recovery_epoch);
        self.duplicate_acks = 0;
        self.rtt.back_off();
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// Counts one probe into a zero window; gives up (and returns `true`) past the limit.
    fn count_zero_window_probe(&mut self) -> bool {
        self.zero_window_probes += 1;
        if self.zero_window_probes > ZERO_WINDOW_MAX_PROBES {
            self.time_out();
            return true;
        }
        false
    }

    /// Recomputes the timers that follow from the state rather than from one event.
    pub(super) fn refresh_timers(&mut self, now: Instant) {
        if self.state == State::Closed {
            self.timers.stop_all();
            return;
        }

        let stalled_on_zero_window = self.sends_data()
            && self.peer_window == 0
            && self.retransmit.is_empty()
            && self.send_buffer.end() > self.snd_nxt;
        if stalled_on_zero_window {
            self.timers.set_if_idle(
                Timer::ZeroWindowProbe,
                now + self.zero_window_probe_interval,
            );
        } else {
            self.timers.stop(Timer::ZeroWindowProbe);
            self.zero_window_probe_interval = ZERO_WINDOW_PROBE_INITIAL;
        }

        let keepalive = match self.config.keepalive_idle {
            Some(idle)
                if matches!(self.state, State::Established | State::CloseWait)
                    && self.retransmit.is_empty()
                    && !stalled_on_zero_window =>
            {
                let probing = KEEPALIVE_PROBE_INTERVAL.saturating_mul(self.keepalive_probes);
                Some(self.last_received + idle + probing)
            }
            _ => None,
        };
        self.set_or_stop(Timer::Keepalive, keepalive);

        let idle = match self.state {
            // Idle means nothing to send, nothing unread and no data moving: a stream stalled
            // on a full window is not idle.
            State::Established
                if self.send_buffer.end() == self.snd_una && self.receive.readable_bytes() == 0 =>
            {
                self.config.idle_timeout.map(|t| self.last_data + t)
            }
            // spec §8.9: FIN_WAIT is reaped after 10 s of silence, but only once our FIN is
            // acknowledged; until then the retransmission limit decides.
            State::FinWait if self.fin_sent && self.retransmit.is_empty() => {
                Some(self.last_received.max(self.fin_wait_since) + FIN_WAIT_TIMEOUT)
            }
            _ => None,
        };
        self.set_or_stop(Timer::Idle, idle);

        if self.state == State::TimeWait && self.retransmit.is_empty() {
            // Never refreshed once running (spec §8.9: duplicate FINs do not extend it).
            self.timers.set_if_idle(Timer::TimeWait, now + TIME_WAIT);
        }
    }

    fn set_or_stop(&mut self, timer: Timer, deadline: Option<Instant>) {
        match deadline {
            Some(deadline) => self.timers.set(timer, deadline),
            None => self.timers.stop(timer),
        }
    }
}
