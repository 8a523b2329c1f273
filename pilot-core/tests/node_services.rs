//! Datagrams, pings and the built-in services of the node (spec §8.10, §8.11, §9.6, §10)
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

use pilot_core::addr::ports;
use pilot_core::node::{Event, NodeConfig, NodeError};
use pilot_core::registry::Request;
use pilot_core::services::dataexchange::{Frame, FrameType};
use pilot_core::services::exchange_server::ExchangeReply;
use pilot_core::services::trust_service::TrustEvent;
use sim::{addr, public_config, random_bytes, Sim};

const A: u32 = 0x0A;
const B: u32 = 0x0B;
const C: u32 = 0x0C;
const PORT: u16 = 5_000;
const LIMIT: Duration = Duration::from_secs(30);
/// A plausible wall clock, so trust timestamps look real (spec §9.6 time window).
const UNIX_AT_ZERO: u64 = 1_780_000_000;

fn sim_with(nodes: &[(u32, NodeConfig)]) -> Sim {
    let mut sim = Sim::new(0x5E);
    for (id, config) in nodes {
        sim.add_node(*id, config.clone());
    }
    for (from, _) in nodes {
        for (to, _) in nodes {
            if from != to {
                sim.introduce(*from, *to);
            }
        }
    }
    sim
}

fn private_config() -> NodeConfig {
    NodeConfig {
        unix_secs_at_zero: UNIX_AT_ZERO,
        ..NodeConfig::default()
    }
}

#[test]
fn echo_service_returns_every_byte() {
    let mut sim = sim_with(&[(A, public_config()), (B, public_config())]);
    let conn = sim
        .with(A, |n, now| n.dial(now, addr(B), ports::ECHO))
        .unwrap();
    let data = random_bytes(1, 200_000);
    sim.queue_write(A, conn, data.clone(), false);
    assert!(sim.run_until(LIMIT, |s| s.nodes[&A]
        .sinks
        .get(&conn)
        .is_some_and(|d| d.len() == data.len())));
    assert_eq!(sim.nodes[&A].sinks[&conn], data);
    sim.with(A, |n, now| n.close(now, conn)).unwrap();
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.node(B).connection_count(), 0, "echo connection reaped");
}

#[test]
fn data_exchange_acknowledges_text_with_its_length() {
    let mut sim = sim_with(&[(A, public_config()), (B, public_config())]);
    let conn = sim
        .with(A, |n, now| {
            n.send_message(now, addr(B), &Frame::Text(b"hello, world"))
        })
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| s
        .saw(A, |e| matches!(e, Event::MessageAcked { .. }))));
    assert!(sim.saw(A, |e| *e
        == Event::MessageAcked {
            conn,
            peer: addr(B),
            reply: ExchangeReply::Acked {
                frame_type: FrameType::Text,
                len: 12
            }
        }));
    assert!(sim.saw(B, |e| *e
        == Event::MessageReceived {
            from: addr(A),
            frame_type: FrameType::Text,
            filename: None,
            payload: b"hello, world".to_vec()
        }));
}

#[test]
fn data_exchange_reply_bytes_are_ack_text_n_bytes() {
    let mut sim = sim_with(&[(A, public_config()), (B, public_config())]);
    let conn = sim
        .with(A, |n, now| n.dial(now, addr(B), ports::DATA_EXCHANGE))
        .unwrap();
    let mut frame = Vec::new();
    Frame::Binary(&[7; 300]).encode(&mut frame).unwrap();
    sim.queue_write(A, conn, frame, false);
    let mut want = Vec::new();
    Frame::Text(b"ACK BINARY 300 bytes")
        .encode(&mut want)
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| s.nodes[&A]
        .sinks
        .get(&conn)
        .is_some_and(|d| d.len() >= want.len())));
    assert_eq!(sim.nodes[&A].sinks[&conn], want);
}

