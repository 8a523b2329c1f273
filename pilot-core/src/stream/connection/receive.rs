//! Receiving: segment dispatch (spec §8.2), handshake completion, ACK and SACK processing,
//! loss detection, data delivery and the peer's FIN.

use super::{Connection, State, StreamEvent, INITIAL_SEQUENCE, RACK_MIN_REORDERING_WINDOW};
use crate::stream::config::{DELAYED_ACK, DELAYED_ACK_SEGMENTS, DUPLICATE_ACK_THRESHOLD};
use crate::stream::congestion::AckProgress;
use crate::stream::error::StreamError;
use crate::stream::recv::{Arrival, ReceiveBuffer};
use crate::stream::sack::SackBlocks;
use crate::stream::segment::{Flags, Segment};
use crate::stream::seq::{serial_lt, to_wire, unwrap};
use crate::stream::timer::Timer;
use crate::time::Instant;

impl Connection {
    /// Processes one segment the node layer demultiplexed to this connection.
    pub fn handle_segment(&mut self, now: Instant, segment: Segment<&[u8]>) {
        self.now = self.now.max(now);
        if self.state == State::Closed {
            return;
        }
        self.last_received = now;
        self.keepalive_probes = 0;

        // spec §8.2: first match wins.
        let flags = segment.flags;
        if flags.contains(Flags::SYN) && !flags.contains(Flags::ACK) {
            self.on_syn(&segment);
        } else if flags.contains(Flags::SYN) {
            self.on_syn_ack(now, &segment);
        } else if flags.contains(Flags::FIN) {
            self.on_synchronized(now, &segment);
        } else if flags.contains(Flags::RST) {
            self.finish(StreamError::Reset);
        } else if flags.contains(Flags::ACK) {
            self.on_synchronized(now, &segment);
        }
        self.refresh_timers(now);
    }

    fn on_syn(&mut self, segment: &Segment<&[u8]>) {
        // A retransmitted SYN means our SYN-ACK was lost: resend it with the same seq (§8.3).
        let original_syn = to_wire(self.receive.next().wrapping_sub(1));
        if self.state == State::SynReceived && segment.seq == original_syn {
            self.syn_pending = true;
        }
    }

    fn on_syn_ack(&mut self, now: Instant, segment: &Segment<&[u8]>) {
        match self.state {
            State::SynSent => {
                // Unlike the Go dialer, check the ack: it must acknowledge our SYN.
                if segment.ack != INITIAL_SEQUENCE.wrapping_add(1) {
                    return;
                }
                self.receive = ReceiveBuffer::new(
                    self.config.receive_capacity_segments,
                    self.config.max_out_of_order_segments,
                    u64::from(segment.seq) + 1,
                );
                self.peer_window = segment.window;
                self.last_ack_window = segment.window;
                self.establish(now);
                self.ack_pending = true;
            }
            State::SynReceived => {}
            _ => {
                // Our handshake ACK was lost and the peer repeats its SYN-ACK: ACK again.
                if segment.seq == to_wire(self.receive.next().wrapping_sub(1)) {
                    self.ack_pending = true;
                }
            }
        }
    }

    fn establish(&mut self, now: Instant) {
        self.state = if self.fin_queued {
            State::FinWait
        } else {
            State::Established
        };
        self.fin_wait_since = now;
        self.syn_pending = false;
        self.timers.stop(Timer::SynRetransmit);
        self.snd_una = u64::from(INITIAL_SEQUENCE) + 1;
        if self.syn_transmissions == 1 {
            if let Some(sent) = self.syn_first_sent {
                self.rtt.on_sample(now - sent);
            }
        }
        self.last_data = now;
        self.events.push_back(StreamEvent::Connected);
    }

