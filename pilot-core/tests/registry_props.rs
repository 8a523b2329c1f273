//! Property tests for the registry codecs (spec §9.1–§9.5) and the port-444 trust handshake
//! (spec §9.6): decoders refuse arbitrary input without panicking, framing reassembles any
//! split of the stream, and encode → decode round-trips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::crypto::Identity;
use pilot_core::registry::{
    challenge, encode_frame, CheckTrustOk, Endpoint, FrameReader, Heartbeat, HeartbeatOk, LookupOk,
    PollHandshakesOk, PublicKey, Register, RegistryError, RelayedHandshakeRequest,
    RelayedHandshakeResponse, Request, RequestHandshake, Resolve, ResolveOk, RespondHandshake,
    Response, Signature, MAX_MESSAGE_BYTES,
};
use pilot_core::trust::{
    sanitize_text, HandshakeKind, HandshakeMessage, HandshakeReceiver, MAX_JUSTIFICATION_BYTES,
};
use proptest::prelude::*;

fn signature() -> impl Strategy<Value = Signature> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| Signature(v.try_into().unwrap()))
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

/// Bytes that look like JSON: structural characters, quotes, escapes, digits, known names.
fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just("\"type\"".to_string()),
        Just("\"node_id\"".to_string()),
        Just("\"signature\"".to_string()),
        Just("\"public_key\"".to_string()),
        Just("\"error\"".to_string()),
        Just("\"lookup_ok\"".to_string()),
        Just("\"register\"".to_string()),
        Just("\"handshake_request\"".to_string()),
        Just("\"timestamp\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("\\u0000".to_string()),
        "-?[0-9]{1,25}(\\.[0-9]+)?(e[+-]?[0-9]{1,4})?",
        "\"[ -~]{0,12}\"",
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat().into_bytes())
}

fn body_of(frame: &[u8]) -> &[u8] {
    &frame[4..]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        let _ = HandshakeMessage::decode(&bytes);
        let mut rx = HandshakeReceiver::new(1);
        let _ = rx.receive(&bytes, 1_790_000_000, |_| Some([7; 32]));
    }

    #[test]
    fn json_ish_bytes_give_errors_not_panics(bytes in json_ish()) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        let _ = HandshakeMessage::decode(&bytes);
    }

    #[test]
    fn known_types_with_garbage_fields_give_errors_not_panics(
        ty in prop::sample::select(vec![
            "register", "lookup", "resolve", "heartbeat", "check_trust", "poll_handshakes",
            "register_ok", "lookup_ok", "resolve_ok", "poll_handshakes_ok", "list_nodes_ok",
            "error", "handshake_accept",
        ]),
        tail in json_ish(),
    ) {
        let mut bytes = format!("{{\"type\":\"{ty}\",").into_bytes();
        bytes.extend(tail);
        let request = Request::decode(&bytes);
        let response = Response::decode(&bytes);
        let _ = HandshakeMessage::decode(&bytes);
        // Whatever decodes re-encodes and decodes to the same value.
        if let Ok(request) = request {
            prop_assert_eq!(Request::decode(body_of(&request.encode().unwrap())).unwrap(), request);
        }
        if let Ok(response) = response {
            prop_assert_eq!(Response::decode(body_of(&response.encode().unwrap())).unwrap(), response);
        }
    }

    #[test]
    fn frame_reader_never_panics_on_arbitrary_chunks(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
    ) {
        let mut reader = FrameReader::new();
        for chunk in &chunks {
            reader.push(chunk);
            while let Ok(Some(message)) = reader.next_message() {
                prop_assert!(message.len() <= MAX_MESSAGE_BYTES);
            }
        }
    }

    #[test]
    fn frame_reader_reassembles_any_split(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = bodies.iter().flat_map(|b| encode_frame(b).unwrap()).collect();
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cut_points.push(0);
        cut_points.push(stream.len());
        cut_points.sort_unstable();

        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for pair in cut_points.windows(2) {
            reader.push(&stream[pair[0]..pair[1]]);
            while let Some(message) = reader.next_message().unwrap() {
                got.push(message);
            }
        }
        prop_assert_eq!(got, bodies);
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn oversize_prefix_is_terminal(declared in (MAX_MESSAGE_BYTES as u32 + 1)..=u32::MAX, more in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut reader = FrameReader::new();
        reader.push(&declared.to_be_bytes());
        let err = RegistryError::MessageTooLarge { declared: declared.into() };
        prop_assert_eq!(reader.next_message(), Err(err.clone()));
        reader.push(&more);
        prop_assert_eq!(reader.next_message(), Err(err));
    }

    #[test]
    fn requests_round_trip(
        node in any::<u32>(),
        peer in any::<u32>(),
        text in "\\PC{0,40}",
        listen in proptest::option::of("[ -~]{0,30}"),
        sig in signature(),
        key in public_key(),
        accept in any::<bool>(),
        relay_only in any::<bool>(),
    ) {
        let requests = [
            Request::Resolve(Resolve { node_id: node, requester_id: peer, signature: sig }),
            Request::Heartbeat(Heartbeat { node_id: node, listen_addr: listen.clone(), signature: sig }),
            Request::RequestHandshake(RequestHandshake {
                from_node_id: node, to_node_id: peer, justification: text.clone(), signature: sig,
            }),
            Request::RespondHandshake(RespondHandshake { node_id: node, peer_id: peer, accept, signature: sig }),
            Request::Register(Register {
                listen_addr: listen.unwrap_or_default(),
                public_key: key,
                owner: Some(text.clone()),
                hostname: None,
                lan_addrs: vec![text.clone()],
                version: None,
                endpoints: vec![Endpoint { network: "tcp".into(), addr: text }],
                relay_only,
                signature: Some(sig),
            }),
        ];
        for request in requests {
            let frame = request.encode().unwrap();
            prop_assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
            prop_assert_eq!(Request::decode(body_of(&frame)).unwrap(), request);
        }
    }

    #[test]
    fn responses_round_trip(
        node in any::<u32>(),
        text in "\\PC{0,40}",
        key in public_key(),
        networks in prop::collection::vec(any::<u16>(), 0..4),
        score in proptest::option::of(any::<i64>()),
        flag in any::<bool>(),
        time in any::<i64>(),
    ) {
        let responses = [
            Response::LookupOk(LookupOk {
                node_id: node,
                address: text.clone(),
                networks,
                public_key: key,
                public: flag,
                polo_score: score,
                hostname: Some(text.clone()),
                tags: vec![text.clone()],
                task_exec: flag,
                external_id: None,
                version: None,
                real_addr: Some(text.clone()),
                endpoint: None,
                endpoints: vec![],
                relay_only: !flag,
            }),
            Response::ResolveOk(ResolveOk {
                node_id: node,
                real_addr: text.clone(),
                public_key: key,
                endpoints: vec![Endpoint { network: text.clone(), addr: text.clone() }],
                lan_addrs: vec![],
                key_age_days: score,
            }),
            Response::HeartbeatOk(HeartbeatOk { time: Some(time), key_expiry_warning: flag }),
            Response::CheckTrustOk(CheckTrustOk { trusted: flag }),
            Response::PollHandshakesOk(PollHandshakesOk {
                requests: vec![RelayedHandshakeRequest {
                    from_node_id: node, public_key: Some(key), justification: text.clone(), timestamp: time,
                }],
                responses: vec![RelayedHandshakeResponse { from_node_id: node, accept: flag, timestamp: time }],
            }),
            Response::Error { error: text },
        ];
        for response in responses {
            prop_assert_eq!(Response::decode(body_of(&response.encode().unwrap())).unwrap(), response);
        }
    }
}

