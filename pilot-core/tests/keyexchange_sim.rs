//! Key-exchange scenarios (spec §5.5, §5.6, §6, §7.1) over a seeded simulated network.
//!
//! Several [`KeyExchange`] instances exchange frames through [`Sim`]: a network with seeded
//! loss, duplication and reordering, a clock that jumps to the earliest wake-up (a frame
//! arrival or a `poll_timeout`), and a registry answering `NeedPeerKey` at once. Every run
//! replays exactly; every loop is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::BTreeMap;
use std::time::Duration;

use pilot_core::addr::Addr;
use pilot_core::crypto::{Identity, TunnelKey};
use pilot_core::frame::pils::PilsError;
use pilot_core::keyexchange::{
    FrameOutcome, KexError, KexEvent, KexOutput, KeyExchange, PathId, SendOutcome,
    SessionDownReason, KEEPALIVE_IDLE, KEY_EXCHANGE_MAX_SENDS, PENDING_PACKETS_PER_PEER,
};
use pilot_core::packet::{Flags, Header, PacketRef, Protocol};
use pilot_core::replay::{DropReason, RecvVerdict, Reject};
use pilot_core::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};

/// One-way latency of every link.
const LATENCY: Duration = Duration::from_millis(20);
/// A simulation run may take at most this many clock steps.
const MAX_STEPS: usize = 100_000;

const A: u32 = 0x0A;
const B: u32 = 0x0B;
const C: u32 = 0x0C;

/// The path on which `node`'s frames arrive, and by which frames go to `node`.
fn path_of(node: u32) -> PathId {
    PathId(u64::from(node))
}

fn identity_of(node: u32) -> Identity {
    Identity::from_seed(&[u8::try_from(node).unwrap(); 32])
}

/// A datagram packet from `src` to `dst` carrying `payload`.
fn packet(src: u32, dst: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        flags: Flags::NONE,
        protocol: Protocol::Datagram,
        src: Addr::new(0, src),
        dst: Addr::new(0, dst),
        src_port: 49_152,
        dst_port: 1_001,
        seq: 0,
        ack: 0,
        window: 0,
    };
    let mut out = Vec::new();
    PacketRef::new(header, payload).encode(&mut out).unwrap();
    out
}

fn payload_of(packet: &[u8]) -> Vec<u8> {
    PacketRef::decode(packet).unwrap().payload.to_vec()
}

fn magic(frame: &[u8]) -> &[u8] {
    &frame[..4]
}

struct Host {
    kx: KeyExchange,
    rng: ChaCha20Rng,
    /// (sender, payload) of every delivered packet.
    delivered: Vec<(u32, Vec<u8>)>,
    events: Vec<(Instant, KexEvent)>,
    /// (time, destination, frame) of every frame this host transmitted.
    sent: Vec<(Instant, u32, Vec<u8>)>,
}

