//! Property tests for the service state machines (spec §10, §9.6): how received bytes are split
//! never changes what a machine does, arbitrary bytes never panic, the broker forwards each
//! publish exactly to the other matching subscribers, and echo returns exactly its input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::crypto::Identity;
use pilot_core::services::broker::{self, Broker, BrokerConfig, BrokerOutput};
use pilot_core::services::dataexchange::{Frame, FrameType, Reply};
use pilot_core::services::echo::{EchoConfig, EchoService};
use pilot_core::services::eventstream::Event;
use pilot_core::services::exchange_server::{
    ExchangeClient, ExchangeOutput, ExchangeReply, ExchangeServer,
};
use pilot_core::services::trust_service::{TrustConfig, TrustService};
use pilot_core::services::ConnId;
use proptest::collection::vec;
use proptest::prelude::*;

const CONN: ConnId = ConnId(1);

/// Cuts `bytes` into consecutive chunks whose sizes cycle through `sizes` (each at least 1).
fn split<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
        i += 1;
    }
    chunks
}

/// Everything the server says about one stream delivered in `chunks`.
fn server_run(chunks: &[&[u8]]) -> Vec<ExchangeOutput> {
    let mut server = ExchangeServer::default();
    server.open(CONN).unwrap();
    let mut all = Vec::new();
    for chunk in chunks {
        match server.receive(CONN, chunk) {
            Ok(out) => all.extend(out),
            // Closed after a decode error: the host would not feed it again.
            Err(_) => break,
        }
    }
    all
}

/// Everything the broker says when connection 1 sends `chunks` while 2 and 3 listen on `*`
/// and `t`.
fn broker_run(chunks: &[&[u8]]) -> Vec<BrokerOutput> {
    let mut broker = Broker::default();
    for (id, topic) in [(2, &b"*"[..]), (3, b"t")] {
        broker.open(ConnId(id)).unwrap();
        broker
            .receive(ConnId(id), &broker::subscribe(topic).unwrap())
            .unwrap();
    }
    broker.open(CONN).unwrap();
    let mut all = Vec::new();
    for chunk in chunks {
        match broker.receive(CONN, chunk) {
            Ok(out) => all.extend(out),
            Err(_) => break,
        }
        // Keep the listeners drained so no one is dropped as slow.
        for id in [2, 3] {
            let _ = broker.written(ConnId(id), usize::MAX);
        }
    }
    all
}

fn any_frame() -> impl Strategy<Value = (u32, String, Vec<u8>)> {
    (1u32..=5, "[a-z0-9]{0,12}", vec(any::<u8>(), 0..200))
}

/// A broker script step: (connection 0..4, topic index, payload).
fn any_step() -> impl Strategy<Value = (u64, usize, Vec<u8>)> {
    (0u64..4, 0usize..3, vec(any::<u8>(), 0..20))
}

const TOPICS: [&[u8]; 3] = [b"*", b"a", b"b"];

