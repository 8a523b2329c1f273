//! Message-level tests: JSON shapes against spec §9, signatures, decoding verdicts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::crypto::Identity;
use serde_json::{json, Value};

use super::*;

fn key(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

fn pk(key: &Identity) -> [u8; 32] {
    key.public_key()
}

fn b64(key: &Identity) -> String {
    PublicKey(pk(key)).to_base64()
}

/// The JSON value a request serializes to, taken from its frame.
fn request_json(request: &Request) -> Value {
    let frame = request.encode().unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap());
    assert_eq!(len as usize, frame.len() - 4, "length prefix");
    serde_json::from_slice(&frame[4..]).unwrap()
}

fn sig_of(value: &Value) -> Signature {
    Signature::from_base64(value["signature"].as_str().unwrap()).unwrap()
}

/// Decoding the frame body gives the request back, and serde's derived impl agrees.
fn assert_round_trip(request: &Request) {
    let frame = request.encode().unwrap();
    assert_eq!(&Request::decode(&frame[4..]).unwrap(), request);
    assert_eq!(
        &serde_json::from_slice::<Request>(&frame[4..]).unwrap(),
        request
    );
}

#[test]
fn register_matches_spec_example_field_for_field() {
    let k = key(1);
    let mut reg = Register::signed("203.0.113.7:41000".into(), &k);
    reg.owner = Some("alice@example.com".into());
    reg.hostname = Some("my-agent".into());
    reg.lan_addrs = vec!["192.168.1.5:41000".into()];
    reg.version = Some("v1.x".into());
    reg.endpoints = vec![Endpoint {
        network: "tcp".into(),
        addr: "host:port".into(),
    }];
    reg.relay_only = true;
    let request = Request::Register(reg.clone());
    let got = request_json(&request);

    let expected = json!({
        "type": "register",
        "listen_addr": "203.0.113.7:41000",
        "public_key": b64(&k),
        "owner": "alice@example.com",
        "hostname": "my-agent",
        "lan_addrs": ["192.168.1.5:41000"],
        "version": "v1.x",
        "endpoints": [{"network": "tcp", "addr": "host:port"}],
        "relay_only": true,
        "signature": got["signature"].clone(),
    });
    assert_eq!(got, expected);
    assert_eq!(
        reg.challenge(),
        alloc::format!("register:203.0.113.7:41000:{}", b64(&k))
    );
    assert_round_trip(&request);
}

#[test]
fn register_without_options_sends_only_required_fields() {
    let k = key(1);
    let got = request_json(&Request::Register(Register::signed(String::new(), &k)));
    let expected = json!({
        "type": "register",
        "listen_addr": "",
        "public_key": b64(&k),
        "signature": got["signature"].clone(),
    });
    assert_eq!(got, expected);
}

#[test]
fn register_proof_of_possession_verifies_and_binds_addr_and_key() {
    let k = key(1);
    let reg = Register::signed("203.0.113.7:41000".into(), &k);
    assert_eq!(reg.verify_possession(), Ok(()));
    // Signed raw challenge, independently of the helper.
    let sig = sig_of(&request_json(&Request::Register(reg.clone())));
    let text = alloc::format!("register:203.0.113.7:41000:{}", b64(&k));
    assert_eq!(challenge::verify(&pk(&k), &text, &sig), Ok(()));

    let mut moved = reg.clone();
    moved.listen_addr = "203.0.113.7:41001".into();
    assert_eq!(moved.verify_possession(), Err(RegistryError::BadSignature));

    let mut swapped = reg.clone();
    swapped.public_key = PublicKey(pk(&key(2)));
    assert_eq!(
        swapped.verify_possession(),
        Err(RegistryError::BadSignature)
    );

    let mut unsigned = reg;
    unsigned.signature = None;
    assert_eq!(
        unsigned.verify_possession(),
        Err(RegistryError::MissingSignature)
    );
    // Unsigned registrations (older clients) still decode.
    assert_round_trip(&Request::Register(unsigned));
}