impl Host {
    fn new(node: u32, tunnel: Option<TunnelKey>, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ u64::from(node));
        let kx = match tunnel {
            Some(key) => KeyExchange::with_tunnel_key(node, identity_of(node), key),
            None => KeyExchange::new(node, identity_of(node), &mut rng),
        };
        Self {
            kx,
            rng,
            delivered: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn payloads_from(&self, node: u32) -> Vec<Vec<u8>> {
        self.delivered
            .iter()
            .filter(|(n, _)| *n == node)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn sent_to(&self, node: u32, kind: &[u8], since: Instant) -> usize {
        self.sent
            .iter()
            .filter(|(t, to, f)| *t >= since && *to == node && magic(f) == kind)
            .count()
    }

    fn count_events(&self, want: impl Fn(&KexEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| want(e)).count()
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    from: u32,
    to: u32,
    frame: Vec<u8>,
}

/// Decides whether a frame (time, from, to, bytes) is dropped on purpose by a scenario.
type Filter = Box<dyn FnMut(Instant, u32, u32, &[u8]) -> bool>;

struct Sim {
    now: Instant,
    seed: u64,
    hosts: BTreeMap<u32, Host>,
    registry: BTreeMap<u32, [u8; 32]>,
    flight: Vec<InFlight>,
    rng: ChaCha8Rng,
    seq: u64,
    loss_percent: u64,
    dup_percent: u64,
    /// Extra random delay up to this, which reorders frames on a link.
    jitter: Duration,
    drop_filter: Option<Filter>,
}

impl Sim {
    /// A loss-free, in-order network with hosts `nodes`, all known to the registry.
    fn new(seed: u64, nodes: &[u32]) -> Self {
        let mut sim = Sim {
            now: Instant::from_millis(1_000),
            seed,
            hosts: BTreeMap::new(),
            registry: BTreeMap::new(),
            flight: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            seq: 0,
            loss_percent: 0,
            dup_percent: 0,
            jitter: Duration::ZERO,
            drop_filter: None,
        };
        for &node in nodes {
            sim.registry.insert(node, identity_of(node).public_key());
            sim.hosts.insert(node, Host::new(node, None, seed));
        }
        sim
    }

    fn host(&self, node: u32) -> &Host {
        &self.hosts[&node]
    }

    fn kx(&mut self, node: u32) -> &mut KeyExchange {
        &mut self.hosts.get_mut(&node).unwrap().kx
    }

    /// Replaces `node` by a fresh instance: no sessions; a new tunnel key unless `keep`.
    fn restart(&mut self, node: u32, keep: Option<TunnelKey>) {
        self.seed = self.seed.wrapping_add(1);
        self.hosts.insert(node, Host::new(node, keep, self.seed));
    }

    fn connect(&mut self, from: u32, to: u32) {
        let now = self.now;
        self.kx(from).connect(now, to, path_of(to)).unwrap();
        self.drain(from);
    }

    fn send(&mut self, from: u32, to: u32, payload: &[u8]) -> Result<SendOutcome, KexError> {
        let now = self.now;
        let result = self
            .kx(from)
            .send_packet(now, to, &packet(from, to, payload));
        self.drain(from);
        result
    }

    /// Hands `frame` to `to` as if it arrived from `from`'s path, bypassing the network.
    fn inject(&mut self, to: u32, from: u32, frame: &[u8]) -> Result<FrameOutcome, KexError> {
        let now = self.now;
        let host = self.hosts.get_mut(&to).unwrap();
        let result = host
            .kx
            .handle_frame(now, path_of(from), frame, &mut host.rng);
        self.drain(to);
        result
    }

    /// Drains every output of `node`: frames onto the network, deliveries and events recorded,
    /// key lookups answered from the registry at once.
    fn drain(&mut self, node: u32) {
        for _ in 0..MAX_STEPS {
            let now = self.now;
            let Some(host) = self.hosts.get_mut(&node) else {
                return;
            };
            let Some(output) = host.kx.poll_output() else {
                return;
            };
            match output {
                KexOutput::Transmit { path, frame } => {
                    let to = u32::try_from(path.0).unwrap();
                    host.sent.push((now, to, frame.clone()));
                    self.transmit(node, to, frame);
                }
                KexOutput::Deliver { node: from, packet } => {
                    host.delivered.push((from, payload_of(&packet)));
                }
                KexOutput::Event(event) => {
                    host.events.push((now, event));
                    if let KexEvent::NeedPeerKey { node: peer } = event {
                        let key = self.registry.get(&peer).copied();
                        let _ = host.kx.provide_peer_key(now, peer, key, &mut host.rng);
                    }
                }
            }
        }
        panic!("outputs of {node} never drained");
    }

    fn transmit(&mut self, from: u32, to: u32, frame: Vec<u8>) {
        if let Some(filter) = self.drop_filter.as_mut() {
            if filter(self.now, from, to, &frame) {
                return;
            }
        }
        if self.rng.next_u64() % 100 < self.loss_percent {
            return;
        }
        let copies = if self.rng.next_u64() % 100 < self.dup_percent {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_micros = u64::try_from(self.jitter.as_micros()).unwrap();
            let extra = if jitter_micros == 0 {
                0
            } else {
                self.rng.next_u64() % jitter_micros
            };
            self.seq += 1;
            self.flight.push(InFlight {
                at: self.now + LATENCY + Duration::from_micros(extra),
                seq: self.seq,
                from,
                to,
                frame: frame.clone(),
            });
        }
    }

    /// Runs the world for `d`: the clock jumps from wake-up to wake-up.
    fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        for _ in 0..MAX_STEPS {
            let next_frame = self.flight.iter().map(|f| (f.at, f.seq)).min();
            let next_timer = self
                .hosts
                .values()
                .filter_map(|h| h.kx.poll_timeout())
                .min();
            let next = match (next_frame.map(|f| f.0), next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => deadline,
            };
            if next > deadline {
                self.now = deadline;
                return;
            }
            self.now = self.now.max(next);
            self.step();
            if next == deadline && self.flight.is_empty() {
                return;
            }
        }
        panic!("simulation did not settle within {MAX_STEPS} steps");
    }

    /// Delivers every frame due now (in arrival order), then fires due timers.
    fn step(&mut self) {
        let now = self.now;
        self.flight.sort_by_key(|f| (f.at, f.seq));
        let due: Vec<InFlight> = {
            let split = self.flight.partition_point(|f| f.at <= now);
            self.flight.drain(..split).collect()
        };
        for f in due {
            if let Some(host) = self.hosts.get_mut(&f.to) {
                let _ = host
                    .kx
                    .handle_frame(now, path_of(f.from), &f.frame, &mut host.rng);
                self.drain(f.to);
            }
        }
        let nodes: Vec<u32> = self.hosts.keys().copied().collect();
        for node in nodes {
            let host = self.hosts.get_mut(&node).unwrap();
            if host.kx.poll_timeout().is_some_and(|t| t <= now) {
                host.kx.handle_timeout(now);
                self.drain(node);
            }
        }
    }

    fn established(&self, x: u32, y: u32) -> bool {
        self.host(x).kx.has_session(y) && self.host(y).kx.has_session(x)
    }
}

fn session_ups(host: &Host, peer: u32, want_rekey: bool) -> usize {
    host.count_events(|e| matches!(e, KexEvent::SessionUp { node, rekey } if *node == peer && *rekey == want_rekey))
}

fn session_downs(host: &Host, peer: u32) -> usize {
    host.count_events(|e| matches!(e, KexEvent::SessionDown { node, .. } if *node == peer))
}

/// Sets up A and B with a session and one packet each way.
fn established_pair(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, &[A, B]);
    sim.connect(A, B);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.established(A, B));
    sim.send(A, B, b"hello b").unwrap();
    sim.send(B, A, b"hello a").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A), [b"hello b".to_vec()]);
    assert_eq!(sim.host(A).payloads_from(B), [b"hello a".to_vec()]);
    sim
}

