//! The connection state machine: handshake, data transfer, loss recovery, closing (spec §8).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::config::{
    Config, DELAYED_ACK, DELAYED_ACK_SEGMENTS, DUPLICATE_ACK_THRESHOLD, FIN_WAIT_TIMEOUT,
    KEEPALIVE_MAX_PROBES, KEEPALIVE_PROBE_INTERVAL, MAX_TRANSMISSIONS, NAGLE_DELAY,
    SYN_INITIAL_RTO, SYN_MAX_RETRIES, SYN_MAX_RTO, TIME_WAIT, ZERO_WINDOW_PROBE_INITIAL,
    ZERO_WINDOW_PROBE_MAX,
};
use super::congestion::{AckProgress, Congestion};
use super::error::StreamError;
use super::recv::{Arrival, ReceiveBuffer};
use super::rtt::RttEstimator;
use super::sack::{SackBlocks, SACK_MAGIC};
use super::segment::{Flags, Segment};
use super::send::{RetransmitQueue, SendBuffer, SentSegment};
use super::seq::{serial_lt, to_wire, unwrap};
use super::timer::{Timer, TimerTable};
use crate::time::Instant;

/// Our initial sequence number: always 0, as in every Go version (spec §8.3).
pub const INITIAL_SEQUENCE: u32 = 0;
/// Duplicate ACKs that each release one new segment beyond the window (RFC 3042).
const LIMITED_TRANSMIT_SEGMENTS: u32 = 2;
/// Smallest reordering allowance of time-based loss detection (RFC 8985 uses RTT/4).
const RACK_MIN_REORDERING_WINDOW: Duration = Duration::from_millis(1);

/// Connection states, named as in spec §8.1 (LISTEN lives in the node layer).
///
/// There is no half-close, as in the Go daemons (spec §8.9): a FIN from the peer closes both
/// directions. Data already written is still delivered, then our FIN follows; `CloseWait` is
/// the time that takes. Receiving a FIN never reopens writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// SYN received and answered, waiting for the final ACK.
    SynReceived,
    /// Open in both directions.
    Established,
    /// We closed: our FIN is queued or sent, the peer may still send until its FIN.
    FinWait,
    /// The peer's FIN arrived: flushing what we had written, then sending our FIN.
    CloseWait,
    /// Both FINs exchanged: answering retransmitted FINs until the 10 s timer ends.
    TimeWait,
    /// Finished; nothing more is sent or accepted.
    Closed,
}

/// What the application should learn about, drained with [`Connection::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// The three-way handshake completed.
    Connected,
    /// New in-order data can be read.
    Readable,
    /// A write that was refused or cut short can now make progress.
    Writable,
    /// The peer's FIN arrived: after the buffered data, reads return end of stream.
    PeerClosed,
    /// The peer reset the connection.
    Reset,
    /// Retransmissions, SYN retries or keepalive probes were exhausted; an RST was sent.
    TimedOut,
    /// The connection reached [`State::Closed`]; always the last event.
    Closed,
}

/// One reliable stream (spec §8) as a sans-IO state machine.
///
/// Feed it received segments ([`handle_segment`](Self::handle_segment)) and expired timers
/// ([`handle_timeout`](Self::handle_timeout)); drain [`poll_transmit`](Self::poll_transmit)
/// and [`poll_event`](Self::poll_event); wait until [`poll_timeout`](Self::poll_timeout).
#[derive(Debug, Clone)]
pub struct Connection {
    config: Config,
    state: State,
    /// The latest `now` the driver passed in; lets `read`/`write`/`close` stay clock-free.
    now: Instant,
    timers: TimerTable,
    events: VecDeque<StreamEvent>,
    /// Why the connection closed, as `read`/`write` report it afterwards.
    close_reason: Option<StreamError>,

    // Handshake.
    /// Our SYN (dialer) or SYN-ACK (responder) must be (re)sent.
    syn_pending: bool,
    syn_first_sent: Option<Instant>,
    syn_transmissions: u32,
    syn_retries: u32,

    // Send side.
    send_buffer: SendBuffer,
    retransmit: RetransmitQueue,
    /// Oldest unacknowledged absolute sequence number.
    snd_una: u64,
    /// Next new absolute sequence number to send.
    snd_nxt: u64,
    /// The peer's free receive slots, in segments (spec §8.6).
    peer_window: u16,
    rtt: RttEstimator,
    congestion: Congestion,
    duplicate_acks: u32,
    last_ack_window: u16,
    /// Incremented per loss event; a segment is retransmitted at most once per epoch.
    recovery_epoch: u32,
    /// Send time of the newest segment known delivered (RACK's reference point).
    rack_delivered_sent: Option<Instant>,
    /// Retransmission timeouts since the cumulative ACK last advanced.
    consecutive_timeouts: u8,
    fin_queued: bool,
    fin_sent: bool,
    nagle_expired: bool,
    zero_window_probe_interval: Duration,
    write_blocked: bool,

