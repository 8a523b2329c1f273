//! Restarts, lost key-exchange frames and hostile frames (spec §5, §6) seen from the node,
//! over the simulated network of `sim`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod sim;

use std::time::Duration;

use pilot_core::crypto::TunnelKey;
use pilot_core::keyexchange::KexError;
use pilot_core::node::{ConnectionId, Event, Input, NodeError};
use sim::{addr, path, public_config, random_bytes, sha256, Link, Sim};

const A: u32 = 0x0A;
const B: u32 = 0x0B;
const PORT: u16 = 5_000;
const LIMIT: Duration = Duration::from_secs(60);
const B_TUNNEL_KEY: [u8; 32] = [0x42; 32];

fn pair(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    sim.add_node(A, public_config());
    sim.add_node(B, public_config());
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim
}

fn datagrams(sim: &Sim, id: u32) -> Vec<Vec<u8>> {
    sim.events(id)
        .iter()
        .filter_map(|e| match e {
            Event::Datagram { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
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

/// Dials B from A, sends `data`, closes; runs until B saw end of stream on its newest
/// accepted connection. Returns what B read there.
fn send_stream(sim: &mut Sim, data: &[u8]) -> Vec<u8> {
    let before = accepted(sim, B).len();
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.queue_write(A, conn, data.to_vec(), true);
    assert!(sim.run_until(LIMIT, |s| accepted(s, B)
        .get(before)
        .is_some_and(|c| s.nodes[&B].eof.contains(c))));
    let conn = accepted(sim, B)[before];
    sim.nodes[&B].sinks.get(&conn).cloned().unwrap_or_default()
}

#[test]
fn peer_restart_with_new_key_salvages_packets_sent_across_it() {
    let mut sim = pair(1);
    sim.introduce(A, B);
    sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"before"))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(datagrams(&sim, B), vec![b"before".to_vec()]);

    // B restarts: same identity, fresh X25519 key, no sessions. A does not know yet and
    // seals three datagrams under the old session; B answers "no key" (PILA + PILK), A
    // rekeys and replays its salvage ring under the new session (spec §5.5).
    sim.restart(B, public_config(), None);
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    for payload in [&b"one"[..], b"two", b"three"] {
        sim.with(A, |n, now| n.send_to(now, addr(B), PORT, payload))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(5));
    assert!(sim.saw(A, |e| *e
        == Event::PeerSessionUp {
            node: B,
            rekey: true
        }));
    // The ring also replays "before" (sent < 5 s earlier): the new process never saw it,
    // so across a restart salvage is at-least-once.
    let got = datagrams(&sim, B);
    assert!(
        got.ends_with(&[b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]),
        "{got:?}"
    );
}

#[test]
fn peer_restart_with_new_key_mid_transfer_loses_no_data_the_app_resends() {
    let mut sim = pair(2);
    sim.introduce(A, B);
    let data = random_bytes(2, 2 * 1024 * 1024);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.queue_write(A, conn, data.clone(), true);
    assert!(sim.run_until(LIMIT, |s| s.nodes[&B]
        .sinks
        .values()
        .any(|d| d.len() > 512 * 1024)));

    // B's process is replaced mid-transfer: its stream is gone with it. A's stream gives up
    // by its own timers (8 transmissions, spec §8.7); the tunnel rekeys meanwhile.
    sim.restart(B, public_config(), None);
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    assert!(
        sim.run_until(Duration::from_secs(300), |s| s.saw(A, |e| matches!(
            e,
            Event::StreamReset { conn: c, .. } if *c == conn
        )))
    );
    assert!(sim.saw(A, |e| *e
        == Event::PeerSessionUp {
            node: B,
            rekey: true
        }));

    // The application sends again on a new stream: everything arrives, once, intact.
    let got = send_stream(&mut sim, &data);
    assert_eq!(sha256(&got), sha256(&data));
}

#[test]
fn peer_restart_keeping_its_key_recovers_both_directions() {
    let mut sim = pair(3);
    sim.restart(
        B,
        public_config(),
        Some(TunnelKey::from_bytes(&B_TUNNEL_KEY)),
    );
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.with(A, |n, _| n.listen(PORT)).unwrap();
    sim.introduce(A, B);
    let first = random_bytes(3, 50_000);
    assert_eq!(send_stream(&mut sim, &first), first);

    // B restarts with the same X25519 key: A still holds a session B no longer has.
    sim.restart(
        B,
        public_config(),
        Some(TunnelKey::from_bytes(&B_TUNNEL_KEY)),
    );
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    let second = random_bytes(4, 50_000);
    assert_eq!(sha256(&send_stream(&mut sim, &second)), sha256(&second));
    assert!(sim.node(A).has_session(B) && sim.node(B).has_session(A));

    // And B can reach A over the recovered session (path learned from A's frames).
    let conn = sim.with(B, |n, now| n.dial(now, addr(A), PORT)).unwrap();
    sim.queue_write(B, conn, b"back".to_vec(), true);
    assert!(sim.run_until(LIMIT, |s| s.nodes[&A].sinks.values().any(|d| d == b"back")));
}

#[test]
fn replayed_and_forged_frames_deliver_nothing() {
    let mut sim = pair(4);
    sim.introduce(A, B);
    sim.capture = true;
    for payload in [&b"a"[..], b"b", b"c"] {
        sim.with(A, |n, now| n.send_to(now, addr(B), PORT, payload))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(2));
    sim.capture = false;
    assert_eq!(datagrams(&sim, B).len(), 3);
    let from_a: Vec<Vec<u8>> = sim
        .wire
        .iter()
        .filter(|(from, to, _)| *from == A && *to == B)
        .map(|(_, _, bytes)| bytes.clone())
        .collect();
    let pils: Vec<&Vec<u8>> = from_a.iter().filter(|f| f.starts_with(b"PILS")).collect();
    assert!(!pils.is_empty());
    let errors_before = sim.nodes[&B].frame_errors.len();

    // Replays of every captured frame (PILA and PILS), twice, seconds later.
    for _ in 0..2 {
        for frame in &from_a {
            let at = sim.now + Duration::from_millis(1);
            sim.inject_at(at, A, B, frame.clone());
        }
        sim.run_for(Duration::from_secs(1));
    }
    // Forgeries: a flipped ciphertext byte, a truncated frame, garbage, a forged PILA.
    let mut flipped = pils[0].clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let truncated = pils[0][..20].to_vec();
    let mut forged_pila = from_a
        .iter()
        .find(|f| f.starts_with(b"PILA"))
        .unwrap()
        .clone();
    forged_pila[40] ^= 0x80;
    for frame in [flipped, truncated, b"GET / HTTP/1.1".to_vec(), forged_pila] {
        let at = sim.now + Duration::from_millis(1);
        sim.inject_at(at, A, B, frame);
    }
    sim.run_for(Duration::from_secs(1));

    assert_eq!(
        datagrams(&sim, B).len(),
        3,
        "nothing delivered twice or forged"
    );
    let errors = &sim.nodes[&B].frame_errors[errors_before..];
    assert!(errors
        .iter()
        .any(|e| matches!(e, NodeError::Kex(KexError::Rejected(_)))));
    assert!(errors
        .iter()
        .any(|e| matches!(e, NodeError::Kex(KexError::Pils(_)))));
    assert!(errors.contains(&NodeError::UnsupportedFrame));
    // The session survived the attack: new traffic still flows.
    sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"d"))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(datagrams(&sim, B).len(), 4);
}