#[test]
fn event_stream_forwards_to_topic_and_wildcard_but_never_back_to_publisher() {
    let mut sim = sim_with(&[
        (A, public_config()),
        (B, public_config()),
        (C, public_config()),
    ]);
    let a_sub = sim
        .with(A, |n, now| n.subscribe(now, addr(B), b"news"))
        .unwrap();
    let c_sub = sim
        .with(C, |n, now| n.subscribe(now, addr(B), b"*"))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| s
        .events(B)
        .iter()
        .filter(|e| matches!(e, Event::BrokerSubscribed { .. }))
        .count()
        == 2));

    // A publishes on its own subscription: C (wildcard) gets it, A does not.
    sim.with(A, |n, now| n.publish_on(now, a_sub, b"news", b"from A"))
        .unwrap();
    // C publishes on a stream of its own: A (topic) and C's wildcard subscription get it.
    sim.with(C, |n, now| n.publish(now, addr(B), b"news", b"from C"))
        .unwrap();
    // Another topic reaches only the wildcard.
    sim.with(C, |n, now| n.publish(now, addr(B), b"sport", b"goal"))
        .unwrap();
    sim.run_for(Duration::from_secs(5));

    let received = |s: &Sim, id: u32| -> Vec<(Vec<u8>, Vec<u8>)> {
        s.events(id)
            .iter()
            .filter_map(|e| match e {
                Event::EventReceived { topic, payload, .. } => {
                    Some((topic.clone(), payload.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let at_a = received(&sim, A);
    let at_c = received(&sim, C);
    assert_eq!(at_a, vec![(b"news".to_vec(), b"from C".to_vec())]);
    assert!(at_c.contains(&(b"news".to_vec(), b"from A".to_vec())));
    assert!(at_c.contains(&(b"sport".to_vec(), b"goal".to_vec())));
    // C's separate publishing stream is a different connection than its wildcard one, so
    // the broker forwards C's own "news" to C's subscription (it is not the publisher).
    assert!(at_c.contains(&(b"news".to_vec(), b"from C".to_vec())));
    let _ = c_sub;
}

#[test]
fn datagrams_reach_listened_ports_from_fresh_source_ports() {
    let mut sim = sim_with(&[(A, public_config()), (B, public_config())]);
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"one"))
        .unwrap();
    sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"two"))
        .unwrap();
    sim.with(A, |n, now| n.send_to(now, addr(B), 6_000, b"nobody"))
        .unwrap();
    assert_eq!(
        sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"")),
        Err(NodeError::EmptyPayload)
    );
    sim.run_for(Duration::from_secs(5));
    let got: Vec<_> = sim
        .events(B)
        .iter()
        .filter_map(|e| match e {
            Event::Datagram {
                from,
                src_port,
                dst_port,
                payload,
            } => Some((*from, *src_port, *dst_port, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, addr(A));
    assert_eq!((got[0].2, got[0].3.as_slice()), (PORT, &b"one"[..]));
    assert_eq!((got[1].2, got[1].3.as_slice()), (PORT, &b"two"[..]));
    assert_ne!(got[0].1, got[1].1, "fresh ephemeral source port per send");
    assert!(got[0].1 >= ports::EPHEMERAL_START);
}

#[test]
fn untrusted_datagram_is_dropped_on_a_private_node() {
    let mut sim = sim_with(&[(A, public_config()), (B, private_config())]);
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"let me in"))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    assert!(sim.node(B).has_session(A));
    assert!(!sim.saw(B, |e| matches!(e, Event::Datagram { .. })));
    sim.with(B, |n, _| n.set_trusted(A, true)).unwrap();
    sim.with(A, |n, now| n.send_to(now, addr(B), PORT, b"now?"))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    assert!(sim.saw(
        B,
        |e| matches!(e, Event::Datagram { payload, .. } if payload == b"now?")
    ));
}

#[test]
fn ping_is_answered_once_and_the_pong_is_not() {
    let mut sim = sim_with(&[(A, public_config()), (B, public_config())]);
    sim.with(A, |n, now| n.ping(now, addr(B), b"are you there"))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    let pongs_at = |s: &Sim, id: u32| {
        s.events(id)
            .iter()
            .filter(|e| matches!(e, Event::Pong { .. }))
            .count()
    };
    assert_eq!(pongs_at(&sim, A), 1);
    assert!(sim.saw(A, |e| *e
        == Event::Pong {
            from: addr(B),
            payload: b"are you there".to_vec()
        }));
    assert_eq!(pongs_at(&sim, B), 0, "a pong (ACK flag) is never answered");
    assert_eq!(
        sim.with(A, |n, now| n.ping(now, addr(B), b"")),
        Err(NodeError::EmptyPayload),
        "an empty port-0 control packet is a keepalive, not a ping"
    );
}

