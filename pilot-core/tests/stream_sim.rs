//! Deterministic simulation of two stream connections over a lossy link (spec §8).
//!
//! A seeded link drops, duplicates, delays and reorders segments; a simulated clock jumps to
//! the earliest pending delivery or `poll_timeout`. Every run replays exactly, and every loop
//! is bounded by a step budget.
//!
//! The lossy bulk test reads its size from the environment: `STREAM_SIM_SEEDS` and
//! `STREAM_SIM_BYTES`. Release builds default to the 100 seeds × 10 MiB (about 15 s
//! on one core); debug builds, which `cargo test` uses, default to 20 seeds × 1 MiB.
//! `STREAM_SIM_STATS=1` prints simulated time and retransmission counts per seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::time::Duration;

use pilot_core::stream::sack::SackBlocks;
use pilot_core::stream::{
    Config, Connection, Flags, Segment, State, StreamError, StreamEvent, DEFAULT_MSS_BYTES,
    KEEPALIVE_PROBE_INTERVAL, TIME_WAIT,
};
use pilot_core::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

const MAX_STEPS: usize = 20_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Behaviour of one direction of the link.
#[derive(Debug, Clone, Copy)]
struct Link {
    loss: f64,
    duplicate: f64,
    delay: Duration,
    /// Extra random delay in `[0, jitter)`: segments overtake each other.
    jitter: Duration,
}

impl Link {
    fn clean() -> Self {
        Link {
            loss: 0.0,
            duplicate: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
        }
    }

    fn hostile() -> Self {
        Link {
            loss: 0.10,
            duplicate: 0.05,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(15),
        }
    }
}

/// Returns `true` to drop a segment on purpose (scripted loss on top of the link's).
type Filter = Box<dyn FnMut(Side, &Segment) -> bool>;

struct Sim {
    now: Instant,
    rng: ChaCha8Rng,
    a: Connection,
    /// The responder exists once a SYN reached it (it plays the listener).
    b: Option<Connection>,
    b_config: Config,
    link: Link,
    in_flight: BTreeMap<(Instant, u64), (Side, Segment)>,
    order: u64,
    /// Every segment each side emitted, before the link decided its fate.
    sent: Vec<(Instant, Side, Segment)>,
    events: Vec<(Instant, Side, StreamEvent)>,
    filter: Option<Filter>,
    steps: usize,
}

impl Sim {
    fn new(seed: u64, link: Link, a_config: Config, b_config: Config) -> Sim {
        let now = Instant::from_millis(1_000);
        Sim {
            now,
            rng: ChaCha8Rng::seed_from_u64(seed),
            a: Connection::connect(now, a_config),
            b: None,
            b_config,
            link,
            in_flight: BTreeMap::new(),
            order: 0,
            sent: Vec::new(),
            events: Vec::new(),
            filter: None,
            steps: 0,
        }
    }

    fn b(&mut self) -> &mut Connection {
        self.b.as_mut().expect("responder not created yet")
    }

    fn conn(&mut self, side: Side) -> Option<&mut Connection> {
        match side {
            Side::A => Some(&mut self.a),
            Side::B => self.b.as_mut(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// Drains transmissions and events of both sides into the link and the event log.
    fn pump(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let now = self.now;
                let Some(conn) = self.conn(side) else { break };
                let Some(segment) = conn.poll_transmit(now) else {
                    break;
                };
                self.sent.push((now, side, segment.clone()));
                if let Some(filter) = self.filter.as_mut() {
                    if filter(side, &segment) {
                        continue;
                    }
                }
                if self.chance(self.link.loss) {
                    continue;
                }
                let copies = if self.chance(self.link.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let jitter_micros = self.link.jitter.as_micros() as u64;
                    let jitter = if jitter_micros == 0 {
                        0
                    } else {
                        self.rng.next_u64() % jitter_micros
                    };
                    let at = now + self.link.delay + Duration::from_micros(jitter);
                    self.order += 1;
                    self.in_flight
                        .insert((at, self.order), (side.other(), segment.clone()));
                }
            }
            loop {
                let now = self.now;
                let Some(conn) = self.conn(side) else { break };
                let Some(event) = conn.poll_event() else {
                    break;
                };
                self.events.push((now, side, event));
            }
        }
    }

    fn deliver(&mut self, to: Side, segment: Segment) {
        let now = self.now;
        match to {
            Side::A => self.a.handle_segment(now, segment.as_borrowed()),
            Side::B => match self.b.as_mut() {
                Some(b) => b.handle_segment(now, segment.as_borrowed()),
                None if segment.flags == Flags::SYN => {
                    self.b = Some(Connection::accept(
                        now,
                        self.b_config.clone(),
                        &segment.as_borrowed(),
                    ));
                }
                None => {}
            },
        }
    }

    /// Advances the clock to the next delivery or timer. `false` when nothing is pending.
    fn step(&mut self) -> bool {
        self.steps += 1;
        assert!(
            self.steps < MAX_STEPS,
            "simulation did not settle within {MAX_STEPS} steps"
        );
        self.pump();
        let next_delivery = self.in_flight.keys().next().map(|(at, _)| *at);
        let next_timer = [
            self.a.poll_timeout(),
            self.b.as_ref().and_then(Connection::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (to, segment) = entry.remove();
            self.deliver(to, segment);
            // The driver loop: after each input, drain the outputs.
            self.pump();
        }
        let now = self.now;
        for side in [Side::A, Side::B] {
            if let Some(conn) = self.conn(side) {
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
            }
        }
        self.pump();
        true
    }

    /// Steps until `done` holds (checked before each step); panics if the network goes quiet
    /// first.
    fn run_until(&mut self, mut done: impl FnMut(&mut Sim) -> bool) {
        loop {
            if done(self) {
                return;
            }
            if !self.step() {
                self.dump(80);
                panic!("nothing left to do before the condition held");
            }
        }
    }

    /// Steps until no delivery and no timer is pending.
    fn run_to_quiet(&mut self) {
        while self.step() {}
    }

    fn events_of(&self, side: Side) -> Vec<StreamEvent> {
        self.events
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(_, _, e)| *e)
            .collect()
    }

    fn sent_by(&self, side: Side) -> impl Iterator<Item = &Segment> {
        self.sent
            .iter()
            .filter(move |(_, s, _)| *s == side)
            .map(|(_, _, seg)| seg)
    }

    fn count_sent(&self, side: Side, flags: Flags) -> usize {
        self.sent_by(side).filter(|seg| seg.flags == flags).count()
    }

    /// Prints the segment trace (for debugging a failing scenario).
    fn dump(&self, last: usize) {
        for (t, side, s) in self.sent.iter().skip(self.sent.len().saturating_sub(last)) {
            eprintln!(
                "{:>10} {side:?} {:?} seq={} ack={} win={} len={}",
                t.as_micros(),
                s.flags,
                s.seq,
                s.ack,
                s.window,
                s.payload.len()
            );
        }
        for (t, side, e) in self
            .events
            .iter()
            .skip(self.events.len().saturating_sub(10))
        {
            eprintln!("{:>10} {side:?} event {e:?}", t.as_micros());
        }
    }

    fn connected_at(&self, side: Side) -> Instant {
        self.events
            .iter()
            .find(|(_, s, e)| *s == side && *e == StreamEvent::Connected)
            .unwrap()
            .0
    }

    fn count_pure_acks(&self, side: Side) -> usize {
        self.sent_by(side)
            .filter(|seg| seg.flags == Flags::ACK && seg.payload.is_empty())
            .count()
    }

    fn established(&self) -> bool {
        self.a.state() == State::Established
            && self
                .b
                .as_ref()
                .is_some_and(|b| b.state() == State::Established)
    }
}

fn handshake(sim: &mut Sim) {
    sim.run_until(|sim| sim.established());
}

fn test_data(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_DA7A).fill_bytes(&mut data);
    data
}