#[test]
fn lost_pila_is_recovered_through_a_key_request() {
    let mut sim = pair(5);
    sim.capture = true;
    // B's answering PILA never reaches A.
    sim.link(B, A).down = true;
    sim.introduce(A, B);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    assert!(sim.run_until(LIMIT, |s| s.node(B).has_session(A)));
    assert!(!sim.node(A).has_session(B));
    sim.link(B, A).down = false;

    // A's retransmission carries a PILK key request; B answers it with its PILA (§6.6).
    assert!(sim.run_until(LIMIT, |s| s.saw(A, |e| *e == Event::StreamOpened(conn))));
    assert!(sim
        .wire
        .iter()
        .any(|(from, to, f)| *from == A && *to == B && f.starts_with(b"PILK")));
}

#[test]
fn frames_from_relay_with_mismatched_sender_fragment_are_refused() {
    // A PILF whose header names another sender than the relay envelope said is dropped.
    let mut sim = pair(6);
    let mut fragment = Vec::new();
    fragment.extend_from_slice(b"PILF");
    fragment.extend_from_slice(&A.to_be_bytes());
    fragment.extend_from_slice(&7u32.to_be_bytes());
    fragment.extend_from_slice(&[0, 2]);
    fragment.extend_from_slice(&[0u8; 1209]);
    let now = sim.now;
    let result = sim.node(B).handle_input(
        now,
        Input::Frame {
            path: path(A),
            bytes: fragment,
            relay_sender: Some(0x99),
        },
    );
    assert!(matches!(result, Err(NodeError::Fragment(_))));
    let _ = Link::default();
}