proptest! {
    // Each case signs once and verifies twice: keep the count modest.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_challenges_verify_only_for_their_fields(
        seed in any::<[u8; 32]>(),
        requester in any::<u32>(),
        node in any::<u32>(),
        other in any::<u32>(),
    ) {
        let key = Identity::from_seed(&seed);
        let public = key.public_key();
        let sig = challenge::sign(&key, &challenge::resolve(requester, node));
        prop_assert_eq!(challenge::verify(&public, &challenge::resolve(requester, node), &sig), Ok(()));
        prop_assume!(other != node);
        prop_assert_eq!(
            challenge::verify(&public, &challenge::resolve(requester, other), &sig),
            Err(RegistryError::BadSignature)
        );
    }

    #[test]
    fn handshake_messages_round_trip(
        kind in prop::sample::select(vec![
            HandshakeKind::Request, HandshakeKind::Accept, HandshakeKind::Reject, HandshakeKind::Revoke,
        ]),
        node_id in any::<u32>(),
        public_key in "\\PC{0,50}",
        justification in "\\PC{0,80}",
        signature in "[A-Za-z0-9+/=]{0,90}",
        reason in "\\PC{0,40}",
        timestamp in any::<i64>(),
    ) {
        let msg = HandshakeMessage { kind, node_id, public_key, justification, signature, reason, timestamp };
        let bytes = msg.encode().unwrap();
        prop_assert_eq!(HandshakeMessage::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn sanitized_text_is_bounded_printable_and_stable(text in "\\PC{0,600}|[\\x00-\\x{10FFFF}]{0,1500}") {
        let clean = sanitize_text(&text);
        prop_assert!(clean.len() <= MAX_JUSTIFICATION_BYTES);
        prop_assert!(!clean.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')));
        prop_assert_eq!(sanitize_text(&clean), clean.clone());
        // Characters are only dropped, never altered or reordered.
        let mut source = text.chars();
        prop_assert!(clean.chars().all(|c| source.any(|s| s == c)));
    }
}