#[test]
fn lookup_is_unsigned() {
    let request = Request::Lookup(Lookup { node_id: 42 });
    assert_eq!(
        request_json(&request),
        json!({"type": "lookup", "node_id": 42})
    );
    assert!(request.as_signed().is_none());
    assert_round_trip(&request);
}

#[test]
fn resolve_shape_and_signature() {
    let k = key(3);
    let resolve = Resolve::signed(7, 42, &k);
    let request = Request::Resolve(resolve.clone());
    let got = request_json(&request);
    assert_eq!(
        got,
        json!({"type": "resolve", "node_id": 42, "requester_id": 7, "signature": got["signature"].clone()})
    );
    assert_eq!(resolve.challenge(), "resolve:7:42");
    assert_eq!(
        challenge::verify(&pk(&k), "resolve:7:42", &sig_of(&got)),
        Ok(())
    );
    assert_eq!(request.as_signed().unwrap().verify(&pk(&k)), Ok(()));
    assert_eq!(
        resolve.verify(&pk(&key(4))),
        Err(RegistryError::BadSignature)
    );

    let mut other_requester = resolve;
    other_requester.requester_id = 8;
    assert_eq!(
        other_requester.verify(&pk(&k)),
        Err(RegistryError::BadSignature)
    );
    assert_round_trip(&request);
}

