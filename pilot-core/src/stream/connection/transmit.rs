//! Transmitting: choosing the next segment (RST, SYN, retransmission, new data, FIN, ACK,
//! probe) under congestion control, flow control and Nagle.

use alloc::vec::Vec;

use super::{Connection, State, INITIAL_SEQUENCE, LIMITED_TRANSMIT_SEGMENTS};
use crate::stream::config::NAGLE_DELAY;
use crate::stream::sack::{SackBlocks, SACK_MAGIC};
use crate::stream::segment::{Flags, Segment};
use crate::stream::send::SentSegment;
use crate::stream::seq::to_wire;
use crate::stream::timer::Timer;
use crate::time::Instant;

impl Connection {
    /// The next segment to send, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        self.now = self.now.max(now);
        let segment = self.next_segment(now);
        self.refresh_timers(now);
        segment
    }

    fn next_segment(&mut self, now: Instant) -> Option<Segment> {
        if self.rst_pending {
            self.rst_pending = false;
            // spec §8.9: RST carries seq and ack 0.
            return Some(Segment {
                flags: Flags::RST,
                seq: 0,
                ack: 0,
                window: self.receive.free_slots(),
                payload: Vec::new(),
            });
        }
        match self.state {
            State::Closed => None,
            State::SynSent | State::SynReceived => self.transmit_syn(now),
            _ => self
                .transmit_lost(now)
                .or_else(|| self.transmit_new_data(now))
                .or_else(|| self.transmit_fin(now))
                .or_else(|| self.transmit_ack())
                .or_else(|| self.transmit_probe()),
        }
    }

    fn transmit_syn(&mut self, now: Instant) -> Option<Segment> {
        if !self.syn_pending {
            return None;
        }
        self.syn_pending = false;
        self.syn_transmissions += 1;
        self.syn_first_sent.get_or_insert(now);
        let window = self.receive.free_slots();
        Some(if self.state == State::SynSent {
            Segment {
                flags: Flags::SYN,
                seq: INITIAL_SEQUENCE,
                ack: 0,
                window,
                payload: Vec::new(),
            }
        } else {
            self.last_advertised_window = window;
            Segment {
                flags: Flags::SYN | Flags::ACK,
                seq: INITIAL_SEQUENCE,
                ack: to_wire(self.receive.next()),
                window,
                payload: Vec::new(),
            }
        })
    }

    /// States in which new data and our FIN may go out.
    pub(super) fn sends_data(&self) -> bool {
        matches!(
            self.state,
            State::Established | State::FinWait | State::CloseWait
        ) && !self.fin_sent
    }

    fn transmit_lost(&mut self, now: Instant) -> Option<Segment> {
        let len = self.retransmit.first_lost_len()?;
        let flight = self.retransmit.flight_bytes();
        let cwnd = self.congestion.window() as u64;
        // With nothing in flight one segment always goes, whatever the window.
        if flight > 0 && flight + len > cwnd {
            return None;
        }
        let sent = self
            .retransmit
            .retransmit_first_lost(self.recovery_epoch, now)?;
        self.stats.segments_retransmitted += 1;
        self.timers
            .set_if_idle(Timer::Retransmit, now + self.rtt.rto());
        Some(self.sent_segment(&sent))
    }

    fn transmit_new_data(&mut self, now: Instant) -> Option<Segment> {
        if !self.sends_data() {
            return None;
        }
        let unsent = self.send_buffer.end().saturating_sub(self.snd_nxt);
        if unsent == 0 {
            return None;
        }
        let mss = u64::from(self.config.mss.max(1));
        let len = unsent.min(mss);

        // Flow control: the peer counts segments (spec §8.6), congestion control counts bytes.
        if usize::from(self.peer_window) <= self.retransmit.flight_segments() {
            return None;
        }
        // RFC 3042 limited transmit: each of the first two duplicate ACKs lets one new segment
        // out, so a small window can still produce the third duplicate ACK.
        let limited_transmit = if self.congestion.in_recovery() {
            0
        } else {
            u64::from(self.duplicate_acks.min(LIMITED_TRANSMIT_SEGMENTS)) * mss
        };
        let cwnd = self.congestion.window() as u64 + limited_transmit;
        let window = cwnd.min(u64::from(self.peer_window) * mss);
        if self.retransmit.flight_bytes() + len > window {
            return None;
        }

        // spec §8.8 (Nagle): a partial segment waits while data is unacknowledged, for 40 ms.
        let partial = len < mss;
        if partial
            && self.config.nagle
            && !self.fin_queued
            && !self.retransmit.is_empty()
            && !self.nagle_expired
        {
            self.timers.set_if_idle(Timer::Nagle, now + NAGLE_DELAY);
            return None;
        }
        self.timers.stop(Timer::Nagle);
        self.nagle_expired = false;
        let len = self.avoid_sack_lookalike(len);

        // len ≤ mss ≤ u16::MAX.
        let sent = SentSegment::new(self.snd_nxt, len as u32, false, now);
        self.stats.segments_sent += 1;
        self.snd_nxt += len;
        self.retransmit.push(sent.clone());
        self.last_data = now;
        self.timers
            .set_if_idle(Timer::Retransmit, now + self.rtt.rto());
        Some(self.sent_segment(&sent))
    }

    /// Shortens a data segment whose payload would parse as SACK to the 4 magic bytes.
    ///
    /// spec §8.5: every receiver decodes a non-empty pure-ACK payload as SACK first, so such a
    /// segment would be swallowed and never acknowledged. Four bytes cannot parse as SACK, and
    /// the rest no longer starts with the magic, so both halves arrive as data.
    fn avoid_sack_lookalike(&self, len: u64) -> u64 {
        let magic_len = SACK_MAGIC.len() as u64;
        if len <= magic_len {
            return len;
        }
        if self.send_buffer.has_prefix_at(self.snd_nxt, &SACK_MAGIC)
            && SackBlocks::decode(&self.send_buffer.copy_out(self.snd_nxt, len as usize)).is_ok()
        {
            magic_len
        } else {
            len
        }
    }

    fn transmit_fin(&mut self, now: Instant) -> Option<Segment> {
        if !self.fin_queued || !self.sends_data() || self.send_buffer.end() != self.snd_nxt {
            return None;
        }
        // spec §8.9: the FIN consumes one sequence number and is retransmitted as a FIN.
        let sent = SentSegment::new(self.snd_nxt, 0, true, now);
        self.stats.segments_sent += 1;
        self.snd_nxt += 1;
        self.fin_sent = true;
        self.retransmit.push(sent.clone());
        self.timers
            .set_if_idle(Timer::Retransmit, now + self.rtt.rto());
        if self.state == State::CloseWait {
            self.enter_time_wait();
        }
        Some(self.sent_segment(&sent))
    }

    fn transmit_probe(&mut self) -> Option<Segment> {
        if !self.probe_pending {
            return None;
        }
        self.probe_pending = false;
        let seq = self.snd_nxt.wrapping_sub(1);
        Some(self.ack_segment(Flags::ACK, seq, Vec::new()))
    }

    fn transmit_ack(&mut self) -> Option<Segment> {
        if !self.ack_pending {
            return None;
        }
        // spec §8.5: SACK rides only on pure ACKs.
        let mut payload = Vec::new();
        if self.receive.has_out_of_order() {
            self.receive.sack_blocks().encode(&mut payload);
        }
        Some(self.ack_segment(Flags::ACK, self.snd_nxt, payload))
    }

    /// A data or FIN segment from the retransmission queue, with the current ACK and window.
    fn sent_segment(&mut self, sent: &SentSegment) -> Segment {
        let payload = self.send_buffer.copy_out(sent.seq, sent.len as usize);
        let flags = if sent.fin {
            Flags::FIN | Flags::ACK
        } else {
            Flags::ACK
        };
        self.ack_segment(flags, sent.seq, payload)
    }

    /// Any segment carrying our ACK: it settles every pending acknowledgement.
    fn ack_segment(&mut self, flags: Flags, seq: u64, payload: Vec<u8>) -> Segment {
        let window = self.receive.free_slots();
        self.ack_pending = false;
        self.unacked_segments = 0;
        self.timers.stop(Timer::DelayedAck);
        self.last_advertised_window = window;
        Segment {
            flags,
            seq: to_wire(seq),
            ack: to_wire(self.receive.next()),
            window,
            payload,
        }
    }
}