#[test]
fn first_contact_in_both_directions_delivers_queued_packets() {
    let mut sim = Sim::new(1, &[A, B, C]);
    // A dials B; C has packets for A before any session exists.
    sim.connect(A, B);
    sim.connect(C, A);
    assert_eq!(sim.send(C, A, b"queued 1"), Ok(SendOutcome::Queued));
    assert_eq!(sim.send(C, A, b"queued 2"), Ok(SendOutcome::Queued));
    sim.run_for(Duration::from_secs(1));

    assert!(sim.established(A, B));
    assert!(sim.established(A, C));
    assert_eq!(
        sim.host(A).payloads_from(C),
        [b"queued 1".to_vec(), b"queued 2".to_vec()]
    );
    assert_eq!(sim.kx(C).pending_len(A), 0);
    assert_eq!(sim.send(A, B, b"a to b"), Ok(SendOutcome::Sealed));
    assert_eq!(sim.send(B, A, b"b to a"), Ok(SendOutcome::Sealed));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A), [b"a to b".to_vec()]);
    assert_eq!(sim.host(A).payloads_from(B), [b"b to a".to_vec()]);
    for (x, y) in [(A, B), (B, A), (A, C), (C, A)] {
        assert_eq!(session_ups(sim.host(x), y, false), 1, "{x} -> {y}");
    }
}