#[test]
fn heartbeat_with_and_without_listen_addr() {
    let k = key(5);
    let plain = Heartbeat::signed(9, None, &k);
    let got = request_json(&Request::Heartbeat(plain.clone()));
    assert_eq!(
        got,
        json!({"type": "heartbeat", "node_id": 9, "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "heartbeat:9", &sig_of(&got)),
        Ok(())
    );

    let moved = Heartbeat::signed(9, Some("198.51.100.1:4000".into()), &k);
    let got = request_json(&Request::Heartbeat(moved.clone()));
    assert_eq!(
        got,
        json!({"type": "heartbeat", "node_id": 9, "listen_addr": "198.51.100.1:4000",
               "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "heartbeat:9:198.51.100.1:4000", &sig_of(&got)),
        Ok(())
    );

    // Dropping or changing listen_addr breaks the extended challenge.
    let mut stripped = moved.clone();
    stripped.listen_addr = None;
    assert_eq!(stripped.verify(&pk(&k)), Err(RegistryError::BadSignature));
    let mut changed = moved.clone();
    changed.listen_addr = Some("198.51.100.1:4001".into());
    assert_eq!(changed.verify(&pk(&k)), Err(RegistryError::BadSignature));
    assert_round_trip(&Request::Heartbeat(plain));
    assert_round_trip(&Request::Heartbeat(moved));
}

#[test]
fn deregister_and_set_hostname_shapes() {
    let k = key(6);
    let dereg = Deregister::signed(11, &k);
    let got = request_json(&Request::Deregister(dereg.clone()));
    assert_eq!(
        got,
        json!({"type": "deregister", "node_id": 11, "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "deregister:11", &sig_of(&got)),
        Ok(())
    );

    let rename = SetHostname::signed(11, "edge-worker".into(), &k);
    let got = request_json(&Request::SetHostname(rename.clone()));
    assert_eq!(
        got,
        json!({"type": "set_hostname", "node_id": 11, "hostname": "edge-worker",
               "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "set_hostname:11", &sig_of(&got)),
        Ok(())
    );
    let mut other_node = rename.clone();
    other_node.node_id = 12;
    assert_eq!(other_node.verify(&pk(&k)), Err(RegistryError::BadSignature));
    assert_round_trip(&Request::Deregister(dereg));
    assert_round_trip(&Request::SetHostname(rename));
}

#[test]
fn set_visibility_shape_and_signature() {
    let k = key(6);
    let public = SetVisibility::signed(11, true, &k);
    let got = request_json(&Request::SetVisibility(public.clone()));
    assert_eq!(
        got,
        json!({"type": "set_visibility", "node_id": 11, "public": true,
               "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "set_visibility:11", &sig_of(&got)),
        Ok(())
    );
    assert_eq!(public.verify(&pk(&k)), Ok(()));
    assert_round_trip(&Request::SetVisibility(public));
    assert_eq!(
        decode_response(json!({"type": "set_visibility_ok"})),
        Response::SetVisibilityOk
    );
}

#[test]
fn check_trust_is_unsigned() {
    let request = Request::CheckTrust(CheckTrust {
        node_id: 1,
        peer_id: 2,
    });
    assert_eq!(
        request_json(&request),
        json!({"type": "check_trust", "node_id": 1, "peer_id": 2})
    );
    assert!(request.as_signed().is_none());
    assert_round_trip(&request);
}

#[test]
fn report_and_revoke_trust_sign_different_challenges() {
    let k = key(7);
    let report = ReportTrust::signed(1, 2, &k);
    let revoke = RevokeTrust::signed(1, 2, &k);
    let got = request_json(&Request::ReportTrust(report.clone()));
    assert_eq!(
        got,
        json!({"type": "report_trust", "node_id": 1, "peer_id": 2, "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "report_trust:1:2", &sig_of(&got)),
        Ok(())
    );
    let got = request_json(&Request::RevokeTrust(revoke.clone()));
    assert_eq!(
        got,
        json!({"type": "revoke_trust", "node_id": 1, "peer_id": 2, "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "revoke_trust:1:2", &sig_of(&got)),
        Ok(())
    );

    // A report's signature cannot be replayed as a revocation.
    let forged = RevokeTrust {
        node_id: 1,
        peer_id: 2,
        signature: report.signature,
    };
    assert_eq!(forged.verify(&pk(&k)), Err(RegistryError::BadSignature));
    assert_round_trip(&Request::ReportTrust(report));
    assert_round_trip(&Request::RevokeTrust(revoke));
}

#[test]
fn request_handshake_shape_and_signature() {
    let k = key(8);
    let req = RequestHandshake::signed(100, 200, "let me in".into(), &k);
    let got = request_json(&Request::RequestHandshake(req.clone()));
    assert_eq!(
        got,
        json!({"type": "request_handshake", "from_node_id": 100, "to_node_id": 200,
               "justification": "let me in", "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "handshake:100:200", &sig_of(&got)),
        Ok(())
    );
    let mut reversed = req.clone();
    core::mem::swap(&mut reversed.from_node_id, &mut reversed.to_node_id);
    assert_eq!(reversed.verify(&pk(&k)), Err(RegistryError::BadSignature));
    assert_round_trip(&Request::RequestHandshake(req));
}

#[test]
fn poll_and_respond_handshake_shapes() {
    let k = key(9);
    let poll = PollHandshakes::signed(200, &k);
    let got = request_json(&Request::PollHandshakes(poll.clone()));
    assert_eq!(
        got,
        json!({"type": "poll_handshakes", "node_id": 200, "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "poll_handshakes:200", &sig_of(&got)),
        Ok(())
    );

    let respond = RespondHandshake::signed(200, 100, true, &k);
    let got = request_json(&Request::RespondHandshake(respond.clone()));
    assert_eq!(
        got,
        json!({"type": "respond_handshake", "node_id": 200, "peer_id": 100, "accept": true,
               "signature": got["signature"].clone()})
    );
    assert_eq!(
        challenge::verify(&pk(&k), "respond:200:100", &sig_of(&got)),
        Ok(())
    );
    let mut other_peer = respond.clone();
    other_peer.peer_id = 101;
    assert_eq!(other_peer.verify(&pk(&k)), Err(RegistryError::BadSignature));
    assert_round_trip(&Request::PollHandshakes(poll));
    assert_round_trip(&Request::RespondHandshake(respond));
}

#[test]
fn list_nodes_shape() {
    let request = Request::ListNodes(ListNodes { network_id: 3 });
    assert_eq!(
        request_json(&request),
        json!({"type": "list_nodes", "network_id": 3})
    );
    assert_round_trip(&request);
}

#[test]
fn type_names_match_the_serialized_tag() {
    let k = key(1);
    let all = [
        Request::Register(Register::signed(String::new(), &k)),
        Request::Lookup(Lookup { node_id: 1 }),
        Request::Resolve(Resolve::signed(1, 2, &k)),
        Request::Heartbeat(Heartbeat::signed(1, None, &k)),
        Request::Deregister(Deregister::signed(1, &k)),
        Request::SetHostname(SetHostname::signed(1, "h".into(), &k)),
        Request::SetVisibility(SetVisibility::signed(1, true, &k)),
        Request::CheckTrust(CheckTrust {
            node_id: 1,
            peer_id: 2,
        }),
        Request::ReportTrust(ReportTrust::signed(1, 2, &k)),
        Request::RevokeTrust(RevokeTrust::signed(1, 2, &k)),
        Request::RequestHandshake(RequestHandshake::signed(1, 2, String::new(), &k)),
        Request::PollHandshakes(PollHandshakes::signed(1, &k)),
        Request::RespondHandshake(RespondHandshake::signed(1, 2, false, &k)),
        Request::ListNodes(ListNodes { network_id: 0 }),
    ];
    for request in &all {
        assert_eq!(request_json(request)["type"], request.type_name());
        assert_eq!(
            request.ok_type_name(),
            alloc::format!("{}_ok", request.type_name())
        );
        if let Some(signed) = request.as_signed() {
            assert_eq!(signed.verify(&pk(&k)), Ok(()), "{}", request.type_name());
        }
    }
}

#[test]
fn request_decode_verdicts_are_distinct() {
    assert_eq!(
        Request::decode(br#"{"node_id":1}"#),
        Err(RegistryError::MissingType)
    );
    assert_eq!(
        Request::decode(br#"{"type":"rotate_key","node_id":1}"#),
        Err(RegistryError::UnknownType("rotate_key".into()))
    );
    assert!(matches!(
        Request::decode(b"[\"lookup\",1]"),
        Err(RegistryError::MalformedJson(_))
    ));
    assert!(matches!(
        Request::decode(b"{\"type\":\"lookup\""),
        Err(RegistryError::MalformedJson(_))
    ));
    assert!(matches!(
        Request::decode(b""),
        Err(RegistryError::MalformedJson(_))
    ));
    assert!(matches!(
        Request::decode(br#"{"type":"lookup","node_id":1} x"#),
        Err(RegistryError::MalformedJson(_))
    ));
    let missing_field = Request::decode(br#"{"type":"lookup"}"#);
    assert!(
        matches!(&missing_field, Err(RegistryError::InvalidMessage { message_type, .. }) if message_type == "lookup"),
        "{missing_field:?}"
    );
    // Node IDs are u32: negative, fractional and too-large numbers are refused.
    for bad in [
        r#"{"type":"lookup","node_id":-1}"#,
        r#"{"type":"lookup","node_id":1.5}"#,
        r#"{"type":"lookup","node_id":4294967296}"#,
        r#"{"type":"lookup","node_id":"1"}"#,
    ] {
        assert!(
            matches!(
                Request::decode(bad.as_bytes()),
                Err(RegistryError::InvalidMessage { .. })
            ),
            "{bad}"
        );
    }
    // A signature that is not base64 of 64 bytes.
    let short_sig =
        json!({"type": "poll_handshakes", "node_id": 1, "signature": "AAAA"}).to_string();
    assert!(matches!(
        Request::decode(short_sig.as_bytes()),
        Err(RegistryError::InvalidMessage { .. })
    ));
    // "type" that is not a string, and a duplicated "type".
    assert!(matches!(
        Request::decode(br#"{"type":7}"#),
        Err(RegistryError::InvalidMessage { .. })
    ));
    assert!(matches!(
        Request::decode(br#"{"type":"lookup","type":"lookup","node_id":1}"#),
        Err(RegistryError::InvalidMessage { .. })
    ));
}

#[test]
fn request_decode_ignores_unknown_fields_and_escaped_type() {
    let got =
        Request::decode(br#" {"type":"look\u0075p","node_id":5,"admin_token":"x"} "#).unwrap();
    assert_eq!(got, Request::Lookup(Lookup { node_id: 5 }));
}

// ---- responses ----

fn decode_response(value: Value) -> Response {
    Response::decode(value.to_string().as_bytes()).unwrap()
}

/// Encoding then decoding gives the response back, and serde's derived impl agrees.
fn assert_response_round_trip(response: &Response) {
    let frame = response.encode().unwrap();
    assert_eq!(&Response::decode(&frame[4..]).unwrap(), response);
    assert_eq!(
        &serde_json::from_slice::<Response>(&frame[4..]).unwrap(),
        response
    );
}

#[test]
fn register_ok_from_spec_example() {
    let key_b64 = b64(&key(1));
    let got = decode_response(json!({
        "type": "register_ok", "node_id": 1234, "network_id": 0,
        "address": "0:0000.0000.04D2", "public_key": key_b64,
        "observed_addr": "203.0.113.7:41000", "protocol_version": 1, "hostname": "my-agent"
    }));
    let expected = Response::RegisterOk(RegisterOk {
        node_id: 1234,
        network_id: 0,
        address: "0:0000.0000.04D2".into(),
        public_key: Some(PublicKey(pk(&key(1)))),
        observed_addr: Some("203.0.113.7:41000".into()),
        protocol_version: Some(1),
        hostname: Some("my-agent".into()),
        hostname_error: None,
    });
    assert_eq!(got, expected);
    assert_response_round_trip(&expected);

    let refused =
        decode_response(json!({"type": "register_ok", "node_id": 5, "hostname_error": "taken"}));
    let Response::RegisterOk(ok) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(ok.hostname_error.as_deref(), Some("taken"));
    assert_eq!(ok.public_key, None);
}

#[test]
fn lookup_ok_reads_every_spec_field() {
    let key_b64 = b64(&key(2));
    let got = decode_response(json!({
        "type": "lookup_ok", "node_id": 42, "address": "0:0000.0000.002A",
        "networks": [0, 7], "public_key": key_b64, "public": true, "polo_score": -3,
        "hostname": "peer", "tags": ["webserver"], "task_exec": true, "external_id": "sub",
        "version": "v1.13.9", "real_addr": "198.51.100.2:4000", "endpoint": "198.51.100.2:4000",
        "endpoints": [{"network": "tcp", "addr": "198.51.100.2:443"}], "relay_only": false,
        "something_new": {"nested": [1, 2]}
    }));
    let expected = LookupOk {
        node_id: 42,
        address: "0:0000.0000.002A".into(),
        networks: vec![0, 7],
        public_key: PublicKey(pk(&key(2))),
        public: true,
        polo_score: Some(-3),
        hostname: Some("peer".into()),
        tags: vec!["webserver".into()],
        task_exec: true,
        external_id: Some("sub".into()),
        version: Some("v1.13.9".into()),
        real_addr: Some("198.51.100.2:4000".into()),
        endpoint: Some("198.51.100.2:4000".into()),
        endpoints: vec![Endpoint {
            network: "tcp".into(),
            addr: "198.51.100.2:443".into(),
        }],
        relay_only: false,
    };
    assert_eq!(got, Response::LookupOk(expected.clone()));
    assert_response_round_trip(&Response::LookupOk(expected));
}

#[test]
fn lookup_ok_of_a_private_node_and_go_null_slices() {
    let got = decode_response(json!({
        "type": "lookup_ok", "node_id": 42, "address": "0:0000.0000.002A",
        "networks": null, "public_key": b64(&key(2)), "public": false, "tags": null
    }));
    let Response::LookupOk(ok) = got else {
        panic!()
    };
    assert!(ok.networks.is_empty() && ok.tags.is_empty());
    assert_eq!(ok.real_addr, None);
}

#[test]
fn lookup_ok_without_a_valid_key_is_invalid() {
    for key_value in [json!(null), json!("AAAA"), json!(5)] {
        let body = json!({"type": "lookup_ok", "node_id": 1, "public_key": key_value}).to_string();
        assert!(
            matches!(Response::decode(body.as_bytes()), Err(RegistryError::InvalidMessage { ref message_type, .. }) if message_type == "lookup_ok"),
            "{body}"
        );
    }
    let missing = json!({"type": "lookup_ok", "node_id": 1}).to_string();
    assert!(matches!(
        Response::decode(missing.as_bytes()),
        Err(RegistryError::InvalidMessage { .. })
    ));
}

#[test]
fn resolve_ok_reads_spec_fields() {
    let expected = ResolveOk {
        node_id: 42,
        real_addr: "198.51.100.2:4000".into(),
        public_key: PublicKey(pk(&key(2))),
        endpoints: vec![Endpoint {
            network: "tcp".into(),
            addr: "198.51.100.2:443".into(),
        }],
        lan_addrs: vec!["10.0.0.2:4000".into()],
        key_age_days: Some(12),
    };
    let got = decode_response(json!({
        "type": "resolve_ok", "node_id": 42, "real_addr": "198.51.100.2:4000",
        "public_key": b64(&key(2)),
        "endpoints": [{"network": "tcp", "addr": "198.51.100.2:443"}],
        "lan_addrs": ["10.0.0.2:4000"], "key_age_days": 12
    }));
    assert_eq!(got, Response::ResolveOk(expected.clone()));
    assert_response_round_trip(&Response::ResolveOk(expected));
}

#[test]
fn heartbeat_ok_with_and_without_warning() {
    assert_eq!(
        decode_response(json!({"type": "heartbeat_ok", "time": 1_790_000_000})),
        Response::HeartbeatOk(HeartbeatOk {
            time: Some(1_790_000_000),
            key_expiry_warning: false
        })
    );
    let warned = Response::HeartbeatOk(HeartbeatOk {
        time: Some(1),
        key_expiry_warning: true,
    });
    assert_eq!(
        decode_response(json!({"type": "heartbeat_ok", "time": 1, "key_expiry_warning": true})),
        warned
    );
    assert_response_round_trip(&warned);
}

#[test]
fn check_trust_ok_carries_the_verdict() {
    for trusted in [true, false] {
        let got = decode_response(json!({"type": "check_trust_ok", "trusted": trusted}));
        assert_eq!(got, Response::CheckTrustOk(CheckTrustOk { trusted }));
        assert_response_round_trip(&got);
    }
    // spec §9.1: without "type" the answer is malformed, even if it has the right field.
    assert_eq!(
        Response::decode(br#"{"trusted":true}"#),
        Err(RegistryError::MissingType)
    );
}

#[test]
fn poll_handshakes_ok_matches_spec_shape() {
    let got = decode_response(json!({
        "type": "poll_handshakes_ok",
        "requests": [
            {"from_node_id": 100, "public_key": b64(&key(8)), "justification": "hi", "timestamp": 1_790_000_000},
            {"from_node_id": 101, "justification": "", "timestamp": 1_790_000_001}
        ],
        "responses": [{"from_node_id": 300, "accept": true, "timestamp": 1_790_000_002}]
    }));
    let expected = PollHandshakesOk {
        requests: vec![
            RelayedHandshakeRequest {
                from_node_id: 100,
                public_key: Some(PublicKey(pk(&key(8)))),
                justification: "hi".into(),
                timestamp: 1_790_000_000,
            },
            RelayedHandshakeRequest {
                from_node_id: 101,
                public_key: None,
                justification: String::new(),
                timestamp: 1_790_000_001,
            },
        ],
        responses: vec![RelayedHandshakeResponse {
            from_node_id: 300,
            accept: true,
            timestamp: 1_790_000_002,
        }],
    };
    assert_eq!(got, Response::PollHandshakesOk(expected.clone()));
    assert_response_round_trip(&Response::PollHandshakesOk(expected));
    assert_eq!(
        decode_response(json!({"type": "poll_handshakes_ok", "requests": null})),
        Response::PollHandshakesOk(PollHandshakesOk::default())
    );
}

#[test]
fn list_nodes_ok_reads_node_ids() {
    let got = decode_response(json!({
        "type": "list_nodes_ok",
        "nodes": [{"node_id": 1, "hostname": "a", "public": true}, {"node_id": 2}]
    }));
    let expected = ListNodesOk {
        nodes: vec![
            ListedNode {
                node_id: 1,
                hostname: Some("a".into()),
            },
            ListedNode {
                node_id: 2,
                hostname: None,
            },
        ],
    };
    assert_eq!(got, Response::ListNodesOk(expected.clone()));
    assert_response_round_trip(&Response::ListNodesOk(expected));
}

#[test]
fn acknowledgements_without_fields() {
    for (ty, expected) in [
        ("deregister_ok", Response::DeregisterOk),
        ("report_trust_ok", Response::ReportTrustOk),
        ("revoke_trust_ok", Response::RevokeTrustOk),
        ("request_handshake_ok", Response::RequestHandshakeOk),
        ("respond_handshake_ok", Response::RespondHandshakeOk),
    ] {
        assert_eq!(decode_response(json!({"type": ty})), expected);
        // Extra fields a registry might add do not matter.
        assert_eq!(decode_response(json!({"type": ty, "node_id": 3})), expected);
        assert_eq!(response_json(&expected), json!({"type": ty}));
        assert_response_round_trip(&expected);
    }
    let renamed = Response::SetHostnameOk(SetHostnameOk {
        node_id: Some(3),
        hostname: Some("h".into()),
    });
    assert_eq!(
        decode_response(json!({"type": "set_hostname_ok", "node_id": 3, "hostname": "h"})),
        renamed
    );
    assert_response_round_trip(&renamed);
}

fn response_json(response: &Response) -> Value {
    serde_json::from_slice(&response.encode().unwrap()[4..]).unwrap()
}

#[test]
fn error_response_shape() {
    let refusal = Response::Error {
        error: "node not found".into(),
    };
    assert_eq!(
        response_json(&refusal),
        json!({"type": "error", "error": "node not found"})
    );
    assert_eq!(
        decode_response(json!({"type": "error", "error": "node not found"})),
        refusal
    );
    assert_eq!(refusal.error_text(), Some("node not found"));
    assert_eq!(refusal.type_name(), "error");
    assert_response_round_trip(&refusal);
    // COMMON clients read any "error" string as a refusal, with or without "type".
    assert_eq!(decode_response(json!({"error": "node not found"})), refusal);
    assert!(matches!(
        Response::decode(br#"{"type":"error"}"#),
        Err(RegistryError::InvalidMessage { .. })
    ));
}

#[test]
fn response_decode_verdicts_are_distinct() {
    assert_eq!(Response::decode(b"{}"), Err(RegistryError::MissingType));
    assert_eq!(
        Response::decode(br#"{"type":"beacon_list_ok","beacons":[]}"#),
        Err(RegistryError::UnknownType("beacon_list_ok".into()))
    );
    assert!(matches!(
        Response::decode(b"null"),
        Err(RegistryError::MalformedJson(_))
    ));
    assert!(matches!(
        Response::decode(b"\xff\xfe"),
        Err(RegistryError::MalformedJson(_))
    ));
    assert!(matches!(
        Response::decode(br#"{"type":"check_trust_ok","trusted":"yes"}"#),
        Err(RegistryError::InvalidMessage { .. })
    ));
}

#[test]
fn response_type_names_match_the_serialized_tag() {
    let all: Vec<Response> = vec![
        Response::RegisterOk(RegisterOk {
            node_id: 1,
            network_id: 0,
            address: String::new(),
            public_key: None,
            observed_addr: None,
            protocol_version: None,
            hostname: None,
            hostname_error: None,
        }),
        Response::HeartbeatOk(HeartbeatOk {
            time: None,
            key_expiry_warning: false,
        }),
        Response::DeregisterOk,
        Response::CheckTrustOk(CheckTrustOk { trusted: true }),
        Response::PollHandshakesOk(PollHandshakesOk::default()),
        Response::ListNodesOk(ListNodesOk::default()),
        Response::Error { error: "x".into() },
    ];
    for response in &all {
        assert_eq!(response_json(response)["type"], response.type_name());
        assert_response_round_trip(response);
    }
    assert_eq!(
        RegistryError::MissingType.to_string(),
        "registry message has no \"type\""
    );
}
