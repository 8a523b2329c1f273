//! Stream scenarios of the node (spec §6, §8) over the simulated network of `sim`.
//!
//! The 10 MiB lossy transfer runs once per seed; the number of seeds is `NODE_SIM_SEEDS`,
//! by default 100 in release builds and 2 in debug builds (so `cargo test` in debug stays
//! around a minute), starting at `NODE_SIM_FIRST_SEED` (default 1); a failing seed replays
//! exactly. Release: `NODE_SIM_SEEDS=100 cargo test --release -p pilot-core --test node_streams`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod sim;

use std::time::Duration;

use pilot_core::addr::Addr;
use pilot_core::node::{ConnectionId, Event, NodeConfig};
use pilot_core::stream::State;
use sim::{addr, path, public_config, random_bytes, sha256, Link, Sim};

const A: u32 = 0x0A;
const B: u32 = 0x0B;
const C: u32 = 0x0C;
const PORT: u16 = 5_000;

/// Two public nodes; `b` listens on [`PORT`].
fn pair(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    sim.add_node(A, public_config());
    sim.add_node(B, public_config());
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim
}

fn accepted(sim: &Sim, id: u32) -> Vec<ConnectionId> {
    sim.events(id)
        .iter()
        .filter_map(|e| match e {
            Event::StreamAccepted { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// Dials `to`:[`PORT`] from `from`, writes `data`, closes, and runs until the receiver saw
/// end of stream. Returns what the receiver read.
fn transfer(sim: &mut Sim, from: u32, to: u32, data: &[u8], limit: Duration) -> Vec<u8> {
    let before = accepted(sim, to).len();
    let conn = sim
        .with(from, |n, now| n.dial(now, addr(to), PORT))
        .unwrap();
    sim.queue_write(from, conn, data.to_vec(), true);
    let done = sim.run_until(limit, |s| {
        accepted(s, to)
            .get(before)
            .is_some_and(|c| s.nodes[&to].eof.contains(c))
    });
    assert!(
        done,
        "transfer {from:#x} -> {to:#x} did not finish at {:?}; receiver events: {:?}; sender events: {:?}",
        sim.now,
        sim.events(to)
            .iter()
            .zip(&sim.nodes[&to].event_times)
            .filter(|(e, _)| !matches!(e, Event::StreamReadable(_)))
            .map(|(e, t)| (t.as_micros() / 1000, e))
            .collect::<Vec<_>>(),
        sim.events(from)
            .iter()
            .zip(&sim.nodes[&from].event_times)
            .filter(|(e, _)| !matches!(e, Event::StreamWritable(_)))
            .map(|(e, t)| (t.as_micros() / 1000, e))
            .collect::<Vec<_>>()
    );
    let conn = accepted(sim, to)[before];
    sim.nodes[&to].sinks.get(&conn).cloned().unwrap_or_default()
}

#[test]
fn first_contact_from_dialer_side_delivers_stream() {
    let mut sim = pair(1);
    sim.introduce(A, B);
    let data = random_bytes(1, 100_000);
    let got = transfer(&mut sim, A, B, &data, Duration::from_secs(30));
    assert_eq!(sha256(&got), sha256(&data));
    assert!(sim.saw(A, |e| matches!(e, Event::PeerSessionUp { node: B, .. })));
    assert!(sim.saw(B, |e| matches!(e, Event::PeerSessionUp { node: A, .. })));
}

#[test]
fn first_contact_then_reverse_direction_uses_learned_path() {
    let mut sim = pair(2);
    sim.with(A, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, B);
    let one = random_bytes(2, 10_000);
    assert_eq!(transfer(&mut sim, A, B, &one, Duration::from_secs(30)), one);
    // B never got a path from a registry: it replies where A's frames came from (§7.1).
    let two = random_bytes(3, 10_000);
    assert_eq!(transfer(&mut sim, B, A, &two, Duration::from_secs(30)), two);
}

#[test]
fn first_contact_from_the_other_side_works_too() {
    let mut sim = pair(3);
    sim.with(A, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(B, A);
    let data = random_bytes(4, 50_000);
    assert_eq!(
        transfer(&mut sim, B, A, &data, Duration::from_secs(30)),
        data
    );
}

#[test]
fn simultaneous_dial_opens_two_independent_streams() {
    let mut sim = pair(4);
    sim.with(A, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, B);
    sim.introduce(B, A);
    let ab = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    let ba = sim.with(B, |n, now| n.dial(now, addr(A), PORT)).unwrap();
    let one = random_bytes(5, 30_000);
    let two = random_bytes(6, 30_000);
    sim.queue_write(A, ab, one.clone(), true);
    sim.queue_write(B, ba, two.clone(), true);
    let done = sim.run_until(Duration::from_secs(30), |s| {
        accepted(s, A).len() == 1
            && accepted(s, B).len() == 1
            && s.nodes[&A].eof.contains(&accepted(s, A)[0])
            && s.nodes[&B].eof.contains(&accepted(s, B)[0])
    });
    assert!(done);
    assert_eq!(sim.nodes[&B].sinks[&accepted(&sim, B)[0]], one);
    assert_eq!(sim.nodes[&A].sinks[&accepted(&sim, A)[0]], two);
}

#[test]
fn syn_to_unbound_port_is_answered_with_rst() {
    let mut sim = pair(5);
    sim.introduce(A, B);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), 6_000)).unwrap();
    let reset = sim.run_until(Duration::from_secs(10), |s| {
        s.saw(A, |e| {
            *e == Event::StreamReset {
                conn,
                timed_out: false,
            }
        })
    });
    assert!(reset);
    assert!(sim.saw(A, |e| *e == Event::StreamClosed(conn)));
    assert!(accepted(&sim, B).is_empty());
}

#[test]
fn untrusted_syn_is_dropped_silently_on_a_private_node() {
    let mut sim = Sim::new(6);
    sim.add_node(A, public_config());
    sim.add_node(B, NodeConfig::default()); // private
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, B);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.run_for(Duration::from_secs(3));
    // The tunnel is up (key exchange needs no trust), but no stream and no RST.
    assert!(sim.node(B).has_session(A));
    assert!(accepted(&sim, B).is_empty());
    assert!(!sim.saw(A, |e| matches!(e, Event::StreamReset { .. })));
    assert_eq!(sim.node(A).connection_state(conn), Some(State::SynSent));
    // Once the driver marks A trusted (registry check_trust), the retransmitted SYN gets in.
    sim.with(B, |n, _| n.set_trusted(A, true)).unwrap();
    let opened = sim.run_until(Duration::from_secs(20), |s| {
        s.saw(A, |e| *e == Event::StreamOpened(conn))
    });
    assert!(opened);
}

#[test]
fn untrusted_syn_to_a_closed_port_gets_no_rst_either() {
    // An RST for closed ports only would let an untrusted peer map the open ones.
    let mut sim = Sim::new(6);
    sim.add_node(A, public_config());
    sim.add_node(B, NodeConfig::default()); // private
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, B);
    let closed = sim
        .with(A, |n, now| n.dial(now, addr(B), PORT + 1))
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    assert!(sim.node(B).has_session(A));
    assert!(!sim.saw(A, |e| matches!(e, Event::StreamReset { .. })));
    assert_eq!(sim.node(A).connection_state(closed), Some(State::SynSent));
}