#[test]
fn simultaneous_initiation_installs_one_session_each_and_goes_quiet() {
    let mut sim = Sim::new(2, &[A, B]);
    sim.connect(A, B);
    sim.connect(B, A);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.established(A, B));
    assert_eq!(session_ups(sim.host(A), B, false), 1);
    assert_eq!(session_ups(sim.host(B), A, false), 1);
    assert!(!sim.kx(A).is_pending(B) && !sim.kx(B).is_pending(A));

    // No key-exchange storm afterwards: nothing but keepalives for a minute.
    let quiet_from = sim.now;
    sim.run_for(Duration::from_secs(60));
    for (x, y) in [(A, B), (B, A)] {
        assert_eq!(sim.host(x).sent_to(y, b"PILA", quiet_from), 0);
        assert_eq!(sim.host(x).sent_to(y, b"PILK", quiet_from), 0);
    }
    sim.send(A, B, b"still up").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A), [b"still up".to_vec()]);
}

#[test]
fn lost_first_pila_is_recovered_by_retransmission() {
    let mut sim = Sim::new(3, &[A, B]);
    let mut dropped = 0;
    sim.drop_filter = Some(Box::new(move |_, from, _, frame| {
        let drop = from == A && magic(frame) == b"PILA" && dropped == 0;
        dropped += usize::from(drop);
        drop
    }));
    let start = sim.now;
    sim.connect(A, B);
    sim.run_for(Duration::from_secs(3));
    assert!(!sim.kx(B).has_session(A), "the first PILA was lost");
    sim.run_for(Duration::from_secs(2));
    assert!(sim.established(A, B));
    // The lost one, the retransmission, and the reply to B's PILA that installed A's session.
    assert_eq!(sim.host(A).sent_to(B, b"PILA", start), 3);
}

#[test]
fn lost_pila_reply_is_recovered_by_the_key_request() {
    let mut sim = Sim::new(4, &[A, B]);
    // B's reply to A's first PILA is lost: B has a session, A does not.
    let mut dropped = 0;
    sim.drop_filter = Some(Box::new(move |_, from, _, frame| {
        let drop = from == B && magic(frame) == b"PILA" && dropped == 0;
        dropped += usize::from(drop);
        drop
    }));
    let start = sim.now;
    sim.connect(A, B);
    sim.run_for(Duration::from_secs(3));
    assert!(sim.kx(B).has_session(A) && !sim.kx(A).has_session(B));

    // A's second round carries a PILK; B's inbound is fresh so only the PILK gets an answer.
    sim.run_for(Duration::from_secs(2));
    assert!(sim.established(A, B));
    assert_eq!(sim.host(A).sent_to(B, b"PILK", start), 1);
    assert_eq!(sim.host(B).sent_to(A, b"PILA", start), 2);
    assert_eq!(session_ups(sim.host(B), A, false), 1, "B kept its session");
}