    // Receive side.
    receive: ReceiveBuffer,
    /// Absolute sequence number of the peer's FIN, once seen (possibly ahead of a gap).
    peer_fin: Option<u64>,
    peer_fin_received: bool,
    ack_pending: bool,
    unacked_segments: u32,
    last_advertised_window: u16,
    readable_signalled: bool,

    // Liveness.
    last_received: Instant,
    last_data: Instant,
    /// When we entered FIN_WAIT (its 10 s inactivity limit counts from here at the earliest).
    fin_wait_since: Instant,
    keepalive_probes: u32,
    probe_pending: bool,
    rst_pending: bool,
}

impl Connection {
    fn new(now: Instant, config: Config, state: State, receive_next: u64) -> Self {
        let mss = usize::from(config.mss.max(1));
        let first_data = u64::from(INITIAL_SEQUENCE) + 1;
        Connection {
            state,
            now,
            timers: TimerTable::default(),
            events: VecDeque::new(),
            close_reason: None,
            syn_pending: true,
            syn_first_sent: None,
            syn_transmissions: 0,
            syn_retries: 0,
            send_buffer: SendBuffer::new(config.send_buffer_bytes, first_data),
            retransmit: RetransmitQueue::default(),
            snd_una: u64::from(INITIAL_SEQUENCE),
            snd_nxt: first_data,
            peer_window: 0,
            rtt: RttEstimator::new(),
            congestion: Congestion::new(mss),
            duplicate_acks: 0,
            last_ack_window: 0,
            recovery_epoch: 0,
            rack_delivered_sent: None,
            consecutive_timeouts: 0,
            fin_queued: false,
            fin_sent: false,
            nagle_expired: false,
            zero_window_probe_interval: ZERO_WINDOW_PROBE_INITIAL,
            write_blocked: false,
            receive: ReceiveBuffer::new(
                config.receive_capacity_segments,
                config.max_out_of_order_segments,
                receive_next,
            ),
            peer_fin: None,
            peer_fin_received: false,
            ack_pending: false,
            unacked_segments: 0,
            last_advertised_window: config.receive_capacity_segments,
            readable_signalled: false,
            last_received: now,
            last_data: now,
            fin_wait_since: now,
            keepalive_probes: 0,
            probe_pending: false,
            rst_pending: false,
            config,
        }
    }

    /// Opens a connection as the dialer: the first [`poll_transmit`](Self::poll_transmit)
    /// returns the SYN (spec §8.3).
    pub fn connect(now: Instant, config: Config) -> Self {
        let mut conn = Connection::new(now, config, State::SynSent, 0);
        conn.timers.set(Timer::SynRetransmit, now + SYN_INITIAL_RTO);
        conn
    }

    /// Answers a received SYN as the responder: the first [`poll_transmit`](Self::poll_transmit)
    /// returns the SYN-ACK (spec §8.3). The node layer has already dispatched `syn` as a SYN
    /// without ACK (§8.2) and applied port, trust and rate policies.
    pub fn accept(now: Instant, config: Config, syn: &Segment<&[u8]>) -> Self {
        let peer_first_data = u64::from(syn.seq) + 1;
        let mut conn = Connection::new(now, config, State::SynReceived, peer_first_data);
        conn.peer_window = syn.window;
        conn.last_ack_window = syn.window;
        conn.timers.set(Timer::SynRetransmit, now + SYN_INITIAL_RTO);
        conn
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection reached [`State::Closed`]. A final RST may still be waiting in
    /// [`poll_transmit`](Self::poll_transmit) and events in [`poll_event`](Self::poll_event).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Bytes [`write`](Self::write) would accept now.
    pub fn writable_bytes(&self) -> usize {
        if self.accepts_writes() {
            self.send_buffer.free()
        } else {
            0
        }
    }

    /// The smoothed round-trip time, once measured (RFC 6298 SRTT).
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Bytes [`read`](Self::read) would return now.
    pub fn readable_bytes(&self) -> usize {
        self.receive.readable_bytes()
    }

    fn accepts_writes(&self) -> bool {
        matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established
        ) && !self.fin_queued
    }

    // ---------------------------------------------------------------- application side

