//! Properties of the transport-side frame codecs: PILT, PILP, PILF, beacon messages and TCP
//! framing (spec §3, §7). Decoders never panic and what they accept re-encodes to the same
//! bytes; fragmentation and TCP framing survive any order, duplication and chunking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use pilot_core::frame::beacon::{self, BeaconError, BeaconMessage, NodeIds, PunchGrant};
use pilot_core::frame::fragment::{
    Fragment, FragmentError, Fragmenter, Reassembler, Split, FRAGMENT_CHUNK, FRAGMENT_THRESHOLD,
    MAX_FRAGMENTED_FRAME, MAX_GROUPS, REASSEMBLY_TIMEOUT,
};
use pilot_core::frame::tcp::{self, TcpDeframer};
use pilot_core::frame::{classify, plaintext, punch, FrameKind};
use pilot_core::time::Instant;
use proptest::prelude::*;

/// Arbitrary bytes, often starting with something a decoder recognises.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let prefixes: Vec<&'static [u8]> = vec![
        b"",
        b"PILT",
        b"PILP",
        b"PILF",
        b"PILS",
        b"\x01",
        b"\x02\x04",
        b"\x02\x10",
        b"\x03",
        b"\x04\x04",
        b"\x05",
        b"\x06",
        b"\x07",
    ];
    (
        proptest::sample::select(prefixes),
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(prefix, tail)| [prefix, &tail[..]].concat())
}

/// A frame to fragment: never itself a PILF, long enough to need fragments.
fn large_frame() -> impl Strategy<Value = Vec<u8>> {
    (FRAGMENT_THRESHOLD + 1..=MAX_FRAGMENTED_FRAME, any::<u8>()).prop_map(|(len, seed)| {
        let mut frame = b"PILS".to_vec();
        frame.extend((0..len - 4).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        frame
    })
}

/// A large frame and a random permutation of its fragment indexes.
fn large_frame_and_delivery_order() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    large_frame().prop_flat_map(|frame| {
        let count = frame.len().div_ceil(FRAGMENT_CHUNK);
        (
            Just(frame),
            Just((0..count).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
}

fn fragments_of(sender: u32, seed: u32, frame: &[u8]) -> Vec<Vec<u8>> {
    match Fragmenter::new(seed).split(sender, frame).unwrap() {
        Split::Fragments(fragments) => fragments.collect(),
        Split::Whole(_) => panic!("a frame of {} bytes was not fragmented", frame.len()),
    }
}

/// An owned beacon message, turned into a borrowed one inside the test.
#[derive(Debug, Clone)]
enum OwnedBeacon {
    Discover(u32, Option<[u8; 32]>),
    DiscoverReply(SocketAddr),
    PunchRequest(u32, u32, Option<(u64, Vec<u8>)>),
    PunchCommand(SocketAddr),
    Relay(u32, u32, Vec<u8>),
    RelayDeliver(u32, Vec<u8>),
    Sync(u32, Vec<u32>),
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
    ]
}

fn owned_beacon() -> impl Strategy<Value = OwnedBeacon> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        (any::<u32>(), proptest::option::of(any::<[u8; 32]>()))
            .prop_map(|(node, key)| OwnedBeacon::Discover(node, key)),
        socket_addr().prop_map(OwnedBeacon::DiscoverReply),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of((any::<u64>(), proptest::collection::vec(any::<u8>(), 64)))
        )
            .prop_map(|(r, t, grant)| OwnedBeacon::PunchRequest(r, t, grant)),
        socket_addr().prop_map(OwnedBeacon::PunchCommand),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(s, d, f)| OwnedBeacon::Relay(s, d, f)),
        (any::<u32>(), bytes()).prop_map(|(s, f)| OwnedBeacon::RelayDeliver(s, f)),
        (any::<u32>(), proptest::collection::vec(any::<u32>(), 0..50))
            .prop_map(|(b, nodes)| OwnedBeacon::Sync(b, nodes)),
    ]
}