#[test]
fn fin_race_both_sides_close_at_once_and_both_reach_closed() {
    let mut sim = pair(7);
    sim.introduce(A, B);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.queue_write(A, conn, b"before the race".to_vec(), false);
    assert!(
        sim.run_until(Duration::from_secs(10), |s| accepted(s, B).len() == 1
            && s.nodes[&B]
                .sinks
                .get(&accepted(s, B)[0])
                .is_some_and(|d| d.len() == 15))
    );
    let b_conn = accepted(&sim, B)[0];
    // Both close in the same instant: the FINs cross on the wire.
    let now = sim.now;
    sim.node(A).close(now, conn).unwrap();
    sim.node(B).close(now, b_conn).unwrap();
    sim.drain(A);
    sim.drain(B);
    let closed = sim.run_until(Duration::from_secs(60), |s| {
        s.saw(A, |e| *e == Event::StreamClosed(conn))
            && s.saw(B, |e| *e == Event::StreamClosed(b_conn))
    });
    assert!(closed);
    assert!(!sim.saw(A, |e| matches!(e, Event::StreamReset { .. })));
    assert!(!sim.saw(B, |e| matches!(e, Event::StreamReset { .. })));
    // TIME_WAIT ends and the table is empty: no FIN storm keeps anything alive.
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.node(A).connection_count(), 0);
    assert_eq!(sim.node(B).connection_count(), 0);
}