proptest! {
    #[test]
    fn exchange_server_ignores_how_arbitrary_bytes_are_split(
        bytes in vec(any::<u8>(), 0..600),
        sizes in vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(server_run(&split(&bytes, &sizes)), server_run(&[&bytes]));
    }

    #[test]
    fn exchange_server_acknowledges_each_frame_with_its_body_length(
        frames in vec(any_frame(), 0..8),
        sizes in vec(1usize..64, 1..8),
    ) {
        let mut client = ExchangeClient::new();
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (raw_type, name, body) in &frames {
            let frame = match FrameType::from(*raw_type) {
                FrameType::Text => Frame::Text(body),
                FrameType::Binary => Frame::Binary(body),
                FrameType::Json => Frame::Json(body),
                FrameType::File => Frame::File { name, data: body },
                FrameType::Other(frame_type) => Frame::Other { frame_type, payload: body },
            };
            stream.extend(client.send(&frame).unwrap());
            expected.push(ExchangeReply::Acked {
                frame_type: frame.frame_type(),
                len: body.len() as u64,
            });
        }

        let mut replies = Vec::new();
        let mut delivered = Vec::new();
        for out in server_run(&split(&stream, &sizes)) {
            match out {
                ExchangeOutput::Write { bytes, .. } => replies.extend(bytes),
                ExchangeOutput::Received { payload, .. } => delivered.push(payload),
                ExchangeOutput::Close { error, .. } => panic!("valid stream closed: {error}"),
            }
        }
        let bodies: Vec<Vec<u8>> = frames.iter().map(|(_, _, body)| body.clone()).collect();
        prop_assert_eq!(delivered, bodies);
        let mut got = Vec::new();
        for chunk in split(&replies, &sizes) {
            got.extend(client.receive(chunk).unwrap());
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(client.awaited_len(), 0);
    }

    #[test]
    fn exchange_client_never_panics_on_arbitrary_replies(
        bytes in vec(any::<u8>(), 0..300),
    ) {
        let mut client = ExchangeClient::new();
        client.send(&Frame::Text(b"x")).unwrap();
        let _ = client.receive(&bytes);
        let _ = Reply::parse(&bytes);
    }

    #[test]
    fn broker_ignores_how_arbitrary_bytes_are_split(
        bytes in vec(any::<u8>(), 0..600),
        sizes in vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(broker_run(&split(&bytes, &sizes)), broker_run(&[&bytes]));
    }

    #[test]
    fn broker_forwards_each_publish_to_exactly_the_other_matching_subscribers(
        script in vec(any_step(), 0..40),
        sizes in vec(1usize..16, 1..6),
    ) {
        let mut broker = Broker::new(BrokerConfig {
            max_connections: 8,
            max_unflushed_bytes: usize::MAX,
        });
        // Model: the subscription of each connection once its first event is sent.
        let mut subscribed: [Option<&[u8]>; 4] = [None; 4];
        for id in 0..4 {
            broker.open(ConnId(id)).unwrap();
        }
        for (sender, topic, payload) in script {
            let topic = TOPICS[topic];
            let bytes = broker::publish(topic, &payload).unwrap();
            let mut out = Vec::new();
            for chunk in split(&bytes, &sizes) {
                out.extend(broker.receive(ConnId(sender), chunk).unwrap());
            }
            let slot = &mut subscribed[sender as usize];
            if slot.is_none() {
                *slot = Some(topic);
                prop_assert_eq!(out, vec![BrokerOutput::Subscribed {
                    conn: ConnId(sender),
                    topic: topic.to_vec(),
                }]);
                continue;
            }
            let expected: Vec<ConnId> = (0..4u64)
                .filter(|&id| id != sender)
                .filter(|&id| matches!(subscribed[id as usize], Some(t) if t == topic || t == b"*"))
                .map(ConnId)
                .collect();
            let mut receivers = Vec::new();
            for o in out {
                let BrokerOutput::Write { conn, bytes } = o else {
                    panic!("unexpected output {o:?}");
                };
                prop_assert_eq!(Event::decode(&bytes).unwrap().0, Event::new(topic, &payload));
                receivers.push(conn);
            }
            prop_assert_eq!(receivers, expected);
        }
    }

    #[test]
    fn echo_returns_exactly_what_it_received(
        bytes in vec(any::<u8>(), 0..2000),
        sizes in vec(1usize..300, 1..8),
        drain in vec(0usize..200, 1..8),
    ) {
        let config = EchoConfig { max_connections: 1, max_unflushed_bytes: 256 };
        let mut echo = EchoService::new(config);
        echo.open(CONN).unwrap();
        let mut echoed = Vec::new();
        for (i, chunk) in split(&bytes, &sizes).into_iter().enumerate() {
            let mut rest = chunk;
            while !rest.is_empty() {
                let out = echo.receive(CONN, rest).unwrap();
                echoed.extend_from_slice(out.write);
                prop_assert!(echo.unflushed_len(CONN).unwrap() <= 256);
                rest = out.held_back;
                // The transport takes some of it; everything once the window is full.
                let taken = if out.write.is_empty() { usize::MAX } else { drain[i % drain.len()] };
                echo.written(CONN, taken).unwrap();
            }
        }
        prop_assert_eq!(echoed, bytes);
    }

    #[test]
    fn trust_service_refuses_arbitrary_bytes_without_changing_state(
        bytes in vec(any::<u8>(), 0..400),
    ) {
        let config = TrustConfig { auto_approve: true };
        let mut svc = TrustService::new(2, Identity::from_seed(&[2; 32]), config);
        let peer_key = Identity::from_seed(&[1; 32]).public_key();
        let got = svc.receive(&bytes, 1_790_000_000, |_| Some(peer_key));
        prop_assert!(got.is_err());
        prop_assert!(svc.pending().is_empty());
        prop_assert_eq!(svc.trusted().count(), 0);
    }
}