#[test]
fn idle_session_keepalives_draw_no_answers_and_keep_the_session() {
    let mut sim = sim_with(&[(A, public_config()), (B, public_config())]);
    sim.with(A, |n, now| n.ping(now, addr(B), b"x")).unwrap();
    sim.run_for(Duration::from_secs(5));
    sim.capture = true;
    sim.run_for(Duration::from_secs(60));
    // Tunnel keepalives (empty port-0 control, §8.10) flow every 25 s of send idleness; none
    // is answered with a pong, and the sessions stay up.
    assert!(!sim.wire.is_empty());
    assert!(
        sim.wire.len() <= 8,
        "no keepalive ping-pong: {}",
        sim.wire.len()
    );
    assert_eq!(
        sim.events(A)
            .iter()
            .filter(|e| matches!(e, Event::Pong { .. }))
            .count(),
        1
    );
    assert!(sim.node(A).has_session(B) && sim.node(B).has_session(A));
}

fn trust_events(sim: &Sim, id: u32) -> Vec<TrustEvent> {
    sim.events(id)
        .iter()
        .filter_map(|e| match e {
            Event::Trust(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn trust_handshake_request_approve_opens_the_private_gate() {
    let mut sim = sim_with(&[(A, private_config()), (B, private_config())]);
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim.with(A, |n, now| n.trust_request(now, B, "let us talk"))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| !trust_events(s, B).is_empty()));
    assert!(matches!(
        &trust_events(&sim, B)[0],
        TrustEvent::RequestPending { node: A, justification, .. } if justification == "let us talk"
    ));
    assert!(!sim.node(B).is_trusted(A));

    sim.with(B, |n, now| n.trust_approve(now, A)).unwrap();
    assert!(sim.node(B).is_trusted(A));
    assert!(sim.saw(
        B,
        |e| matches!(e, Event::RegistryRequest(r) if matches!(**r, Request::ReportTrust(_)))
    ));
    assert!(sim.run_until(LIMIT, |s| trust_events(s, A)
        .contains(&TrustEvent::Trusted { node: B })));
    assert!(sim.node(A).is_trusted(B));

    // The gate is open now: A's stream to B's private port is accepted.
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    assert!(sim.run_until(LIMIT, |s| s.saw(A, |e| *e == Event::StreamOpened(conn))));
}

#[test]
fn trust_handshake_reject_and_revoke_round_trips() {
    let mut sim = sim_with(&[(A, private_config()), (B, private_config())]);
    sim.with(A, |n, now| n.trust_request(now, B, "please"))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| !trust_events(s, B).is_empty()));
    sim.with(B, |n, now| n.trust_reject(now, A, "no thanks"))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| trust_events(s, A).iter().any(
        |e| matches!(e, TrustEvent::Rejected { node: B, reason } if reason == "no thanks")
    )));
    assert!(!sim.node(A).is_trusted(B));

    // Mutual requests are consent: B asks A, A asks back, both trust.
    sim.with(B, |n, now| n.trust_request(now, A, "me again"))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| trust_events(s, A)
        .iter()
        .any(|e| matches!(e, TrustEvent::RequestPending { node: B, .. }))));
    sim.with(A, |n, now| n.trust_request(now, B, "yes"))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| s.node(B).is_trusted(A)
        && s.node(A).is_trusted(B)));

    sim.with(A, |n, now| n.trust_revoke(now, B, "bye")).unwrap();
    assert!(!sim.node(A).is_trusted(B));
    assert!(sim.run_until(LIMIT, |s| trust_events(s, B)
        .iter()
        .any(|e| matches!(e, TrustEvent::Revoked { node: A, .. }))));
    assert!(!sim.node(B).is_trusted(A));
}

#[test]
fn trust_commands_fail_when_the_service_is_disabled() {
    let config = NodeConfig {
        trust: None,
        ..public_config()
    };
    let mut sim = sim_with(&[(A, config), (B, public_config())]);
    assert_eq!(
        sim.with(A, |n, now| n.trust_request(now, B, "x")),
        Err(NodeError::ServiceDisabled)
    );
    // And nothing listens on 444 then: a SYN there is reset.
    let conn = sim
        .with(B, |n, now| n.dial(now, addr(A), ports::TRUST_HANDSHAKE))
        .unwrap();
    assert!(sim.run_until(LIMIT, |s| s.saw(B, |e| *e
        == Event::StreamReset {
            conn,
            timed_out: false
        })));
}