    /// ACK and/or FIN segments: everything after the handshake.
    fn on_synchronized(&mut self, now: Instant, segment: &Segment<&[u8]>) {
        let flags = segment.flags;
        let has_ack = flags.contains(Flags::ACK) && segment.ack != 0; // spec §8.4: ack 0 ignored
        let is_fin = flags.contains(Flags::FIN);
        match self.state {
            State::SynSent => return,
            State::SynReceived => {
                // spec §8.3: any ACK covering our SYN completes the handshake; so does a FIN in
                // sequence (a Go FIN carries no ACK flag, but implies our SYN-ACK arrived).
                let acks_syn = has_ack && !serial_lt(segment.ack, INITIAL_SEQUENCE.wrapping_add(1));
                let fin_in_order = is_fin && segment.seq == to_wire(self.receive.next());
                if !(acks_syn || fin_in_order) {
                    return;
                }
                self.establish(now);
            }
            _ => {}
        }

        // spec §8.5: a non-empty pure-ACK payload is tried as SACK first.
        let mut payload = segment.payload;
        let mut sack = None;
        if flags.contains(Flags::ACK) && !is_fin && !payload.is_empty() {
            if let Ok(blocks) = SackBlocks::decode(payload) {
                sack = Some(blocks);
                payload = &[];
            }
        }
        let pure_ack = payload.is_empty() && !is_fin;

        if has_ack {
            self.on_ack(now, segment, sack.as_ref(), pure_ack);
        }
        if self.state == State::Closed {
            return;
        }

        let seq = unwrap(segment.seq, self.receive.next());
        if !payload.is_empty() {
            self.on_data(now, seq, payload);
        }
        if is_fin {
            let fin_seq = seq.map(|s| s.saturating_add(payload.len() as u64));
            self.on_fin(fin_seq);
        } else if pure_ack && sack.is_none() && self.is_probe(segment.seq) {
            self.ack_pending = true;
        }
    }

    /// A probe (keepalive or zero-window) is an empty ACK one sequence number behind what we
    /// expect, like a TCP keepalive; answering it with a pure ACK cannot loop, because the
    /// answer carries the sender's current sequence number.
    fn is_probe(&self, seq: u32) -> bool {
        self.receive.next() > 0 && seq == to_wire(self.receive.next() - 1)
    }

    fn on_ack(
        &mut self,
        now: Instant,
        segment: &Segment<&[u8]>,
        sack: Option<&SackBlocks>,
        pure_ack: bool,
    ) {
        let Some(ack) = unwrap(segment.ack, self.snd_una) else {
            return;
        };
        // spec §8.4: ACKs behind the last cumulative ACK are ignored; so are ACKs of data we
        // never sent.
        if ack < self.snd_una || ack > self.snd_nxt {
            return;
        }
        // V-FORK FINs carry window 0 meaning nothing (spec §8.6); only trust other segments.
        if !segment.flags.contains(Flags::FIN) {
            self.peer_window = segment.window;
            if segment.window > 0 {
                self.zero_window_probes = 0;
            }
        }
        let flight_before = usize::try_from(self.retransmit.flight_bytes()).unwrap_or(usize::MAX);
        let mut delivered_sent = None;
        if let Some(blocks) = sack {
            for block in blocks.as_slice() {
                let left = unwrap(block.left, self.snd_una);
                let right = unwrap(block.right, self.snd_una);
                if let (Some(left), Some(right)) = (left, right) {
                    if left < right && right <= self.snd_nxt {
                        delivered_sent =
                            delivered_sent.max(self.retransmit.mark_sacked(left, right));
                    }
                }
            }
        }

        if ack > self.snd_una {
            delivered_sent = delivered_sent.max(self.on_cumulative_ack(now, ack));
        } else if pure_ack
            && !self.retransmit.is_empty()
            && (sack.is_some() || segment.window == self.last_ack_window)
        {
            self.on_duplicate_ack();
        }
        if self.congestion.in_recovery() && sack.is_some() {
            self.retransmit
                .mark_lost_below_sacked(DUPLICATE_ACK_THRESHOLD as usize, self.recovery_epoch);
        }
        self.detect_loss_by_time(delivered_sent, flight_before);
        self.last_ack_window = segment.window;
    }

    /// RACK-style loss detection (RFC 8985): once a segment sent at `t` is delivered, any
    /// segment still outstanding that was (re)sent more than a reordering window before `t`
    /// is lost. Counts as a loss event like a third duplicate ACK when not yet recovering.
    fn detect_loss_by_time(&mut self, delivered_sent: Option<Instant>, flight_before: usize) {
        self.rack_delivered_sent = self.rack_delivered_sent.max(delivered_sent);
        let (Some(delivered_sent), Some(srtt)) = (self.rack_delivered_sent, self.rtt.srtt()) else {
            return;
        };
        let reordering_window = (srtt / 4).max(RACK_MIN_REORDERING_WINDOW);
        let micros = u64::try_from(reordering_window.as_micros()).unwrap_or(u64::MAX);
        let deadline = Instant::from_micros(delivered_sent.as_micros().saturating_sub(micros));
        if self.retransmit.mark_lost_sent_before(deadline) && !self.congestion.in_recovery() {
            self.recovery_epoch = self.recovery_epoch.wrapping_add(1);
            self.stats.fast_recoveries += 1;
            self.congestion
                .on_fast_retransmit(flight_before, self.snd_nxt);
        }
    }

