//! Per-connection settings and the protocol constants behind them (spec §8).

use core::time::Duration;

/// Default payload bytes per segment: 1024 keeps every PILS frame under the UDP budget, so no
/// frame needs PILF fragmentation (spec §3.9, §8.7 V-FORK value).
pub const DEFAULT_MSS_BYTES: u16 = 1024;
/// Default receive queue capacity in segments (spec §8.6, V-FEB/V-FORK: 512 slots).
pub const DEFAULT_RECEIVE_CAPACITY_SEGMENTS: u16 = 512;
/// Default bound on buffered out-of-order segments (spec §8.4, V-NEW: 1024).
pub const DEFAULT_MAX_OUT_OF_ORDER_SEGMENTS: usize = 1024;
/// Default send buffer (written but unacknowledged bytes): 512 KiB, the most a default peer
/// window (512 segments × 1024 bytes) lets us have in flight.
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 512 * 1024;
/// Largest payload accepted from the peer in one segment: V-NEW and V-FEB send 4096-byte
/// segments (spec §8.7); anything larger is dropped so buffers stay bounded.
pub const MAX_RECEIVE_SEGMENT_BYTES: usize = 4096;

/// First SYN / SYN-ACK retransmission delay (spec §8.3, V-NEW: 250 ms).
pub const SYN_INITIAL_RTO: Duration = Duration::from_millis(250);
/// Cap of the doubling SYN retransmission delay (spec §8.3).
pub const SYN_MAX_RTO: Duration = Duration::from_secs(8);
/// SYN retransmissions before giving up (spec §8.3, V-NEW: 7).
pub const SYN_MAX_RETRIES: u32 = 7;
/// Transmissions of one segment (original included) after which the next timeout resets the
/// connection (spec §8.7).
pub const MAX_TRANSMISSIONS: u8 = 8;
/// Delayed ACK: acknowledge at the latest this long after in-order data arrived (spec §8.4).
pub const DELAYED_ACK: Duration = Duration::from_millis(40);
/// Delayed ACK: acknowledge at once when this many in-order segments are unacknowledged.
pub const DELAYED_ACK_SEGMENTS: u32 = 2;
/// Duplicate pure ACKs that trigger a fast retransmit (spec §8.7).
pub const DUPLICATE_ACK_THRESHOLD: u32 = 3;
/// Longest a partial segment waits for outstanding data to be acknowledged (spec §8.8).
pub const NAGLE_DELAY: Duration = Duration::from_millis(40);
/// First zero-window probe after the peer's window closed (spec §8.8).
pub const ZERO_WINDOW_PROBE_INITIAL: Duration = Duration::from_millis(500);
/// Cap of the doubling zero-window probe interval (spec §8.8).
pub const ZERO_WINDOW_PROBE_MAX: Duration = Duration::from_secs(30);
/// Probes into a zero window (probe timer or retransmission timeout) before giving up
/// (spec §8.8, V-NEW: 30).
pub const ZERO_WINDOW_MAX_PROBES: u32 = 30;
/// Idle time (nothing received) before the first keepalive probe (spec §8.9, V-FORK/V-NEW).
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between keepalive probes once probing started (the Go daemons' 15 s sweep, §8.9).
pub const KEEPALIVE_PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered keepalive probes after which the connection is reset (spec §8.9).
pub const KEEPALIVE_MAX_PROBES: u32 = 3;
/// No application data in either direction for this long closes the stream with FIN (§8.9).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// FIN_WAIT without any received segment for this long is closed (spec §8.9, V-FORK/V-NEW).
pub const FIN_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long TIME_WAIT lasts (spec §8.9).
pub const TIME_WAIT: Duration = Duration::from_secs(10);

/// Settings of one connection. `Config::default()` gives the spec values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Payload bytes per data segment we send.
    pub mss: u16,
    /// Receive queue capacity in segments; the advertised window is its free part (§8.6).
    pub receive_capacity_segments: u16,
    /// Most out-of-order segments buffered; further ones are dropped (spec §8.4).
    pub max_out_of_order_segments: usize,
    /// Bytes the application may have written but not yet had acknowledged.
    pub send_buffer_bytes: usize,
    /// Coalesce small writes while data is unacknowledged (spec §8.8).
    pub nagle: bool,
    /// Idle time before keepalive probing; `None` disables keepalive.
    pub keepalive_idle: Option<Duration>,
    /// Application-idle time after which the stream is closed with FIN; `None` disables it.
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: DEFAULT_MSS_BYTES,
            receive_capacity_segments: DEFAULT_RECEIVE_CAPACITY_SEGMENTS,
            max_out_of_order_segments: DEFAULT_MAX_OUT_OF_ORDER_SEGMENTS,
            send_buffer_bytes: DEFAULT_SEND_BUFFER_BYTES,
            nagle: true,
            keepalive_idle: Some(DEFAULT_KEEPALIVE_IDLE),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}