#[test]
fn fin_race_with_loss_still_closes_cleanly() {
    let mut sim = pair(8);
    sim.set_links(
        A,
        B,
        Link {
            loss: 0.3,
            ..Link::default()
        },
    );
    sim.introduce(A, B);
    let data = random_bytes(8, 20_000);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.queue_write(A, conn, data.clone(), true);
    let done = sim.run_until(Duration::from_secs(120), |s| {
        accepted(s, B)
            .first()
            .is_some_and(|c| s.nodes[&B].eof.contains(c))
    });
    assert!(done);
    let b_conn = accepted(&sim, B)[0];
    let now = sim.now;
    sim.node(B).close(now, b_conn).unwrap();
    sim.drain(B);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.nodes[&B].sinks[&b_conn], data);
    assert_eq!(sim.node(A).connection_count(), 0);
    assert_eq!(sim.node(B).connection_count(), 0);
}

#[test]
fn connections_are_keyed_by_remote_address_including_network() {
    let mut sim = Sim::new(9);
    sim.add_node(A, public_config());
    sim.add_node(B, public_config());
    sim.add_node(C, public_config());
    sim.with(C, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, C);
    sim.introduce(B, C);
    let one = random_bytes(10, 5_000);
    let two = random_bytes(11, 5_000);
    let a = sim.with(A, |n, now| n.dial(now, addr(C), PORT)).unwrap();
    let b = sim
        .with(B, |n, now| n.dial(now, Addr::new(7, C), PORT))
        .unwrap();
    sim.queue_write(A, a, one.clone(), true);
    sim.queue_write(B, b, two.clone(), true);
    assert!(sim.run_until(Duration::from_secs(30), |s| { s.nodes[&C].eof.len() == 2 }));
    let conns = accepted(&sim, C);
    let peers: Vec<Addr> = sim
        .events(C)
        .iter()
        .filter_map(|e| match e {
            Event::StreamAccepted { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    let by_peer = |p: Addr| conns[peers.iter().position(|x| *x == p).unwrap()];
    assert_eq!(sim.nodes[&C].sinks[&by_peer(Addr::new(1, A))], one);
    // spec §8.1: B dialled with network 7, so its own address on that stream is network 7.
    assert_eq!(sim.nodes[&C].sinks[&by_peer(Addr::new(7, B))], two);
}

fn seeds() -> u64 {
    let default = if cfg!(debug_assertions) { 2 } else { 100 };
    std::env::var("NODE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The link of the 10 MiB scenario: [`Link::lossy`] on the data path (10 % loss, 5 %
/// duplication, 10 % reordering), and the same with 2 % loss on the ACK path.
///
/// Why not 10 % both ways: after a retransmission timeout the sender resends one segment per
/// RTO, and a segment whose ACK can only come from its own retransmission needs data and ACK
/// to survive, 0.81 per try. Spec §8.7 allows 8 transmissions (the original and 7 resends), so
/// a chain of timeouts ends in a reset with probability 0.19^7 ≈ 9e-6; a 10 MiB transfer at
/// 10 % loss both ways sees about 250 such chains, so about 0.2–0.5 % of transfers reset
/// (seeds 26 and 92 of 1..=100; 5 of 1..=1000, measured). That is the protocol's limit, not
/// a defect: the stream-level simulation shows the same per-step odds.
/// `symmetric_loss_never_corrupts_a_stream` pins that such a run delivers a correct prefix and
/// a reset, never wrong bytes.
fn transfer_links(sim: &mut Sim) {
    sim.set_links(A, B, Link::lossy());
    sim.link(B, A).loss = 0.02;
}

fn first_seed() -> u64 {
    std::env::var("NODE_SIM_FIRST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[test]
fn ten_mib_over_loss_reordering_and_duplication_arrives_intact() {
    let data = random_bytes(0x10, 10 * 1024 * 1024);
    let want = sha256(&data);
    for seed in first_seed()..first_seed() + seeds() {
        let mut sim = pair(seed);
        transfer_links(&mut sim);
        sim.introduce(A, B);
        let got = transfer(&mut sim, A, B, &data, Duration::from_secs(3_600));
        assert_eq!(got.len(), data.len(), "seed {seed}");
        assert_eq!(sha256(&got), want, "seed {seed}");
        let stats = sim.node(A).stats();
        assert_eq!(stats.packets_dropped_in, 0, "seed {seed}");
    }
}

#[test]
fn symmetric_loss_never_corrupts_a_stream() {
    // Seed 26 with 10 % loss both ways is a run that ends in a timeout RST (see above).
    let data = random_bytes(0x10, 10 * 1024 * 1024);
    for seed in [26, first_seed()] {
        let mut sim = pair(seed);
        sim.set_links(A, B, Link::lossy());
        sim.introduce(A, B);
        let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
        sim.queue_write(A, conn, data.clone(), true);
        let ended = sim.run_until(Duration::from_secs(3_600), |s| {
            s.saw(A, |e| *e == Event::StreamClosed(conn))
        });
        assert!(ended, "seed {seed}");
        let got: Vec<u8> = sim.nodes[&B].sinks.values().flatten().copied().collect();
        assert!(
            data.starts_with(&got),
            "seed {seed}: received bytes are a prefix"
        );
        let intact = got.len() == data.len();
        let timed_out = sim.saw(A, |e| {
            *e == Event::StreamReset {
                conn,
                timed_out: true,
            }
        });
        assert!(intact != timed_out, "seed {seed}: intact xor timed out");
        if seed == 26 {
            assert!(timed_out, "seed 26 is the known give-up run");
        }
    }
}

#[test]
fn mtu_below_frame_size_blocks_streams_but_pilf_fragments_pass() {
    // Link MTU 600: a full 1024-byte segment's PILS frame is dropped...
    let mut sim = pair(12);
    sim.set_links(
        A,
        B,
        Link {
            mtu: 600,
            ..Link::default()
        },
    );
    sim.introduce(A, B);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.queue_write(A, conn, random_bytes(12, 4_000), true);
    sim.run_for(Duration::from_secs(5));
    assert!(accepted(&sim, B)
        .first()
        .is_none_or(|c| sim.nodes[&B].sinks.get(c).is_none_or(|d| d.len() < 4_000)));

    // ...and with a 1300-byte MTU and MSS 4096, only PILF fragmentation gets data through.
    let config = NodeConfig {
        private: false,
        fragment_large_frames: true,
        stream: pilot_core::stream::Config {
            mss: 4_000,
            ..Default::default()
        },
        ..NodeConfig::default()
    };
    let mut sim = Sim::new(13);
    sim.add_node(A, config.clone());
    sim.add_node(B, config);
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.set_links(
        A,
        B,
        Link {
            mtu: 1_300,
            ..Link::default()
        },
    );
    sim.introduce(A, B);
    let data = random_bytes(13, 100_000);
    assert_eq!(
        transfer(&mut sim, A, B, &data, Duration::from_secs(60)),
        data
    );
    let _ = path(A);
}

#[test]
fn syn_beyond_the_per_port_limit_is_reset_and_the_first_stream_lives_on() {
    let mut sim = Sim::new(14);
    sim.add_node(A, public_config());
    sim.add_node(
        B,
        NodeConfig {
            max_connections_per_port: 1,
            ..public_config()
        },
    );
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, B);
    let first = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    assert!(sim.run_until(Duration::from_secs(10), |s| s
        .saw(A, |e| *e == Event::StreamOpened(first))));
    let second = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    assert!(sim.run_until(Duration::from_secs(10), |s| s.saw(A, |e| *e
        == Event::StreamReset {
            conn: second,
            timed_out: false
        })));
    sim.queue_write(A, first, b"still here".to_vec(), true);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.nodes[&B]
        .sinks
        .values()
        .any(|d| d == b"still here")));
}