    /// Queues bytes for sending; returns how many were taken (possibly fewer than offered).
    ///
    /// A full send buffer is [`StreamError::WouldBlock`], never silent loss; a
    /// [`StreamEvent::Writable`] follows when acknowledgements free space. Writing is allowed
    /// from the start of the handshake until `close` or the peer's FIN.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, StreamError> {
        if self.state == State::Closed {
            return Err(self.close_reason.unwrap_or(StreamError::Closed));
        }
        if !self.accepts_writes() {
            return Err(StreamError::Closed);
        }
        if bytes.is_empty() {
            return Ok(0);
        }
        let taken = self.send_buffer.push(bytes);
        if taken < bytes.len() {
            self.write_blocked = true;
        }
        if taken == 0 {
            return Err(StreamError::WouldBlock);
        }
        self.last_data = self.now;
        self.refresh_timers(self.now);
        Ok(taken)
    }

    /// Copies received in-order bytes into `buf`.
    ///
    /// `Ok(0)` for a non-empty `buf` means end of stream (the peer's FIN, all data read);
    /// [`StreamError::WouldBlock`] means nothing yet; after a reset or timeout the remaining
    /// buffered bytes are still returned, then the error.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        let n = self.receive.read(buf);
        if n > 0 || buf.is_empty() {
            self.after_read();
            return Ok(n);
        }
        self.end_of_data().map(|()| 0)
    }

    /// Takes the next received bytes (at most `max`) without copying whole segments.
    ///
    /// `Ok(None)` is end of stream; errors as for [`read`](Self::read).
    pub fn read_chunk(&mut self, max: usize) -> Result<Option<Vec<u8>>, StreamError> {
        if max > 0 {
            if let Some(chunk) = self.receive.read_chunk(max) {
                self.after_read();
                return Ok(Some(chunk));
            }
        }
        self.end_of_data().map(|()| None)
    }

    /// What a read that found no data reports: `Ok` at end of stream, else why not.
    fn end_of_data(&self) -> Result<(), StreamError> {
        if self.peer_fin_received {
            return Ok(());
        }
        match self.close_reason {
            Some(reason) => Err(reason),
            None => Err(StreamError::WouldBlock),
        }
    }

    fn after_read(&mut self) {
        if self.receive.readable_bytes() == 0 {
            self.readable_signalled = false;
        }
        if self.state == State::Closed {
            return;
        }
        // Reading frees slots and may pull buffered out-of-order data, and with it the FIN,
        // into sequence.
        self.check_in_order_fin();

        // Tell the peer when a closed or nearly closed window reopened: the Go sender only
        // learns of it from a packet we send (spec §8.8).
        let free = self.receive.free_slots();
        let half = self.config.receive_capacity_segments / 2;
        let last = self.last_advertised_window;
        if (last == 0 && free > 0) || (last < half && free >= half) {
            self.ack_pending = true;
        }
        self.refresh_timers(self.now);
    }

    /// Closes gracefully: written data is delivered, then a FIN (spec §8.9).
    ///
    /// During the handshake the FIN is queued behind any written data and follows once the
    /// connection is established; use [`abort`](Self::abort) to give up at once.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent | State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait;
                self.fin_wait_since = self.now;
            }
            _ => {}
        }
        self.refresh_timers(self.now);
    }

    /// Aborts: sends RST (spec §8.9) and closes at once, dropping unsent data.
    pub fn abort(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.rst_pending = true;
        self.finish(StreamError::Closed);
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- timers

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
        // spec §8.7: 8 transmissions of a segment, then RST.
        self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
        if self.consecutive_timeouts >= MAX_TRANSMISSIONS {
            self.time_out();
            return;
        }
        self.recovery_epoch = self.recovery_epoch.wrapping_add(1);
        let flight = usize::try_from(self.retransmit.flight_bytes()).unwrap_or(usize::MAX);
        self.congestion.on_timeout(flight, self.snd_nxt);
        self.retransmit.mark_all_unsacked_lost(self.recovery_epoch);
        self.duplicate_acks = 0;
        self.rtt.back_off();
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    /// Recomputes the timers that follow from the state rather than from one event.
    fn refresh_timers(&mut self, now: Instant) {
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
            State::Established => self.config.idle_timeout.map(|t| self.last_data + t),
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

    // ---------------------------------------------------------------- closing

    /// Gives up: RST to the peer (if it may hold state), `TimedOut`, `Closed`.
    fn time_out(&mut self) {
        self.rst_pending = self.state != State::SynSent;
        self.finish(StreamError::TimedOut);
    }

    /// Moves to `Closed`, reporting `reason` (`Closed` for a local or graceful end).
    fn finish(&mut self, reason: StreamError) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.close_reason = Some(reason);
        self.timers.stop_all();
        self.retransmit = RetransmitQueue::default();
        self.syn_pending = false;
        self.ack_pending = false;
        self.probe_pending = false;
        match reason {
            StreamError::Reset => self.events.push_back(StreamEvent::Reset),
            StreamError::TimedOut => self.events.push_back(StreamEvent::TimedOut),
            _ => {}
        }
        self.events.push_back(StreamEvent::Closed);
    }

    fn enter_time_wait(&mut self) {
        self.state = State::TimeWait;
        // The TimeWait timer starts in refresh_timers once everything we sent is acknowledged.
    }

    // ---------------------------------------------------------------- receiving

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
    fn check_in_order_fin(&mut self) {
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

    // ---------------------------------------------------------------- transmitting

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
    fn sends_data(&self) -> bool {
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
        let head = self
            .send_buffer
            .copy_out(self.snd_nxt, SACK_MAGIC.len() + 1);
        if head.starts_with(&SACK_MAGIC)
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
