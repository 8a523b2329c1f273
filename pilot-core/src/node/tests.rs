//! Unit tests of the node's command surface; scenarios with traffic live in
//! `tests/node_*.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::vec;
use alloc::vec::Vec;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::keyexchange::KexError;
use crate::stream::StreamError;

const PEER: u32 = 9;

fn node() -> Node<ChaCha20Rng> {
    Node::new(
        NodeConfig::default(),
        Addr::new(1, 7),
        &[3; 32],
        ChaCha20Rng::seed_from_u64(7),
    )
}

fn command(node: &mut Node<ChaCha20Rng>, command: Command) -> Result<Completion, NodeError> {
    node.handle_input(Instant::ZERO, Input::Command(command))
}

fn drain(node: &mut Node<ChaCha20Rng>) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(output) = node.poll_output() {
        if matches!(output, Output::Timeout(_)) {
            out.push(output);
            break;
        }
        out.push(output);
    }
    out
}

#[test]
fn listen_refuses_port_zero_taken_ports_and_service_ports() {
    let mut node = node();
    assert_eq!(
        command(&mut node, Command::Listen { port: 0 }),
        Err(NodeError::InvalidPort)
    );
    assert_eq!(
        command(&mut node, Command::Listen { port: 80 }),
        Ok(Completion::Done)
    );
    assert_eq!(
        command(&mut node, Command::Listen { port: 80 }),
        Err(NodeError::PortInUse)
    );
    assert_eq!(
        command(&mut node, Command::Listen { port: ports::ECHO }),
        Err(NodeError::PortInUse),
        "echo is hosted by default"
    );
    assert_eq!(
        command(&mut node, Command::Unlisten { port: ports::ECHO }),
        Err(NodeError::NotListening),
        "a built-in service is not the application's to unlisten"
    );
    assert_eq!(
        command(&mut node, Command::Unlisten { port: 80 }),
        Ok(Completion::Done)
    );
    assert_eq!(
        command(&mut node, Command::Unlisten { port: 80 }),
        Err(NodeError::NotListening)
    );
}

#[test]
fn dial_is_refused_without_path_to_self_and_to_port_zero() {
    let mut node = node();
    let peer = Addr::new(1, PEER);
    assert_eq!(
        command(&mut node, Command::Dial { peer, port: 80 }),
        Err(NodeError::Kex(KexError::NoPath))
    );
    assert_eq!(
        command(
            &mut node,
            Command::Dial {
                peer: Addr::new(1, 7),
                port: 80
            }
        ),
        Err(NodeError::OwnAddress)
    );
    command(
        &mut node,
        Command::AddPeerPath {
            node: PEER,
            path: PathId(1),
        },
    )
    .unwrap();
    assert_eq!(
        command(&mut node, Command::Dial { peer, port: 0 }),
        Err(NodeError::InvalidPort)
    );
    assert!(matches!(
        command(&mut node, Command::Dial { peer, port: 80 }),
        Ok(Completion::Connection(_))
    ));
}

#[test]
fn dial_queues_the_syn_behind_a_key_exchange_and_arms_a_timer() {
    let mut node = node();
    command(
        &mut node,
        Command::AddPeerPath {
            node: PEER,
            path: PathId(1),
        },
    )
    .unwrap();
    let Ok(Completion::Connection(conn)) = command(
        &mut node,
        Command::Dial {
            peer: Addr::new(1, PEER),
            port: 80,
        },
    ) else {
        panic!("dial refused");
    };
    let out = drain(&mut node);
    // Our PILA went out on the peer's path; the SYN waits in the pending queue.
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Transmit { path: PathId(1), bytes } if bytes.starts_with(b"PILA")
    )));
    assert!(matches!(out.last(), Some(Output::Timeout(_))));
    assert_eq!(
        node.connection_state(conn),
        Some(crate::stream::State::SynSent)
    );
    // Writing before the handshake completes is allowed; the data follows the SYN.
    assert_eq!(
        command(
            &mut node,
            Command::Write {
                conn,
                bytes: vec![1; 10]
            }
        ),
        Ok(Completion::Written(10))
    );
}