fn with_borrowed<R>(owned: &OwnedBeacon, f: impl FnOnce(BeaconMessage<'_>) -> R) -> R {
    let sync_wire: Vec<u8>;
    let signature: [u8; 64];
    let message = match owned {
        OwnedBeacon::Discover(node, key) => BeaconMessage::Discover {
            node: *node,
            identity: key.as_ref(),
        },
        OwnedBeacon::DiscoverReply(observed) => BeaconMessage::DiscoverReply {
            observed: *observed,
        },
        OwnedBeacon::PunchRequest(requester, target, grant) => {
            signature = grant
                .as_ref()
                .map_or([0; 64], |(_, sig)| sig.as_slice().try_into().unwrap());
            BeaconMessage::PunchRequest {
                requester: *requester,
                target: *target,
                grant: grant.as_ref().map(|(expiry, _)| PunchGrant {
                    expiry_unix_secs: *expiry,
                    signature: &signature,
                }),
            }
        }
        OwnedBeacon::PunchCommand(peer) => BeaconMessage::PunchCommand { peer: *peer },
        OwnedBeacon::Relay(sender, dest, frame) => BeaconMessage::Relay {
            sender: *sender,
            dest: *dest,
            frame,
        },
        OwnedBeacon::RelayDeliver(sender, frame) => BeaconMessage::RelayDeliver {
            sender: *sender,
            frame,
        },
        OwnedBeacon::Sync(beacon, nodes) => {
            sync_wire = nodes.iter().flat_map(|n| n.to_be_bytes()).collect();
            BeaconMessage::Sync {
                beacon: *beacon,
                nodes: NodeIds::from_wire(&sync_wire).unwrap(),
            }
        }
    };
    f(message)
}

/// Feeds `stream` to a fresh deframer in pieces ending at `cuts`, collecting the frames.
fn deframe_with_cuts(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut deframer = TcpDeframer::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain(Some(stream.len())) {
        let end = end.clamp(start, stream.len());
        let mut piece = &stream[start..end];
        while let Some(frame) = deframer.next_frame(&mut piece).unwrap() {
            frames.push(frame);
        }
        assert!(piece.is_empty());
        start = end;
    }
    assert!(deframer.is_at_frame_boundary());
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn classify_never_panics_and_agrees_with_the_first_bytes(bytes in datagram()) {
        match classify(&bytes) {
            Some(FrameKind::Beacon(code)) => {
                prop_assert_eq!(Some(&code), bytes.first());
                prop_assert!((1..=7).contains(&code));
            }
            Some(_) => prop_assert!(bytes.starts_with(b"PIL")),
            None => {}
        }
    }

    #[test]
    fn plaintext_decode_accepts_only_what_encode_reproduces(bytes in datagram()) {
        if let Ok(packet) = plaintext::decode(&bytes) {
            let mut again = Vec::new();
            plaintext::encode(packet, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn punch_decode_never_panics_and_reads_the_sender_after_the_magic(bytes in datagram()) {
        if let Ok(punch) = punch::decode(&bytes) {
            prop_assert!(bytes.starts_with(b"PILP"));
            let expected = bytes.get(4..8).map(|b| u32::from_be_bytes(b.try_into().unwrap()));
            prop_assert_eq!(punch.sender, expected);
        }
    }

    #[test]
    fn fragment_decode_accepts_only_what_encode_reproduces(bytes in datagram()) {
        if let Ok(fragment) = Fragment::decode(&bytes) {
            prop_assert!(fragment.index < fragment.count);
            prop_assert!(fragment.chunk.len() <= FRAGMENT_CHUNK);
            let mut again = Vec::new();
            fragment.encode(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn beacon_decode_accepts_only_a_prefix_that_encode_reproduces(bytes in datagram()) {
        if let Ok(message) = BeaconMessage::decode(&bytes) {
            let mut again = Vec::new();
            message.encode(&mut again);
            prop_assert!(bytes.starts_with(&again), "{message:?} re-encoded differently");
        }
        match beacon::parse_relay_deliver(&bytes) {
            Ok((sender, frame)) => {
                prop_assert_eq!(bytes.first(), Some(&beacon::CODE_RELAY_DELIVER));
                prop_assert_eq!(&bytes[1..5], &sender.to_be_bytes());
                prop_assert_eq!(frame, &bytes[5..]);
            }
            Err(BeaconError::UnexpectedCode { got, .. }) => prop_assert_ne!(got, 0x06),
            Err(_) => {}
        }
    }

    #[test]
    fn beacon_messages_round_trip(owned in owned_beacon()) {
        with_borrowed(&owned, |message| {
            let mut bytes = Vec::new();
            message.encode(&mut bytes);
            prop_assert_eq!(BeaconMessage::decode(&bytes), Ok(message));
            Ok(())
        })?;
    }

    #[test]
    fn tcp_deframer_never_panics_on_arbitrary_streams(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        step in 1usize..300,
    ) {
        let mut deframer = TcpDeframer::new();
        for mut piece in bytes.chunks(step) {
            loop {
                match deframer.next_frame(&mut piece) {
                    Ok(Some(frame)) => prop_assert!(!frame.is_empty() && frame.len() <= tcp::MAX_TCP_FRAME),
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            prop_assert!(deframer.buffered() <= tcp::LENGTH_PREFIX_LEN + tcp::MAX_TCP_FRAME);
        }
    }

    #[test]
    fn tcp_framing_survives_any_chunking(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut stream = Vec::new();
        for frame in &frames {
            tcp::encode(frame, &mut stream).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let expected: Vec<Vec<u8>> = frames.into_iter().filter(|f| !f.is_empty()).collect();
        prop_assert_eq!(deframe_with_cuts(&stream, &cuts), expected);
    }

    #[test]
    fn fragments_reassemble_in_any_order_with_duplicates(
        (frame, order) in large_frame_and_delivery_order(),
        sender in any::<u32>(),
        seed in any::<u32>(),
        duplicates in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let fragments = fragments_of(sender, seed, &frame);
        prop_assert_eq!(fragments.len(), order.len());
        prop_assert!(fragments.iter().all(|f| f.len() <= FRAGMENT_THRESHOLD));

        // Duplicates of fragments already delivered, placed right after their first copy.
        let mut deliveries: Vec<(usize, bool)> = order.iter().map(|&i| (i, false)).collect();
        for dup in &duplicates {
            let at = dup.index(deliveries.len() - 1);
            let index = deliveries[at].0;
            deliveries.insert(at + 1, (index, true));
        }

        let mut reassembler = Reassembler::new();
        let now = Instant::from_millis(5);
        let mut result = None;
        let mut delivered = 0;
        for (index, is_duplicate) in deliveries {
            let outcome = reassembler.push(7u8, Some(sender), &fragments[index], now);
            if is_duplicate {
                prop_assert_eq!(outcome, Err(FragmentError::Duplicate { index: index as u8 }));
                continue;
            }
            delivered += 1;
            match outcome.unwrap() {
                Some(whole) => {
                    prop_assert_eq!(delivered, fragments.len());
                    result = Some(whole);
                }
                None => prop_assert!(delivered < fragments.len()),
            }
        }
        prop_assert_eq!(result, Some(frame));
        prop_assert_eq!(reassembler.pending_groups(), 0);
    }

    #[test]
    fn reassembler_stays_bounded_on_arbitrary_fragments(
        pushes in proptest::collection::vec(
            (0u8..12, 0u32..4, 0u32..40, any::<u8>(), 1u8..8, 0usize..=FRAGMENT_CHUNK + 1, 0u64..800),
            0..400,
        ),
    ) {
        let mut reassembler = Reassembler::new();
        let mut now = Instant::ZERO;
        for (source, sender, group, index, count, chunk_len, step_ms) in pushes {
            now = now + Duration::from_millis(step_ms);
            let mut bytes = Vec::new();
            let chunk = vec![0x42; chunk_len];
            Fragment { sender, group, index: index % 9, count, chunk: &chunk }.encode(&mut bytes);
            let relay = (source % 3 == 0).then_some(sender);
            if let Ok(Some(frame)) = reassembler.push(source, relay, &bytes, now) {
                prop_assert!(frame.len() <= usize::from(count) * FRAGMENT_CHUNK);
            }
            prop_assert!(reassembler.pending_groups() <= MAX_GROUPS);
            if let Some(deadline) = reassembler.next_expiry() {
                prop_assert!(deadline > now && deadline <= now + REASSEMBLY_TIMEOUT);
            }
        }
    }
}