#[test]
fn peer_restart_with_new_key_rekeys_replays_salvage_and_flushes_pending() {
    let mut sim = established_pair(5);
    sim.run_for(Duration::from_secs(10));
    let old_key = sim.kx(B).tunnel_public_key();
    sim.restart(B, None);
    assert_ne!(sim.kx(B).tunnel_public_key(), old_key);

    // A does not know yet and keeps sending under the old session.
    for p in [b"lost 1", b"lost 2", b"lost 3"] {
        assert_eq!(sim.send(A, B, p), Ok(SendOutcome::Sealed));
    }
    // The restarted B has its own packets for A.
    sim.connect(B, A);
    assert_eq!(sim.send(B, A, b"after restart 1"), Ok(SendOutcome::Queued));
    assert_eq!(sim.send(B, A, b"after restart 2"), Ok(SendOutcome::Queued));
    sim.run_for(Duration::from_secs(2));

    assert!(sim.established(A, B));
    assert_eq!(session_ups(sim.host(A), B, true), 1);
    assert_eq!(
        sim.host(B).payloads_from(A),
        [b"lost 1".to_vec(), b"lost 2".to_vec(), b"lost 3".to_vec()],
        "salvage replayed what the old session carried"
    );
    let from_b = sim.host(A).payloads_from(B);
    assert_eq!(
        &from_b[1..],
        [b"after restart 1".to_vec(), b"after restart 2".to_vec()]
    );
    assert_eq!(sim.kx(B).pending_len(A), 0);
}

#[test]
fn restart_keeping_the_tunnel_key_recovers_the_asymmetric_session() {
    let seed_key = [0x42u8; 32];
    let mut sim = Sim::new(6, &[A, B]);
    sim.restart(B, Some(TunnelKey::from_bytes(&seed_key)));
    sim.connect(A, B);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.established(A, B));
    sim.send(B, A, b"before").unwrap();
    sim.run_for(Duration::from_secs(1));

    // B restarts with the same X25519 key: it lost its session, A still holds one.
    sim.restart(B, Some(TunnelKey::from_bytes(&seed_key)));
    assert!(sim.kx(A).has_session(B) && !sim.kx(B).has_session(A));
    sim.send(A, B, b"undecryptable").unwrap();
    sim.run_for(Duration::from_secs(2));

    assert!(sim.established(A, B));
    assert_eq!(
        session_downs(sim.host(A), B),
        0,
        "A kept its session object"
    );
    assert_eq!(session_ups(sim.host(A), B, false), 1);
    sim.send(A, B, b"a again").unwrap();
    sim.send(B, A, b"b again").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A), [b"a again".to_vec()]);
    assert_eq!(
        sim.host(A).payloads_from(B),
        [b"before".to_vec(), b"b again".to_vec()]
    );
}

#[test]
fn forged_pilas_are_ignored_before_and_during_a_session() {
    let mut sim = Sim::new(7, &[A, B]);
    let mut genuine = Vec::new();
    pilot_core::frame::pila::Pila::sign(
        &identity_of(A),
        A,
        &sim.kx(A).tunnel_public_key(),
        pilot_core::frame::pila::Trailer::NONE,
    )
    .encode(&mut genuine);

    // Signed by another identity than the registry's key for A.
    let mut impostor = Vec::new();
    pilot_core::frame::pila::Pila::sign(
        &identity_of(C),
        A,
        &[9; 32],
        pilot_core::frame::pila::Trailer::NONE,
    )
    .encode(&mut impostor);
    // B asks the registry for A's key (answered at once by the harness), then drops it.
    assert_eq!(
        sim.inject(B, C, &impostor),
        Ok(FrameOutcome::AwaitingPeerKey)
    );
    assert!(!sim.kx(B).has_session(A));

    // Right identity, altered X25519 key: the signature no longer verifies.
    let mut altered = genuine.clone();
    altered[8] ^= 1;
    assert_eq!(
        sim.inject(B, C, &altered),
        Err(KexError::Pila(
            pilot_core::frame::pila::PilaError::BadSignature
        ))
    );
    assert!(!sim.kx(B).has_session(A));
    assert_eq!(sim.host(B).sent.len(), 0, "forgeries get no answer");

    sim.connect(A, B);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.established(A, B));
    sim.run_for(Duration::from_secs(10));
    let answers_before = sim.host(B).sent_to(A, b"PILA", Instant::ZERO);
    assert!(sim.inject(B, C, &altered).is_err());
    // The impostor's key makes B re-check the registry once, then drop the frame.
    let mut impostor_live = impostor.clone();
    impostor_live[8] ^= 1;
    assert!(matches!(
        sim.inject(B, C, &impostor_live),
        Ok(FrameOutcome::AwaitingPeerKey) | Err(_)
    ));
    assert_eq!(session_ups(sim.host(B), A, true), 0);
    assert_eq!(
        sim.host(B).sent_to(A, b"PILA", Instant::ZERO),
        answers_before
    );
    assert_eq!(sim.host(B).sent_to(C, b"PILA", Instant::ZERO), 0);
    sim.send(A, B, b"unchanged").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A), [b"unchanged".to_vec()]);
}