#[test]
fn stream_calls_on_unknown_connections_are_refused() {
    let mut node = node();
    let conn = ConnectionId(42);
    let mut buf = [0u8; 4];
    assert_eq!(
        node.read(Instant::ZERO, conn, &mut buf),
        Err(NodeError::UnknownConnection)
    );
    assert_eq!(
        command(
            &mut node,
            Command::Write {
                conn,
                bytes: vec![1]
            }
        ),
        Err(NodeError::UnknownConnection)
    );
    assert_eq!(
        command(&mut node, Command::Close { conn }),
        Err(NodeError::UnknownConnection)
    );
    assert_eq!(
        command(&mut node, Command::Abort { conn }),
        Err(NodeError::UnknownConnection)
    );
}

#[test]
fn read_before_data_would_block() {
    let mut node = node();
    command(
        &mut node,
        Command::AddPeerPath {
            node: PEER,
            path: PathId(1),
        },
    )
    .unwrap();
    let conn = node.dial(Instant::ZERO, Addr::new(1, PEER), 80).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        node.read(Instant::ZERO, conn, &mut buf),
        Err(NodeError::Stream(StreamError::WouldBlock))
    );
}

#[test]
fn helper_connections_are_not_the_applications() {
    let mut node = node();
    command(
        &mut node,
        Command::AddPeerPath {
            node: PEER,
            path: PathId(1),
        },
    )
    .unwrap();
    let sub = node
        .subscribe(Instant::ZERO, Addr::new(1, PEER), b"t")
        .unwrap();
    assert_eq!(
        node.write(Instant::ZERO, sub, b"x"),
        Err(NodeError::NotApplicationConnection)
    );
    assert_eq!(node.publish_on(Instant::ZERO, sub, b"t", b"x"), Ok(()));
}

#[test]
fn datagrams_and_pings_need_a_payload() {
    let mut node = node();
    let peer = Addr::new(1, PEER);
    assert_eq!(
        command(
            &mut node,
            Command::SendTo {
                peer,
                port: 80,
                bytes: vec![]
            }
        ),
        Err(NodeError::EmptyPayload)
    );
    assert_eq!(
        command(
            &mut node,
            Command::Ping {
                peer,
                payload: vec![]
            }
        ),
        Err(NodeError::EmptyPayload)
    );
    assert_eq!(
        command(
            &mut node,
            Command::SendTo {
                peer,
                port: 80,
                bytes: vec![1]
            }
        ),
        Err(NodeError::Kex(KexError::NoPath))
    );
}

#[test]
fn frames_the_node_does_not_take_are_reported() {
    let mut node = node();
    let relay_deliver = vec![0x06, 0, 0, 0, 9, b'P'];
    let frame = |bytes: Vec<u8>| Input::Frame {
        path: PathId(1),
        bytes,
        relay_sender: None,
    };
    assert_eq!(
        node.handle_input(Instant::ZERO, frame(relay_deliver)),
        Err(NodeError::UnsupportedFrame),
        "the driver strips relay envelopes"
    );
    assert_eq!(
        node.handle_input(Instant::ZERO, frame(b"PILT0000".to_vec())),
        Err(NodeError::UnsupportedFrame),
        "plaintext is never accepted"
    );
    assert_eq!(
        node.handle_input(Instant::ZERO, frame(b"PILP".to_vec())),
        Ok(Completion::Done)
    );
    assert!(matches!(
        node.handle_input(Instant::ZERO, frame(b"PILS-short".to_vec())),
        Err(NodeError::Kex(_))
    ));
}

