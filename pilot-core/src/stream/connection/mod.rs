//! The connection state machine: handshake, data transfer, loss recovery, closing (spec §8).
//!
//! This file holds the state, the application-facing calls and closing; `receive`, `transmit`
//! and `timers` hold the three ways the state changes.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::config::{Config, SYN_INITIAL_RTO, ZERO_WINDOW_PROBE_INITIAL};
use super::congestion::Congestion;
use super::error::StreamError;
use super::recv::ReceiveBuffer;
use super::rtt::RttEstimator;
use super::segment::Segment;
use super::send::{RetransmitQueue, SendBuffer};
use super::timer::{Timer, TimerTable};
use crate::time::Instant;

mod receive;
mod timers;
mod transmit;

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

/// Counters of one connection's sender, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Data and FIN segments sent for the first time.
    pub segments_sent: u64,
    /// Data and FIN segments sent again (fast retransmit, partial ACK, timeout).
    pub segments_retransmitted: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// Loss events recovered without a timeout (third duplicate ACK or time-based detection).
    pub fast_recoveries: u64,
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
    /// Probes sent since the peer last advertised a non-zero window.
    zero_window_probes: u32,
    stats: Stats,
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
            zero_window_probes: 0,
            stats: Stats::default(),
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

    /// Sender counters.
    pub fn stats(&self) -> Stats {
        self.stats
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
        if max == 0 && self.receive.readable_bytes() > 0 {
            return Ok(Some(Vec::new()));
        }
        if let Some(chunk) = self.receive.read_chunk(max) {
            self.after_read();
            return Ok(Some(chunk));
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
        self.last_data = self.now;
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
}