#[test]
fn forged_and_replayed_pils_do_not_disturb_the_session() {
    let mut sim = established_pair(8);
    let captured = sim
        .host(A)
        .sent
        .iter()
        .rev()
        .find(|(_, to, f)| *to == B && magic(f) == b"PILS")
        .map(|(_, _, f)| f.clone())
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            sim.inject(B, A, &captured),
            Err(KexError::Rejected(RecvVerdict::Reject(Reject::Replay)))
        );
    }
    let mut forged = captured.clone();
    forged[12..20].copy_from_slice(&(1u64 << 63).to_be_bytes());
    for _ in 0..4 {
        assert_eq!(
            sim.inject(B, A, &forged),
            Err(KexError::Pils(PilsError::Authentication))
        );
    }
    assert_eq!(sim.host(B).sent_to(A, b"PILA", Instant::ZERO), 1);
    sim.send(A, B, b"after forgeries").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.host(B).payloads_from(A),
        [b"hello b".to_vec(), b"after forgeries".to_vec()]
    );
    assert_eq!(session_downs(sim.host(B), A), 0);
}

#[test]
fn decrypt_drop_gate_fires_after_five_failures_and_the_session_comes_back() {
    let mut sim = established_pair(9);
    sim.run_for(Duration::from_secs(3));
    let mut forged = vec![0u8; 80];
    forged[..4].copy_from_slice(b"PILS");
    forged[4..8].copy_from_slice(&A.to_be_bytes());
    for _ in 0..5 {
        let _ = sim.inject(B, A, &forged);
    }
    assert_eq!(
        sim.host(B)
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                KexEvent::SessionDown { node: A, reason } => Some(*reason),
                _ => None,
            })
            .collect::<Vec<_>>(),
        [SessionDownReason::DropGate(DropReason::DecryptFailures)]
    );
    assert!(!sim.kx(B).has_session(A));
    sim.run_for(Duration::from_secs(2));

    assert!(sim.established(A, B));
    assert_eq!(session_ups(sim.host(B), A, false), 2);
    assert_eq!(session_downs(sim.host(A), B), 0);
    sim.send(A, B, b"again a").unwrap();
    sim.send(B, A, b"again b").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A).last().unwrap(), b"again a");
    assert_eq!(sim.host(A).payloads_from(B).last().unwrap(), b"again b");
}

#[test]
fn key_exchange_gives_up_after_six_sends_then_cools_down() {
    let mut sim = Sim::new(10, &[A, B]);
    sim.drop_filter = Some(Box::new(|_, from, _, _| from == A));
    let start = sim.now;
    sim.connect(A, B);
    sim.send(A, B, b"doomed").unwrap();
    sim.run_for(Duration::from_secs(23));
    assert_eq!(
        sim.host(A)
            .count_events(|e| matches!(e, KexEvent::GaveUp { .. })),
        0
    );
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        sim.host(A).count_events(|e| matches!(
            e,
            KexEvent::GaveUp {
                node: B,
                dropped_packets: 1
            }
        )),
        1
    );
    let sends = usize::try_from(KEY_EXCHANGE_MAX_SENDS).unwrap();
    assert_eq!(sim.host(A).sent_to(B, b"PILA", start), sends);
    assert_eq!(sim.host(A).sent_to(B, b"PILK", start), sends - 1);
    assert_eq!(sim.kx(A).pending_len(B), 0);

    assert_eq!(sim.send(A, B, b"refused"), Err(KexError::GiveUpCooldown));
    sim.run_for(Duration::from_secs(5));
    sim.drop_filter = None;
    assert_eq!(sim.send(A, B, b"retry"), Ok(SendOutcome::Queued));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(B).payloads_from(A), [b"retry".to_vec()]);
}