    /// Returns the send time of the newest never-retransmitted segment it acknowledged.
    fn on_cumulative_ack(&mut self, now: Instant, ack: u64) -> Option<Instant> {
        let acked_bytes = usize::try_from(ack - self.snd_una).unwrap_or(usize::MAX);
        let acked = self.retransmit.ack_to(ack);
        if let Some(sent) = acked.rtt_sample_from {
            // Karn: only segments transmitted once are sampled.
            self.rtt.on_sample(now - sent);
        }
        self.rtt.reset_backoff();
        self.consecutive_timeouts = 0;
        self.duplicate_acks = 0;
        self.snd_una = ack;
        self.send_buffer.release_to(ack);

        if self.congestion.on_ack(ack, acked_bytes) == AckProgress::Partial {
            // RFC 6582: the next hole is lost too.
            self.retransmit
                .mark_first_unsacked_lost(self.recovery_epoch);
        }
        if self.retransmit.is_empty() {
            self.timers.stop(Timer::Retransmit);
        } else {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if self.write_blocked && self.accepts_writes() && self.send_buffer.free() > 0 {
            self.write_blocked = false;
            self.events.push_back(StreamEvent::Writable);
        }
        acked.delivered_sent
    }

    fn on_duplicate_ack(&mut self) {
        self.duplicate_acks += 1;
        // spec §8.7: fast retransmit on the third duplicate pure ACK, once per loss event.
        if self.duplicate_acks == DUPLICATE_ACK_THRESHOLD && !self.congestion.in_recovery() {
            self.recovery_epoch = self.recovery_epoch.wrapping_add(1);
            self.stats.fast_recoveries += 1;
            let flight = usize::try_from(self.retransmit.flight_bytes()).unwrap_or(usize::MAX);
            self.congestion.on_fast_retransmit(flight, self.snd_nxt);
            self.retransmit
                .mark_first_unsacked_lost(self.recovery_epoch);
        }
    }

    fn on_data(&mut self, now: Instant, seq: Option<u64>, payload: &[u8]) {
        let Some(seq) = seq else {
            self.ack_pending = true;
            return;
        };
        if self.peer_fin_received {
            // Nothing follows a FIN; this is a retransmission the peer wants acknowledged.
            self.ack_pending = true;
            return;
        }
        match self.receive.insert(seq, payload) {
            Arrival::InOrder { filled_gap } => {
                self.last_data = now;
                self.unacked_segments += 1;
                // spec §8.4: ACK at once when a gap closed or remains, or after 2 segments.
                if filled_gap
                    || self.receive.has_out_of_order()
                    || self.unacked_segments >= DELAYED_ACK_SEGMENTS
                {
                    self.ack_pending = true;
                } else {
                    self.timers
                        .set_if_idle(Timer::DelayedAck, now + DELAYED_ACK);
                }
                if !self.readable_signalled {
                    self.readable_signalled = true;
                    self.events.push_back(StreamEvent::Readable);
                }
                self.check_in_order_fin();
            }
            Arrival::OutOfOrder | Arrival::Duplicate | Arrival::Dropped => {
                self.ack_pending = true;
            }
        }
    }

    fn on_fin(&mut self, fin_seq: Option<u64>) {
        let Some(fin_seq) = fin_seq else {
            return;
        };
        self.ack_pending = true;
        if self.peer_fin_received {
            // spec §8.9: a duplicate FIN is re-ACKed (plain ACK), TIME_WAIT not refreshed.
            return;
        }
        if fin_seq < self.receive.next() {
            return;
        }
        self.peer_fin = Some(fin_seq);
        self.check_in_order_fin();
    }

    /// Accepts the peer's FIN once every byte before it has arrived.
    pub(super) fn check_in_order_fin(&mut self) {
        if self.peer_fin_received || self.peer_fin != Some(self.receive.next()) {
            return;
        }
        self.peer_fin_received = true;
        self.receive.consume_fin();
        self.ack_pending = true;
        self.events.push_back(StreamEvent::PeerClosed);
        match self.state {
            State::Established => {
                // No half-close (spec §8.9): our FIN follows what is still unsent. If nothing
                // is, it leaves with the next transmit as the FIN|ACK answer Go expects.
                self.fin_queued = true;
                self.state = State::CloseWait;
            }
            // Our FIN is already out: answer with a plain ACK, never FIN|ACK (no ping-pong).
            State::FinWait if self.fin_sent => self.enter_time_wait(),
            State::FinWait => self.state = State::CloseWait,
            _ => {}
        }
    }
}