/// Sends `data` from A to B, closes from A, and runs until both sides are closed.
/// Returns the SHA-256 of what B read.
fn transfer(sim: &mut Sim, data: &[u8]) -> [u8; 32] {
    let mut written = 0;
    let mut closed = false;
    let mut hasher = Sha256::new();
    let mut received = 0usize;
    let mut eof = false;
    let mut buf = vec![0u8; 64 * 1024];
    sim.run_until(|sim| {
        while written < data.len() {
            match sim.a.write(&data[written..]) {
                Ok(n) => written += n,
                Err(StreamError::WouldBlock) => break,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        if written == data.len() && !closed {
            sim.a.close();
            closed = true;
        }
        if let Some(b) = sim.b.as_mut() {
            while !eof {
                match b.read(&mut buf) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        received += n;
                    }
                    Err(StreamError::WouldBlock) => break,
                    Err(e) => {
                        sim.dump(150);
                        panic!("read failed after {received} bytes: {e}")
                    }
                }
            }
        }
        eof && sim.a.is_closed() && sim.b.as_ref().is_some_and(Connection::is_closed)
    });
    assert_eq!(received, data.len());
    hasher.finalize().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn data_segments(sim: &Sim, side: Side) -> Vec<&Segment> {
    sim.sent_by(side)
        .filter(|s| {
            s.flags == Flags::ACK
                && !s.payload.is_empty()
                && SackBlocks::decode(&s.payload).is_err()
        })
        .collect()
}

// ------------------------------------------------------------------------------ handshake

#[test]
fn handshake_completes_with_syn_syn_ack_ack() {
    let mut sim = Sim::new(1, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    sim.run_to_quiet_until_keepalive();
    assert_eq!(sim.events_of(Side::A), [StreamEvent::Connected]);
    assert_eq!(sim.events_of(Side::B), [StreamEvent::Connected]);
    let a: Vec<Flags> = sim.sent_by(Side::A).map(|s| s.flags).collect();
    let b: Vec<Flags> = sim.sent_by(Side::B).map(|s| s.flags).collect();
    assert_eq!(a, [Flags::SYN, Flags::ACK]);
    assert_eq!(b, [Flags::SYN | Flags::ACK]);

    // spec §8.3: ISN 0, ack = peer seq + 1, true window everywhere.
    let syn = &sim.sent[0].2;
    assert_eq!((syn.seq, syn.ack, syn.window), (0, 0, 512));
    let syn_ack = sim.sent_by(Side::B).next().unwrap();
    assert_eq!((syn_ack.seq, syn_ack.ack, syn_ack.window), (0, 1, 512));
    let ack = sim.sent_by(Side::A).nth(1).unwrap();
    assert_eq!((ack.seq, ack.ack, ack.window), (1, 1, 512));
}

impl Sim {
    /// Runs until only keepalive/idle timers (≥ 60 s away) remain.
    fn run_to_quiet_until_keepalive(&mut self) {
        let horizon = self.now + Duration::from_secs(30);
        loop {
            let pending = !self.in_flight.is_empty()
                || self.a.poll_timeout().is_some_and(|t| t < horizon)
                || self
                    .b
                    .as_ref()
                    .and_then(Connection::poll_timeout)
                    .is_some_and(|t| t < horizon);
            if !pending {
                return;
            }
            assert!(self.step());
        }
    }
}

#[test]
fn handshake_survives_a_lost_syn() {
    let mut sim = Sim::new(2, Link::clean(), Config::default(), Config::default());
    let mut dropped = false;
    sim.filter = Some(Box::new(move |_, seg| {
        let drop = seg.flags == Flags::SYN && !dropped;
        dropped |= drop;
        drop
    }));
    handshake(&mut sim);
    assert_eq!(sim.count_sent(Side::A, Flags::SYN), 2);
    // The retransmission came after the V-NEW initial SYN timeout of 250 ms.
    let syn_times: Vec<Instant> = sim
        .sent
        .iter()
        .filter(|(_, _, s)| s.flags == Flags::SYN)
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(syn_times[1] - syn_times[0], Duration::from_millis(250));
    assert_eq!(sim.events_of(Side::A), [StreamEvent::Connected]);
}

#[test]
fn handshake_survives_a_lost_syn_ack() {
    let mut sim = Sim::new(3, Link::clean(), Config::default(), Config::default());
    let mut dropped = false;
    sim.filter = Some(Box::new(move |_, seg| {
        let drop = seg.flags == Flags::SYN | Flags::ACK && !dropped;
        dropped |= drop;
        drop
    }));
    handshake(&mut sim);
    assert!(sim.count_sent(Side::B, Flags::SYN | Flags::ACK) >= 2);
    assert_eq!(sim.events_of(Side::A), [StreamEvent::Connected]);
    assert_eq!(sim.events_of(Side::B), [StreamEvent::Connected]);
}

#[test]
fn data_completes_the_handshake_when_the_final_ack_is_lost() {
    let mut sim = Sim::new(4, Link::clean(), Config::default(), Config::default());
    let mut dropped = false;
    sim.filter = Some(Box::new(move |side, seg| {
        let drop = side == Side::A && seg.flags == Flags::ACK && seg.payload.is_empty() && !dropped;
        dropped |= drop;
        drop
    }));
    sim.run_until(|sim| sim.a.state() == State::Established);
    sim.pump();
    assert_eq!(
        sim.count_pure_acks(Side::A),
        1,
        "the handshake ACK left and was lost"
    );
    sim.a.write(b"first bytes").unwrap();
    sim.run_until(|sim| sim.b.as_ref().is_some_and(|b| b.readable_bytes() == 11));
    assert_eq!(
        sim.count_pure_acks(Side::A),
        1,
        "no second handshake ACK was needed"
    );
    assert_eq!(sim.b().state(), State::Established);
    let mut buf = [0u8; 32];
    assert_eq!(sim.b().read(&mut buf), Ok(11));
    assert_eq!(&buf[..11], b"first bytes");
}

#[test]
fn unanswered_syn_gives_up_after_seven_retries() {
    let mut sim = Sim::new(5, Link::clean(), Config::default(), Config::default());
    sim.filter = Some(Box::new(|_, _| true));
    sim.run_to_quiet();
    assert_eq!(
        sim.count_sent(Side::A, Flags::SYN),
        8,
        "1 SYN + 7 retransmissions"
    );
    assert_eq!(
        sim.count_sent(Side::A, Flags::RST),
        0,
        "no peer state to reset"
    );
    assert_eq!(
        sim.events_of(Side::A),
        [StreamEvent::TimedOut, StreamEvent::Closed]
    );
    assert_eq!(sim.a.write(b"x"), Err(StreamError::TimedOut));
}

#[test]
fn syn_to_a_refusing_peer_ends_in_reset() {
    let mut a = Connection::connect(Instant::ZERO, Config::default());
    let _syn = a.poll_transmit(Instant::ZERO).unwrap();
    let rst = Segment {
        flags: Flags::RST,
        seq: 0,
        ack: 0,
        window: 0,
        payload: &[][..],
    };
    a.handle_segment(Instant::from_millis(5), rst);
    assert_eq!(a.poll_event(), Some(StreamEvent::Reset));
    assert_eq!(a.poll_event(), Some(StreamEvent::Closed));
    assert_eq!(
        a.poll_transmit(Instant::from_millis(5)),
        None,
        "an RST is never answered"
    );
    assert_eq!(a.poll_timeout(), None);
}

// ------------------------------------------------------------------------------ transfer

#[test]
fn one_mebibyte_over_a_clean_link_arrives_intact_without_retransmission() {
    let data = test_data(6, 1 << 20);
    let mut sim = Sim::new(6, Link::clean(), Config::default(), Config::default());
    let digest = transfer(&mut sim, &data);
    assert_eq!(digest, sha256(&data));

    let segments = data_segments(&sim, Side::A);
    assert_eq!(
        segments.len(),
        (1 << 20) / usize::from(DEFAULT_MSS_BYTES),
        "no retransmission"
    );
    assert!(segments
        .iter()
        .all(|s| s.payload.len() <= usize::from(DEFAULT_MSS_BYTES)));
    let stats = sim.a.stats();
    assert_eq!(
        stats.segments_sent,
        1024 + 1,
        "1024 data segments and the FIN"
    );
    assert_eq!(
        (
            stats.segments_retransmitted,
            stats.timeouts,
            stats.fast_recoveries
        ),
        (0, 0, 0)
    );
    // One FIN each way; the closing side's FIN is answered by the peer's FIN|ACK.
    assert_eq!(sim.count_sent(Side::A, Flags::FIN | Flags::ACK), 1);
    assert_eq!(sim.count_sent(Side::B, Flags::FIN | Flags::ACK), 1);
    assert_eq!(
        sim.count_sent(Side::A, Flags::RST) + sim.count_sent(Side::B, Flags::RST),
        0
    );
    assert_eq!(sim.events_of(Side::A).last(), Some(&StreamEvent::Closed));
    assert!(sim.events_of(Side::B).contains(&StreamEvent::PeerClosed));
}

#[test]
fn delayed_acks_cover_two_segments_each_on_a_clean_link() {
    let data = test_data(7, 200 * 1024);
    let mut sim = Sim::new(7, Link::clean(), Config::default(), Config::default());
    transfer(&mut sim, &data);
    let pure_acks = sim.count_sent(Side::B, Flags::ACK);
    // 200 segments, one ACK per two (spec §8.4), plus a few for the handshake and close.
    assert!(
        pure_acks <= 100 + 5,
        "{pure_acks} pure ACKs for 200 segments"
    );
    assert!(pure_acks >= 100, "{pure_acks} pure ACKs for 200 segments");
}

#[test]
fn bulk_transfer_over_loss_reordering_and_duplication_arrives_intact() {
    let (default_seeds, default_bytes) = if cfg!(debug_assertions) {
        (20, 1 << 20)
    } else {
        (100, 10 << 20)
    };
    let seeds = env_or("STREAM_SIM_SEEDS", default_seeds) as u64;
    let bytes = env_or("STREAM_SIM_BYTES", default_bytes);
    for seed in 0..seeds {
        let data = test_data(seed, bytes);
        let mut sim = Sim::new(seed, Link::hostile(), Config::default(), Config::default());
        let digest = transfer(&mut sim, &data);
        assert_eq!(digest, sha256(&data), "seed {seed}");
        let stats = sim.a.stats();
        assert!(
            stats.segments_retransmitted > 0 && stats.fast_recoveries > 0,
            "seed {seed}"
        );
        if std::env::var("STREAM_SIM_STATS").is_ok() {
            eprintln!(
                "seed {seed}: {:.1} s simulated, {} steps, {stats:?}",
                (sim.now - Instant::from_millis(1000)).as_secs_f64(),
                sim.steps
            );
        }
        for seg in sim.sent.iter().map(|(_, _, s)| s) {
            assert!(
                seg.payload.len() <= usize::from(DEFAULT_MSS_BYTES),
                "seed {seed}"
            );
        }
        // A hostile link must not turn the close into a FIN storm.
        let fins = sim
            .sent
            .iter()
            .filter(|(_, _, s)| s.flags.contains(Flags::FIN))
            .count();
        assert!(fins <= 20, "seed {seed}: {fins} FIN segments");
        assert!(
            !sim.events_of(Side::A).contains(&StreamEvent::TimedOut),
            "seed {seed}"
        );
    }
}

#[test]
fn out_of_order_data_is_acknowledged_at_once_with_sack() {
    let mut sim = Sim::new(8, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    // Lose exactly the first data segment of three.
    let mut seen = 0;
    sim.filter = Some(Box::new(move |side, seg| {
        if side == Side::A && !seg.payload.is_empty() {
            seen += 1;
            return seen == 1;
        }
        false
    }));
    // Three full segments, 1 ms apart, so each arrives on its own.
    for _ in 0..3 {
        sim.a.write(&[1u8; 1024]).unwrap();
        sim.pump();
        sim.now = sim.now + Duration::from_millis(1);
    }
    sim.run_until(|sim| {
        sim.b
            .as_ref()
            .is_some_and(|b| b.readable_bytes() == 3 * 1024)
    });
    let sacks: Vec<SackBlocks> = sim
        .sent_by(Side::B)
        .filter(|s| s.flags == Flags::ACK && !s.payload.is_empty())
        .map(|s| SackBlocks::decode(&s.payload).expect("B only sends SACK payloads"))
        .collect();
    assert_eq!(
        sacks.len(),
        2,
        "one immediate SACK per out-of-order segment"
    );
    assert_eq!(sacks[0].as_slice()[0].left, 1025);
    assert_eq!(sacks[0].as_slice()[0].right, 2049);
    assert_eq!(
        sacks[1].as_slice()[0].right,
        3073,
        "contiguous blocks are merged"
    );
}

// ------------------------------------------------------------------------------ flow control

#[test]
fn zero_window_stalls_the_sender_until_the_reader_drains_it() {
    let small = Config {
        receive_capacity_segments: 4,
        ..Config::default()
    };
    let mut sim = Sim::new(9, Link::clean(), Config::default(), small);
    handshake(&mut sim);
    let data = test_data(9, 32 * 1024);
    assert_eq!(sim.a.write(&data), Ok(data.len()));

    // Let a few probe intervals pass without reading.
    let stall_until = sim.now + Duration::from_secs(3);
    sim.run_until(|sim| sim.now >= stall_until);
    assert_eq!(
        sim.b().readable_bytes(),
        4 * 1024,
        "exactly the 4 free slots were filled"
    );
    let last_b = sim.sent_by(Side::B).last().unwrap();
    assert_eq!(last_b.window, 0, "a truly full queue advertises 0");
    assert!(
        sim.sent_by(Side::B).filter(|s| s.window == 0).count() >= 2,
        "probes were answered"
    );
    let probes: Vec<Instant> = sim
        .sent
        .iter()
        .filter(|(_, side, s)| *side == Side::A && s.flags == Flags::ACK && s.payload.is_empty())
        .map(|(t, _, _)| *t)
        .skip(1) // the handshake ACK
        .collect();
    assert!(
        probes.len() >= 2,
        "zero-window probes were sent: {probes:?}"
    );
    assert!(
        probes[1] - probes[0] > Duration::from_millis(500),
        "probe interval backs off"
    );
    // No window ever advertised 0 while a slot was free.
    assert!(sim
        .sent
        .iter()
        .all(|(_, side, s)| *side == Side::A || s.window <= 4));

    // Now read everything; window updates reopen the flow and the data arrives intact.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    sim.run_until(|sim| {
        let b = sim.b.as_mut().unwrap();
        while let Ok(n) = b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == data.len()
    });
    assert_eq!(got, data);
}

#[test]
fn a_long_zero_window_is_flow_control_not_a_dead_peer() {
    // The reader sleeps for 150 s, longer than the 120 s idle timeout. The sender keeps
    // probing the zero window and the stream resumes intact.
    let small = Config {
        receive_capacity_segments: 4,
        ..Config::default()
    };
    let mut sim = Sim::new(22, Link::clean(), Config::default(), small);
    handshake(&mut sim);
    let data = test_data(22, 64 * 1024);
    assert_eq!(sim.a.write(&data), Ok(data.len()));
    let wake_at = sim.now + Duration::from_secs(150);
    sim.run_until(|sim| sim.now >= wake_at);
    assert_eq!(sim.a.state(), State::Established);
    assert!(sim
        .sent
        .iter()
        .all(|(_, _, s)| !s.flags.contains(Flags::FIN)));

    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    sim.run_until(|sim| {
        let b = sim.b.as_mut().unwrap();
        while let Ok(n) = b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == data.len()
    });
    assert_eq!(got, data);
    assert!(!sim.events_of(Side::A).contains(&StreamEvent::TimedOut));
}

#[test]
fn a_peer_that_never_reopens_its_window_is_given_up_after_30_probes() {
    let small = Config {
        receive_capacity_segments: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(23, Link::clean(), Config::default(), small);
    handshake(&mut sim);
    sim.a.write(&test_data(23, 16 * 1024)).unwrap();
    sim.run_until(|sim| sim.a.is_closed());
    assert_eq!(sim.events_of(Side::A).last(), Some(&StreamEvent::Closed));
    assert!(sim.events_of(Side::A).contains(&StreamEvent::TimedOut));
    assert_eq!(sim.sent_by(Side::A).last().unwrap().flags, Flags::RST);
    // Every probe was answered with a zero window.
    assert!(sim.sent_by(Side::B).filter(|s| s.window == 0).count() >= 30);
}

#[test]
fn full_send_buffer_refuses_writes_then_signals_writable() {
    let config = Config {
        send_buffer_bytes: 4096,
        ..Config::default()
    };
    let mut sim = Sim::new(10, Link::clean(), config, Config::default());
    handshake(&mut sim);
    assert_eq!(sim.a.write(&[7u8; 10_000]), Ok(4096));
    assert_eq!(sim.a.write(&[7u8; 1]), Err(StreamError::WouldBlock));
    sim.run_until(|sim| sim.events_of(Side::A).contains(&StreamEvent::Writable));
    assert!(sim.a.write(&[7u8; 1]).is_ok());
}

#[test]
fn nagle_holds_a_small_segment_while_data_is_unacknowledged() {
    let mut sim = Sim::new(11, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    sim.a.write(b"one").unwrap();
    sim.pump();
    sim.a.write(b"two").unwrap();
    sim.pump();
    let data = data_segments(&sim, Side::A);
    assert_eq!(
        data.len(),
        1,
        "the second small write waits for the first ACK"
    );
    let first_data_at = sim
        .sent
        .iter()
        .find(|(_, _, s)| s.payload == b"one")
        .unwrap()
        .0;
    sim.run_until(|sim| data_segments(sim, Side::A).len() == 2);
    let second_at = sim
        .sent
        .iter()
        .find(|(_, _, s)| s.payload == b"two")
        .unwrap()
        .0;
    // Released by the 40 ms Nagle timer or the (delayed) ACK, whichever is first.
    assert!(second_at - first_data_at <= Duration::from_millis(60));
    assert!(second_at > first_data_at);
}

// ------------------------------------------------------------------------------ closing

#[test]
fn simultaneous_close_sends_one_fin_each_and_no_ping_pong() {
    for seed in 0..10 {
        let link = if seed == 0 {
            Link::clean()
        } else {
            Link::hostile()
        };
        let mut sim = Sim::new(100 + seed, link, Config::default(), Config::default());
        handshake(&mut sim);
        sim.a.close();
        sim.b().close();
        sim.run_until(|sim| sim.a.is_closed() && sim.b.as_ref().is_some_and(Connection::is_closed));
        for side in [Side::A, Side::B] {
            let fins = sim
                .sent_by(side)
                .filter(|s| s.flags.contains(Flags::FIN))
                .count();
            if seed == 0 {
                assert_eq!(
                    fins, 1,
                    "{side:?}: the FIN|ACK of the peer is answered with ACK"
                );
            } else {
                // Only retransmissions of the one FIN, bounded by the retry limit.
                assert!((1..=8).contains(&fins), "seed {seed} {side:?}: {fins} FINs");
            }
            let fin_seqs: Vec<u32> = sim
                .sent_by(side)
                .filter(|s| s.flags.contains(Flags::FIN))
                .map(|s| s.seq)
                .collect();
            assert!(
                fin_seqs.iter().all(|&s| s == fin_seqs[0]),
                "never a second FIN"
            );
        }
        assert!(sim.events_of(Side::A).contains(&StreamEvent::PeerClosed));
        assert!(
            !sim.events_of(Side::A).contains(&StreamEvent::TimedOut),
            "seed {seed}"
        );
    }
}

/// A scripted peer in the style of the Feb daemons: it answers *every* FIN-flagged segment
/// with FIN|ACK, so two of them ping-pong forever. Our side must stop the storm.
#[test]
fn peer_that_answers_every_fin_with_fin_ack_is_survived() {
    let t0 = Instant::ZERO;
    let mut a = Connection::connect(t0, Config::default());
    let syn = a.poll_transmit(t0).unwrap();
    assert_eq!(syn.flags, Flags::SYN);
    let syn_ack = Segment {
        flags: Flags::SYN | Flags::ACK,
        seq: 0,
        ack: 1,
        window: 512,
        payload: &[][..],
    };
    a.handle_segment(t0, syn_ack);
    assert_eq!(a.poll_transmit(t0).unwrap().flags, Flags::ACK);

    a.close();
    let our_fin = a.poll_transmit(t0).unwrap();
    assert_eq!(our_fin.flags, Flags::FIN | Flags::ACK);
    assert_eq!(a.poll_transmit(t0), None);

    // The storm: the peer answers each of our FIN-flagged segments with FIN|ACK, and also
    // repeats its FIN|ACK on its own. Feed 50 of them over 5 s.
    let storm = Segment {
        flags: Flags::FIN | Flags::ACK,
        seq: 1,
        ack: 2,
        window: 0,
        payload: &[][..],
    };
    let mut ours = Vec::new();
    for i in 0..50u64 {
        let now = Instant::from_millis(10 + i * 100);
        a.handle_segment(now, storm.clone());
        while let Some(seg) = a.poll_transmit(now) {
            ours.push(seg);
        }
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
        }
    }
    assert_eq!(ours.len(), 50, "each FIN|ACK gets exactly one answer");
    assert!(
        ours.iter().all(|s| s.flags == Flags::ACK),
        "never FIN|ACK for FIN|ACK: {ours:?}"
    );
    assert!(ours.iter().all(|s| s.ack == 2 && s.seq == 2));
    assert_eq!(a.state(), State::TimeWait);

    // TIME_WAIT started with the first FIN|ACK at 10 ms and was not refreshed by the rest.
    assert_eq!(a.poll_timeout(), Some(Instant::from_millis(10) + TIME_WAIT));
    a.handle_timeout(Instant::from_millis(10) + TIME_WAIT);
    assert!(a.is_closed());
    let events: Vec<StreamEvent> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(
        events,
        [
            StreamEvent::Connected,
            StreamEvent::PeerClosed,
            StreamEvent::Closed
        ]
    );
}

#[test]
fn fin_from_a_go_peer_is_answered_with_one_fin_ack() {
    // A Go peer closes first with a bare FIN (no ACK flag, ack 0, window 0; spec §8.9).
    let mut sim = Sim::new(12, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let now = sim.now;
    let go_fin = Segment {
        flags: Flags::FIN,
        seq: 1,
        ack: 0,
        window: 0,
        payload: &[][..],
    };
    sim.a.handle_segment(now, go_fin);
    let answer = sim.a.poll_transmit(now).unwrap();
    assert_eq!(answer.flags, Flags::FIN | Flags::ACK);
    assert_eq!((answer.seq, answer.ack), (1, 2));
    assert_eq!(
        sim.a.poll_transmit(now),
        None,
        "a single segment answers the FIN"
    );
    assert_eq!(sim.a.state(), State::TimeWait);
    assert_eq!(
        sim.a.write(b"late"),
        Err(StreamError::Closed),
        "no half-close"
    );
    let mut buf = [0u8; 4];
    assert_eq!(sim.a.read(&mut buf), Ok(0), "end of stream");
}

#[test]
fn peer_fin_after_pending_data_waits_for_that_data() {
    // B receives A's FIN while B still has unsent data: B ACKs the FIN, flushes, then FINs.
    let mut sim = Sim::new(13, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let reply = test_data(13, 20 * 1024);
    assert_eq!(sim.b().write(&reply), Ok(reply.len()));
    sim.a.close();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    sim.run_until(|sim| {
        while let Ok(n) = sim.a.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        sim.a.is_closed() && sim.b.as_ref().is_some_and(Connection::is_closed)
    });
    assert_eq!(
        got, reply,
        "data written before the peer's FIN is delivered"
    );
    let b_fins: Vec<&Segment> = sim
        .sent_by(Side::B)
        .filter(|s| s.flags.contains(Flags::FIN))
        .collect();
    assert_eq!(b_fins.len(), 1);
    assert_eq!(
        b_fins[0].seq,
        1 + reply.len() as u32,
        "B's FIN comes after its data"
    );
}

// ------------------------------------------------------------------------------ failures

#[test]
fn abort_sends_rst_and_the_peer_reports_reset() {
    let mut sim = Sim::new(14, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    sim.b().write(b"unread").unwrap();
    sim.run_until(|sim| sim.a.readable_bytes() == 6);
    sim.b().abort();
    sim.run_until(|sim| sim.a.is_closed());
    let rst = sim.sent_by(Side::B).last().unwrap();
    assert_eq!((rst.flags, rst.seq, rst.ack), (Flags::RST, 0, 0));
    assert_eq!(
        sim.events_of(Side::A),
        [
            StreamEvent::Connected,
            StreamEvent::Readable,
            StreamEvent::Reset,
            StreamEvent::Closed
        ]
    );
    assert_eq!(sim.events_of(Side::B).last(), Some(&StreamEvent::Closed));
    let mut buf = [0u8; 16];
    assert_eq!(
        sim.a.read(&mut buf),
        Ok(6),
        "buffered data survives the reset"
    );
    assert_eq!(sim.a.read(&mut buf), Err(StreamError::Reset));
    assert_eq!(sim.a.write(b"x"), Err(StreamError::Reset));
    sim.run_to_quiet();
    assert_eq!(
        sim.count_sent(Side::A, Flags::RST),
        0,
        "RST is not answered"
    );
}

#[test]
fn rst_with_ack_flag_is_still_a_reset() {
    // spec §8.2: RST is checked before ACK.
    let mut sim = Sim::new(19, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let now = sim.now;
    let rst = Segment {
        flags: Flags::RST | Flags::ACK,
        seq: 1,
        ack: 1,
        window: 512,
        payload: &[][..],
    };
    sim.a.handle_segment(now, rst);
    assert!(sim.a.is_closed());
    assert_eq!(sim.a.write(b"x"), Err(StreamError::Reset));
}

#[test]
fn eight_failed_transmissions_send_rst_and_time_out() {
    let mut sim = Sim::new(15, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    // From now on B hears nothing.
    sim.filter = Some(Box::new(|side, _| side == Side::A));
    sim.a.write(b"into the void").unwrap();
    sim.run_to_quiet();
    let attempts = sim
        .sent_by(Side::A)
        .filter(|s| s.payload == b"into the void")
        .count();
    assert_eq!(attempts, 8);
    assert_eq!(
        sim.a.stats().timeouts,
        7,
        "the 8th timeout gives up instead"
    );
    assert_eq!(sim.sent_by(Side::A).last().unwrap().flags, Flags::RST);
    let events = sim.events_of(Side::A);
    assert_eq!(
        &events[events.len() - 2..],
        [StreamEvent::TimedOut, StreamEvent::Closed]
    );
    // The retransmissions backed off exponentially.
    let times: Vec<Instant> = sim
        .sent
        .iter()
        .filter(|(_, _, s)| s.payload == b"into the void")
        .map(|(t, _, _)| *t)
        .collect();
    for pair in times.windows(3) {
        assert!(pair[2] - pair[1] >= pair[1] - pair[0], "{times:?}");
    }
}

#[test]
fn silent_peer_is_probed_three_times_then_reset() {
    let mut sim = Sim::new(16, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let idle_from = sim.connected_at(Side::A);
    sim.filter = Some(Box::new(|_, _| true));
    sim.run_until(|sim| sim.a.is_closed());
    let probes: Vec<Instant> = sim
        .sent
        .iter()
        .filter(|(t, side, s)| *side == Side::A && *t > idle_from && s.flags == Flags::ACK)
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(probes.len(), 3, "{probes:?}");
    assert_eq!(probes[0] - idle_from, Duration::from_secs(60));
    assert_eq!(probes[1] - probes[0], KEEPALIVE_PROBE_INTERVAL);
    assert_eq!(sim.sent_by(Side::A).last().unwrap().flags, Flags::RST);
    assert!(sim.events_of(Side::A).contains(&StreamEvent::TimedOut));
}

#[test]
fn answered_keepalives_keep_the_connection_until_the_idle_close() {
    let mut sim = Sim::new(17, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let idle_from = sim.connected_at(Side::A);
    sim.run_until(|sim| sim.a.is_closed() && sim.b.as_ref().is_some_and(Connection::is_closed));
    // Both sides close with FIN after 120 s without data: no RST, no timeout.
    assert_eq!(
        sim.count_sent(Side::A, Flags::RST) + sim.count_sent(Side::B, Flags::RST),
        0
    );
    let first_fin = sim
        .sent
        .iter()
        .find(|(_, _, s)| s.flags.contains(Flags::FIN))
        .unwrap()
        .0;
    assert_eq!(first_fin - idle_from, Duration::from_secs(120));
    assert!(!sim.events_of(Side::A).contains(&StreamEvent::TimedOut));
}

// ------------------------------------------------------------------------------ wire corner cases

/// Drives a connection accepted from a scripted peer whose ISN sits just below 2³², so its
/// sequence numbers wrap after 16 bytes (spec §8.4: serial arithmetic everywhere).
#[test]
fn peer_sequence_numbers_wrapping_past_zero_are_handled() {
    let isn = 0xFFFF_FFF0u32;
    let t = Instant::ZERO;
    let syn = Segment {
        flags: Flags::SYN,
        seq: isn,
        ack: 0,
        window: 512,
        payload: &[][..],
    };
    let mut b = Connection::accept(t, Config::default(), &syn);
    let syn_ack = b.poll_transmit(t).unwrap();
    assert_eq!(syn_ack.ack, isn.wrapping_add(1));

    let data: Vec<u8> = (0u8..64).collect();
    let seg = |seq: u32, payload: &[u8]| -> Segment {
        Segment {
            flags: Flags::ACK,
            seq,
            ack: 1,
            window: 512,
            payload: payload.to_vec(),
        }
    };
    // Second half first (after the wrap, out of order), then the first half.
    let first = isn.wrapping_add(1);
    let second = first.wrapping_add(32);
    assert!(second < first, "the second segment's seq wrapped past zero");
    b.handle_segment(t, seg(second, &data[32..]).as_borrowed());
    let sack = b.poll_transmit(t).unwrap();
    let blocks = SackBlocks::decode(&sack.payload).unwrap();
    assert_eq!(blocks.as_slice()[0].left, second);
    assert_eq!(blocks.as_slice()[0].right, second.wrapping_add(32));
    b.handle_segment(t, seg(first, &data[..32]).as_borrowed());
    let ack = b.poll_transmit(t).unwrap();
    assert_eq!(ack.ack, second.wrapping_add(32));
    assert!(ack.payload.is_empty(), "no SACK once the gap is filled");

    let mut out = [0u8; 64];
    assert_eq!(b.read(&mut out), Ok(64));
    assert_eq!(&out[..], &data[..]);

    // A stale retransmission from before the wrap is recognised as old, not as far ahead.
    b.handle_segment(t, seg(first, &data[..32]).as_borrowed());
    let dup_ack = b.poll_transmit(t).unwrap();
    assert_eq!(dup_ack.ack, second.wrapping_add(32));
    assert_eq!(b.readable_bytes(), 0);
}

/// spec §8.5: a received data segment that parses as SACK is consumed as SACK. We mirror the
/// Go receivers (there is no way to tell on the wire) and pin the behaviour here.
#[test]
fn received_data_that_parses_as_sack_is_consumed_like_go_does() {
    let t = Instant::ZERO;
    let syn = Segment {
        flags: Flags::SYN,
        seq: 0,
        ack: 0,
        window: 512,
        payload: &[][..],
    };
    let mut b = Connection::accept(t, Config::default(), &syn);
    b.poll_transmit(t).unwrap();
    let lookalike = *b"SACK\x01\0\0\0\x01\0\0\0\x02";
    let seg = Segment {
        flags: Flags::ACK,
        seq: 1,
        ack: 1,
        window: 512,
        payload: &lookalike[..],
    };
    b.handle_segment(t, seg);
    assert_eq!(b.state(), State::Established);
    assert_eq!(b.readable_bytes(), 0, "consumed as SACK, not delivered");
}

/// Our sender never emits such a segment: it cuts the magic off into its own 4-byte segment,
/// so application bytes that look like SACK still arrive.
#[test]
fn sent_data_that_would_parse_as_sack_is_split_and_arrives_intact() {
    let mut sim = Sim::new(18, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let mut lookalike = b"SACK\x01".to_vec();
    lookalike.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    lookalike.extend_from_slice(b"SACK\x02 and more text that follows");
    sim.a.write(&lookalike).unwrap();
    let mut got = Vec::new();
    sim.run_until(|sim| {
        let mut buf = [0u8; 256];
        while let Ok(n) = sim.b.as_mut().map_or(Ok(0), |b| b.read(&mut buf)) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == lookalike.len()
    });
    assert_eq!(got, lookalike);
    let data: Vec<&Segment> = sim
        .sent_by(Side::A)
        .filter(|s| !s.payload.is_empty())
        .collect();
    assert_eq!(data[0].payload, b"SACK", "the magic went alone");
    assert!(data.iter().all(|s| SackBlocks::decode(&s.payload).is_err()));
}

#[test]
fn data_segments_never_carry_sack_and_pure_acks_carry_only_sack() {
    for seed in 0..3 {
        let data = test_data(seed, 256 * 1024);
        let mut sim = Sim::new(
            200 + seed,
            Link::hostile(),
            Config::default(),
            Config::default(),
        );
        transfer(&mut sim, &data);
        // B never sends data, so every payload B sends must be a SACK on a pure ACK.
        for seg in sim.sent_by(Side::B) {
            if !seg.payload.is_empty() {
                assert_eq!(seg.flags, Flags::ACK);
                let blocks = SackBlocks::decode(&seg.payload).unwrap();
                assert!((1..=4).contains(&blocks.as_slice().len()));
            }
        }
        assert!(
            sim.sent_by(Side::B).any(|s| !s.payload.is_empty()),
            "loss produced SACKs"
        );
    }
}

#[test]
fn fin_ahead_of_a_gap_waits_for_the_missing_data() {
    // spec §8.9 (V-NEW zz_fin_in_order_test): the FIN is delivered in order.
    let t = Instant::ZERO;
    let syn = Segment {
        flags: Flags::SYN,
        seq: 0,
        ack: 0,
        window: 512,
        payload: &[][..],
    };
    let mut b = Connection::accept(t, Config::default(), &syn);
    b.poll_transmit(t).unwrap();
    let ack = Segment {
        flags: Flags::ACK,
        seq: 1,
        ack: 1,
        window: 512,
        payload: &[][..],
    };
    b.handle_segment(t, ack);
    assert_eq!(b.poll_event(), Some(StreamEvent::Connected));

    // Bytes 1..=5 are missing; the FIN (seq 11) arrives with the second half of the data.
    let tail = Segment {
        flags: Flags::ACK,
        seq: 6,
        ack: 1,
        window: 512,
        payload: &b"world"[..],
    };
    b.handle_segment(t, tail);
    let fin = Segment {
        flags: Flags::FIN | Flags::ACK,
        seq: 11,
        ack: 1,
        window: 512,
        payload: &[][..],
    };
    b.handle_segment(t, fin);
    assert_eq!(
        b.state(),
        State::Established,
        "FIN not accepted across a gap"
    );
    assert_eq!(b.poll_event(), None);
    let mut buf = [0u8; 16];
    assert_eq!(b.read(&mut buf), Err(StreamError::WouldBlock));
    let dup_ack = b.poll_transmit(t).unwrap();
    assert_eq!(dup_ack.ack, 1);
    assert!(
        SackBlocks::decode(&dup_ack.payload).is_ok(),
        "the gap is reported with SACK"
    );

    let head = Segment {
        flags: Flags::ACK,
        seq: 1,
        ack: 1,
        window: 512,
        payload: &b"hello"[..],
    };
    b.handle_segment(t, head);
    let events: Vec<StreamEvent> = std::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(events, [StreamEvent::Readable, StreamEvent::PeerClosed]);
    let answer = b.poll_transmit(t).unwrap();
    assert_eq!(
        answer.flags,
        Flags::FIN | Flags::ACK,
        "nothing to flush: FIN|ACK at once"
    );
    assert_eq!(answer.ack, 12);
    assert_eq!(b.read(&mut buf), Ok(10));
    assert_eq!(&buf[..10], b"helloworld");
    assert_eq!(b.read(&mut buf), Ok(0));
}

#[test]
fn single_segment_is_acknowledged_after_exactly_40_ms() {
    let mut sim = Sim::new(20, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    sim.a.write(b"ping").unwrap();
    sim.run_until(|sim| sim.b.as_ref().is_some_and(|b| b.readable_bytes() == 4));
    let arrived = sim.now;
    let acks_before = sim.count_pure_acks(Side::B);
    sim.run_until(|sim| sim.count_pure_acks(Side::B) > acks_before);
    assert_eq!(sim.now - arrived, Duration::from_millis(40));
}

#[test]
fn repeated_syn_ack_after_a_lost_handshake_ack_is_acknowledged_again() {
    let t = Instant::ZERO;
    let mut a = Connection::connect(t, Config::default());
    a.poll_transmit(t).unwrap();
    let syn_ack = Segment {
        flags: Flags::SYN | Flags::ACK,
        seq: 0,
        ack: 1,
        window: 512,
        payload: &[][..],
    };
    a.handle_segment(t, syn_ack.clone());
    assert_eq!(a.poll_transmit(t).unwrap().flags, Flags::ACK);
    assert_eq!(a.poll_transmit(t), None);
    a.handle_segment(Instant::from_millis(250), syn_ack);
    let again = a.poll_transmit(Instant::from_millis(250)).unwrap();
    assert_eq!((again.flags, again.seq, again.ack), (Flags::ACK, 1, 1));
    let events: Vec<StreamEvent> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(events, [StreamEvent::Connected], "connected once");
}

#[test]
fn syn_ack_that_does_not_acknowledge_our_syn_is_ignored() {
    let t = Instant::ZERO;
    let mut a = Connection::connect(t, Config::default());
    a.poll_transmit(t).unwrap();
    let bogus = Segment {
        flags: Flags::SYN | Flags::ACK,
        seq: 0,
        ack: 77,
        window: 512,
        payload: &[][..],
    };
    a.handle_segment(t, bogus);
    assert_eq!(a.state(), State::SynSent);
    assert_eq!(a.poll_event(), None);
}

#[test]
fn window_zero_on_a_go_fin_does_not_stall_the_flush() {
    // V-FORK FINs carry window 0 meaning nothing (spec §8.6): B must still flush its data.
    let mut sim = Sim::new(21, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let reply = test_data(21, 8 * 1024);
    sim.b().write(&reply).unwrap();
    let now = sim.now;
    let go_fin = Segment {
        flags: Flags::FIN,
        seq: 1,
        ack: 0,
        window: 0,
        payload: &[][..],
    };
    sim.b().handle_segment(now, go_fin);
    assert_eq!(sim.b().state(), State::CloseWait);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    sim.run_until(|sim| {
        while let Ok(n) = sim.a.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == reply.len()
    });
    assert_eq!(got, reply);
    let b_fins = sim
        .sent_by(Side::B)
        .filter(|s| s.flags.contains(Flags::FIN))
        .count();
    assert!(b_fins <= 1);
}

// ------------------------------------------------------------------------------ stress

/// One side of a two-way exchange.
struct Endpoint {
    data: Vec<u8>,
    written: usize,
    /// Largest single `write` call, to exercise small segments.
    write_chunk: usize,
    /// Bytes read per simulation step, to exercise closing windows.
    read_per_step: usize,
    received: Vec<u8>,
    eof: bool,
    closed: bool,
}

impl Endpoint {
    fn new(data: Vec<u8>, write_chunk: usize, read_per_step: usize) -> Self {
        Endpoint {
            data,
            written: 0,
            write_chunk,
            read_per_step,
            received: Vec::new(),
            eof: false,
            closed: false,
        }
    }

    /// Writes, reads, and closes once everything was written and the peer's data all read
    /// (there is no half-close, so closing earlier would end the peer's writing too).
    fn drive(&mut self, conn: &mut Connection, peer_len: usize) -> Result<(), String> {
        while self.written < self.data.len() {
            let end = (self.written + self.write_chunk).min(self.data.len());
            match conn.write(&self.data[self.written..end]) {
                Ok(n) => self.written += n,
                Err(StreamError::WouldBlock) => break,
                Err(e) => return Err(format!("write failed: {e}")),
            }
        }
        // Once the connection is over no more steps come, so the reader drains what is left.
        let mut budget = if conn.is_closed() {
            usize::MAX
        } else {
            self.read_per_step
        };
        let mut buf = [0u8; 4096];
        while budget > 0 && !self.eof {
            let want = budget.min(buf.len());
            match conn.read(&mut buf[..want]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    budget -= n;
                }
                Err(StreamError::WouldBlock) => break,
                Err(e) => {
                    return Err(format!(
                        "read failed after {} bytes: {e}",
                        self.received.len()
                    ))
                }
            }
        }
        if !self.closed && self.written == self.data.len() && self.received.len() == peer_len {
            conn.close();
            self.closed = true;
        }
        Ok(())
    }
}

fn exchange(sim: &mut Sim, a: &mut Endpoint, b: &mut Endpoint) {
    let (a_len, b_len) = (a.data.len(), b.data.len());
    sim.run_until(|sim| {
        let mut outcome = a.drive(&mut sim.a, b_len).map_err(|e| format!("A: {e}"));
        if let Some(conn) = sim.b.as_mut() {
            outcome = outcome.and(b.drive(conn, a_len).map_err(|e| format!("B: {e}")));
        }
        if let Err(e) = outcome {
            sim.dump(60);
            panic!("{e}");
        }
        a.eof && b.eof && sim.a.is_closed() && sim.b.as_ref().is_some_and(Connection::is_closed)
    });
}

#[test]
fn two_way_transfer_over_a_hostile_link_arrives_intact_both_ways() {
    for seed in 0..8 {
        let mut a = Endpoint::new(test_data(seed, 300 * 1024), usize::MAX, usize::MAX);
        let mut b = Endpoint::new(
            test_data(seed + 1000, 200 * 1024 + 17),
            usize::MAX,
            usize::MAX,
        );
        let mut sim = Sim::new(
            300 + seed,
            Link::hostile(),
            Config::default(),
            Config::default(),
        );
        exchange(&mut sim, &mut a, &mut b);
        assert!(b.received == a.data, "seed {seed}: A→B corrupted");
        assert!(a.received == b.data, "seed {seed}: B→A corrupted");
        for side in [Side::A, Side::B] {
            assert!(
                !sim.events_of(side).contains(&StreamEvent::TimedOut),
                "seed {seed}"
            );
            assert!(
                !sim.events_of(side).contains(&StreamEvent::Reset),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn slow_reader_with_a_small_window_over_a_hostile_link_loses_nothing() {
    let mut closed_windows = 0;
    for seed in 0..8 {
        let small = Config {
            receive_capacity_segments: 8,
            ..Config::default()
        };
        let mut a = Endpoint::new(test_data(seed, 256 * 1024), usize::MAX, usize::MAX);
        let mut b = Endpoint::new(Vec::new(), usize::MAX, 300);
        let mut sim = Sim::new(400 + seed, Link::hostile(), Config::default(), small);
        exchange(&mut sim, &mut a, &mut b);
        assert!(b.received == a.data, "seed {seed}: corrupted");
        // The receiver never advertised more than its capacity.
        assert!(sim.sent_by(Side::B).all(|s| s.window <= 8));
        if sim.sent_by(Side::B).any(|s| s.window == 0) {
            closed_windows += 1;
        }
    }
    assert!(
        closed_windows >= 4,
        "only {closed_windows} of 8 runs exercised a zero window"
    );
}

#[test]
fn small_writes_without_nagle_over_a_hostile_link_arrive_intact() {
    for seed in 0..4 {
        let no_nagle = Config {
            nagle: false,
            ..Config::default()
        };
        let mut a = Endpoint::new(test_data(seed, 64 * 1024), 97, usize::MAX);
        let mut b = Endpoint::new(test_data(seed + 7, 10 * 1024), 13, usize::MAX);
        let mut sim = Sim::new(500 + seed, Link::hostile(), no_nagle.clone(), no_nagle);
        exchange(&mut sim, &mut a, &mut b);
        assert!(b.received == a.data, "seed {seed}: A→B corrupted");
        assert!(a.received == b.data, "seed {seed}: B→A corrupted");
    }
}

#[test]
fn a_chaotic_link_never_corrupts_data_or_wedges_the_connection() {
    // 25 % loss, 25 % duplication and reordering far beyond the RTO: every run must end, and
    // whatever was delivered must be a prefix of what was sent.
    let chaos = Link {
        loss: 0.25,
        duplicate: 0.25,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(400),
    };
    let mut completed = 0;
    for seed in 0..20 {
        let data = test_data(seed, 64 * 1024);
        let mut sim = Sim::new(600 + seed, chaos, Config::default(), Config::default());
        let mut a = Endpoint::new(data.clone(), usize::MAX, usize::MAX);
        let mut b = Endpoint::new(Vec::new(), usize::MAX, usize::MAX);
        let (a_len, b_len) = (a.data.len(), b.data.len());
        sim.run_until(|sim| {
            let _ = a.drive(&mut sim.a, b_len);
            if let Some(conn) = sim.b.as_mut() {
                let _ = b.drive(conn, a_len);
            }
            sim.a.is_closed() && sim.b.as_ref().is_none_or(Connection::is_closed)
        });
        assert!(
            data.starts_with(&b.received),
            "seed {seed}: delivered bytes are not a prefix"
        );
        if b.received.len() == data.len() {
            completed += 1;
        }
    }
    assert!(completed >= 10, "only {completed} of 20 runs completed");
}

#[test]
fn read_chunk_returns_segments_then_end_of_stream() {
    let mut sim = Sim::new(24, Link::clean(), Config::default(), Config::default());
    handshake(&mut sim);
    let data = test_data(24, 3000);
    sim.a.write(&data).unwrap();
    sim.a.close();
    sim.run_until(|sim| sim.b.as_ref().is_some_and(|b| b.state() == State::TimeWait));
    let b = sim.b();
    let mut got = Vec::new();
    assert_eq!(
        b.read_chunk(0),
        Ok(Some(Vec::new())),
        "data waiting is not end of stream"
    );
    while let Some(chunk) = b.read_chunk(usize::MAX).unwrap() {
        assert!(
            chunk.len() <= usize::from(DEFAULT_MSS_BYTES),
            "one segment per chunk"
        );
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, data);
    assert_eq!(
        b.read_chunk(16),
        Ok(None),
        "end of stream stays end of stream"
    );
}

// ------------------------------------------------------------------------------ Go sessions

/// The stream fields of the Go echo session in `shared/vectors/pilot-packet.json` (cases "SYN
/// to echo port 7", "SYN-ACK from echo port", "ACK completing handshake", "echo data ping-0",
/// "FIN (close, window 0, ack 0 as the daemons send it)", "FIN|ACK reply"): (flags, seq, ack,
/// window, payload).
const GO_SYN: (u8, u32, u32, u16, &[u8]) = (0x1, 0, 0, 512, b"");
const GO_SYN_ACK: (u8, u32, u32, u16, &[u8]) = (0x3, 0, 1, 512, b"");
const GO_HANDSHAKE_ACK: (u8, u32, u32, u16, &[u8]) = (0x2, 1, 1, 512, b"");
const GO_DATA: (u8, u32, u32, u16, &[u8]) = (0x2, 1, 1, 512, b"ping-0");
const GO_FIN: (u8, u32, u32, u16, &[u8]) = (0x4, 7, 0, 0, b"");
const GO_FIN_ACK_REPLY: (u8, u32, u32, u16, &[u8]) = (0x6, 7, 8, 0, b"");

fn go(fields: (u8, u32, u32, u16, &'static [u8])) -> Segment<&'static [u8]> {
    let (flags, seq, ack, window, payload) = fields;
    Segment {
        flags: Flags::from_bits_truncate(flags),
        seq,
        ack,
        window,
        payload,
    }
}

fn fields(seg: &Segment) -> (u8, u32, u32, u16, &[u8]) {
    (seg.flags.bits(), seg.seq, seg.ack, seg.window, &seg.payload)
}

#[test]
fn as_echo_responder_we_answer_the_go_dialer_like_the_go_daemon() {
    let t = Instant::ZERO;
    let mut echo = Connection::accept(t, Config::default(), &go(GO_SYN));
    assert_eq!(fields(&echo.poll_transmit(t).unwrap()), GO_SYN_ACK);

    echo.handle_segment(t, go(GO_HANDSHAKE_ACK));
    echo.handle_segment(t, go(GO_DATA));
    let mut buf = [0u8; 16];
    let n = echo.read(&mut buf).unwrap();
    assert_eq!(echo.write(&buf[..n]), Ok(6));
    let reply = echo.poll_transmit(t).unwrap();
    assert_eq!(
        fields(&reply),
        (0x2, 1, 7, 512, &b"ping-0"[..]),
        "echo piggybacks the ACK"
    );

    echo.handle_segment(t, go(GO_FIN));
    let fin_ack = echo.poll_transmit(t).unwrap();
    // Same as the Go reply except the window: we never advertise 0 unless full (§8.6).
    let (flags, seq, ack, _, payload) = GO_FIN_ACK_REPLY;
    assert_eq!(fields(&fin_ack), (flags, seq, ack, 512, payload));
    assert_eq!(echo.poll_transmit(t), None);
}

#[test]
fn as_dialer_we_send_what_the_go_dialer_sends() {
    let t = Instant::ZERO;
    let mut dialer = Connection::connect(t, Config::default());
    assert_eq!(fields(&dialer.poll_transmit(t).unwrap()), GO_SYN);
    dialer.handle_segment(t, go(GO_SYN_ACK));
    assert_eq!(fields(&dialer.poll_transmit(t).unwrap()), GO_HANDSHAKE_ACK);
    dialer.write(b"ping-0").unwrap();
    assert_eq!(fields(&dialer.poll_transmit(t).unwrap()), GO_DATA);

    // The echo comes back (this segment is not in the vectors; its fields follow from them).
    dialer.handle_segment(t, go((0x2, 1, 7, 512, b"ping-0")));
    let mut buf = [0u8; 8];
    assert_eq!(dialer.read(&mut buf), Ok(6));

    // The Go side answers our FIN with its FIN|ACK reply; we end with a plain ACK.
    dialer.close();
    let fin = dialer.poll_transmit(t).unwrap();
    assert_eq!(
        (fin.flags, fin.seq, fin.ack),
        (Flags::FIN | Flags::ACK, 7, 7)
    );
    dialer.handle_segment(t, go(GO_FIN_ACK_REPLY));
    let last = dialer.poll_transmit(t).unwrap();
    assert_eq!(fields(&last), (0x2, 8, 8, 512, &b""[..]));
    assert_eq!(dialer.state(), State::TimeWait);
}

#[test]
fn responder_whose_syn_ack_is_never_answered_gives_up_with_rst() {
    let t = Instant::ZERO;
    let mut b = Connection::accept(t, Config::default(), &go(GO_SYN));
    let mut sent = Vec::new();
    let mut now = t;
    for _ in 0..100 {
        while let Some(seg) = b.poll_transmit(now) {
            sent.push(seg.flags);
        }
        let Some(next) = b.poll_timeout() else { break };
        now = next;
        b.handle_timeout(now);
    }
    while let Some(seg) = b.poll_transmit(now) {
        sent.push(seg.flags);
    }
    let syn_acks = sent
        .iter()
        .filter(|f| **f == Flags::SYN | Flags::ACK)
        .count();
    assert_eq!(syn_acks, 8, "1 SYN-ACK + 7 retransmissions");
    assert_eq!(sent.last(), Some(&Flags::RST));
    let events: Vec<StreamEvent> = std::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(events, [StreamEvent::TimedOut, StreamEvent::Closed]);
}