#[test]
fn full_pending_queue_drops_and_reports_the_newest_packet() {
    let mut sim = Sim::new(11, &[A, B]);
    sim.drop_filter = Some(Box::new(|now, from, _, _| {
        from == A && now < Instant::from_millis(3_000)
    }));
    sim.connect(A, B);
    for i in 0..PENDING_PACKETS_PER_PEER {
        assert_eq!(
            sim.send(A, B, format!("p{i}").as_bytes()),
            Ok(SendOutcome::Queued)
        );
    }
    assert_eq!(sim.send(A, B, b"newest"), Err(KexError::PendingDropped));
    assert_eq!(
        sim.host(A)
            .count_events(|e| *e == KexEvent::PendingDropped { node: B }),
        1
    );
    sim.run_for(Duration::from_secs(6));
    let want: Vec<Vec<u8>> = (0..PENDING_PACKETS_PER_PEER)
        .map(|i| format!("p{i}").into_bytes())
        .collect();
    assert_eq!(sim.host(B).payloads_from(A), want);
}

#[test]
fn keepalive_goes_out_after_25_s_idle_and_is_not_answered() {
    let mut sim = established_pair(12);
    let last_a_send = sim.host(A).sent.last().unwrap().0;
    sim.run_for(Duration::from_secs(10));
    // B sends later, so its own keepalive is not due when A's arrives.
    sim.send(B, A, b"b later").unwrap();
    let idle_end = last_a_send + KEEPALIVE_IDLE;
    sim.run_for(idle_end.saturating_duration_since(sim.now) - Duration::from_millis(1));
    let after_last = last_a_send + Duration::from_micros(1);
    assert_eq!(sim.host(A).sent_to(B, b"PILS", after_last), 0);

    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.host(A).sent_to(B, b"PILS", after_last), 1);
    let (sent_at, _, _) = sim.host(A).sent.last().unwrap().clone();
    assert_eq!(
        sent_at, idle_end,
        "sent after exactly {KEEPALIVE_IDLE:?} idle"
    );
    assert_eq!(sim.host(B).sent_to(A, b"PILS", sent_at), 0, "not answered");
    assert_eq!(sim.host(B).sent_to(A, b"PILA", sent_at), 0);
    assert_eq!(sim.host(B).payloads_from(A), [b"hello b".to_vec()]);
}

#[test]
fn sessions_form_and_nothing_is_delivered_twice_over_a_lossy_network() {
    for seed in 0..24 {
        let mut sim = Sim::new(100 + seed, &[A, B]);
        sim.loss_percent = 10;
        sim.dup_percent = 10;
        sim.jitter = Duration::from_millis(30);
        sim.connect(A, B);
        sim.connect(B, A);
        sim.run_for(Duration::from_secs(30));
        assert!(sim.established(A, B), "seed {seed}");
        for i in 0..20u8 {
            sim.send(A, B, &[i]).unwrap();
            sim.send(B, A, &[i]).unwrap();
            sim.run_for(Duration::from_millis(10));
        }
        sim.run_for(Duration::from_secs(2));
        for (x, y) in [(A, B), (B, A)] {
            let got = sim.host(x).payloads_from(y);
            let mut unique = got.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), got.len(), "seed {seed}: duplicate delivery");
            assert!(got.iter().all(|p| p.len() == 1 && p[0] < 20));
            assert!(
                got.len() >= 10,
                "seed {seed}: only {} of 20 arrived",
                got.len()
            );
        }
    }
}