#[test]
fn trust_set_is_bounded_and_revocable() {
    let mut node = node();
    assert!(!node.is_trusted(PEER));
    command(
        &mut node,
        Command::SetTrusted {
            node: PEER,
            trusted: true,
        },
    )
    .unwrap();
    assert!(node.is_trusted(PEER));
    command(
        &mut node,
        Command::SetTrusted {
            node: PEER,
            trusted: false,
        },
    )
    .unwrap();
    assert!(!node.is_trusted(PEER));
    for n in 0..u32::try_from(MAX_EXTRA_TRUSTED).unwrap() {
        node.set_trusted(1_000 + n, true).unwrap();
    }
    assert_eq!(node.set_trusted(PEER, true), Err(NodeError::TrustSetFull));
}

#[test]
fn state_sizes_are_reported() {
    assert!(Node::<ChaCha20Rng>::per_connection_state_size() > 0);
    assert!(Node::<ChaCha20Rng>::per_peer_state_size() > 0);
}

fn registry_requests(outputs: &[Output]) -> Vec<crate::registry::Request> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::RegistryRequest(request)) => Some((**request).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn relayed_trust_request_goes_to_the_registry_signed_and_settles_on_an_accepted_poll() {
    use crate::registry::{challenge, PollHandshakesOk, RelayedHandshakeResponse, Request};
    use crate::services::trust_service::TrustEvent;

    let mut node = node();
    let identity = crate::crypto::Identity::from_seed(&[3; 32]);
    command(
        &mut node,
        Command::TrustRequestRelayed {
            node: PEER,
            justification: "demo".into(),
        },
    )
    .unwrap();
    let requests = registry_requests(&drain(&mut node));
    let [Request::RequestHandshake(request)] = requests.as_slice() else {
        panic!("expected one request_handshake, got {requests:?}");
    };
    assert_eq!((request.from_node_id, request.to_node_id), (7, PEER));
    assert_eq!(request.justification, "demo");
    challenge::verify(
        &identity.public_key(),
        &challenge::handshake(7, PEER),
        &request.signature,
    )
    .unwrap();
    assert!(!node.is_trusted(PEER), "asking is not yet trust");

    let Some(Request::PollHandshakes(poll)) = node.trust_poll_request() else {
        panic!("the trust service is on by default");
    };
    assert_eq!(poll.node_id, 7);
    challenge::verify(
        &identity.public_key(),
        &challenge::poll_handshakes(7),
        &poll.signature,
    )
    .unwrap();

    let inbox = PollHandshakesOk {
        requests: vec![],
        responses: vec![RelayedHandshakeResponse {
            from_node_id: PEER,
            accept: true,
            timestamp: 0,
        }],
    };
    command(
        &mut node,
        Command::TrustInbox(alloc::boxed::Box::new(inbox)),
    )
    .unwrap();
    let trusted = drain(&mut node)
        .into_iter()
        .any(|o| o == Output::Event(Event::Trust(TrustEvent::Trusted { node: PEER })));
    assert!(trusted, "an accepted relayed answer reports trust");
    assert!(node.is_trusted(PEER));
}

#[test]
fn relayed_trust_request_is_refused_without_the_trust_service_and_to_ourselves() {
    let mut node = node();
    assert_eq!(
        node.trust_request_relayed(Instant::ZERO, 7, "me"),
        Err(NodeError::Trust(
            crate::services::trust_service::TrustServiceError::SelfHandshake
        ))
    );
    let config = NodeConfig {
        trust: None,
        ..NodeConfig::default()
    };
    let mut off = Node::new(
        config,
        Addr::new(1, 7),
        &[3; 32],
        ChaCha20Rng::seed_from_u64(7),
    );
    assert_eq!(
        off.trust_request_relayed(Instant::ZERO, PEER, "x"),
        Err(NodeError::ServiceDisabled)
    );
    assert!(off.trust_poll_request().is_none());
}

#[test]
fn peer_path_is_the_one_given_until_frames_arrive_elsewhere() {
    let mut node = node();
    assert_eq!(node.peer_path(PEER), None);
    node.add_peer_path(Instant::ZERO, PEER, PathId(4)).unwrap();
    assert_eq!(node.peer_path(PEER), Some(PathId(4)));
}
