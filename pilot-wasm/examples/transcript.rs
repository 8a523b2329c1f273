//! Records a native pilot-core transcript for the cross-implementation test.
//!
//! Two peers with fixed seeds build PILA frames, handle each other's, seal a script of
//! packets into PILS frames, fragment the large one, frame them for TCP and the beacon relay,
//! and judge a scripted receive sequence (in order, a replay, a forged tag, a late frame).
//! Everything is printed as JSON on stdout; `test/transcript.test.mjs` replays the same
//! inputs through the wasm module and must produce the same bytes and verdicts.
//!
//! Run: `cargo run -p pilot-wasm --example transcript > test/out/transcript.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::addr::Addr;
use pilot_core::crypto::{derive_session_key, Identity, SendState, SessionKey, TunnelKey};
use pilot_core::frame::beacon::wrap_relay;
use pilot_core::frame::fragment::{Fragmenter, Split};
use pilot_core::frame::pila::{Pila, Trailer};
use pilot_core::frame::pils;
use pilot_core::frame::tcp;
use pilot_core::packet::{Flags, Header, PacketRef, Protocol};
use pilot_core::replay::{Accept, GateVerdict, ReceiveState, RecvVerdict, Reject};
use pilot_core::time::Instant;
use serde_json::{json, Value};

/// Seed of the fragmenter's group counter.
const FRAGMENT_SEED: u32 = 0x5eed_0001;
/// Size of the scripted packet that needs fragmenting, in bytes of payload.
const LARGE_PAYLOAD_LEN: usize = 3000;

struct Peer {
    name: &'static str,
    node: u32,
    seed: [u8; 32],
    x25519_private: [u8; 32],
    send_prefix: [u8; 4],
}

struct Live {
    key: SessionKey,
    send: SendState,
    receive: ReceiveState,
}

fn main() {
    let a = Peer {
        name: "A",
        node: 0x0001_0a0a,
        seed: [0x11; 32],
        x25519_private: [0x21; 32],
        send_prefix: *b"\xa0\xa1\xa2\xa3",
    };
    let b = Peer {
        name: "B",
        node: 0x0001_0b0b,
        seed: [0x12; 32],
        x25519_private: [0x22; 32],
        send_prefix: *b"\xb0\xb1\xb2\xb3",
    };

    // Handshake: each side builds its PILA, the other verifies it and derives the session.
    let pila_a = pila_of(&a);
    let pila_b = pila_of(&b);
    let mut at_a = handle(&pila_b, &b, &a);
    let mut at_b = handle(&pila_a, &a, &b);

    // Scripted packets, alternating directions.
    let packets = script(&a, &b);
    let mut sealed = Vec::new();
    let mut frames_to_b = Vec::new();
    for (index, (from_a, wire, _)) in packets.iter().enumerate() {
        let (session, sender) = if *from_a {
            (&mut at_a, a.node)
        } else {
            (&mut at_b, b.node)
        };
        let mut frame = Vec::new();
        pils::seal(&session.key, &mut session.send, sender, wire, &mut frame).unwrap();
        if *from_a {
            frames_to_b.push(frame.clone());
        }
        sealed.push(
            json!({ "packet": index, "from": if *from_a { "A" } else { "B" },
            "frame_hex": hex::encode(&frame) }),
        );
    }

    // B receives A's frames: in order, then a replay, a forged tag and the first frame late.
    let mut receive = Vec::new();
    let mut script_frames: Vec<(String, Vec<u8>)> = frames_to_b
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("frame {i}"), f.clone()))
        .collect();
    script_frames.swap(0, 1);
    script_frames.push(("replay of frame 1".into(), frames_to_b[1].clone()));
    let mut forged = frames_to_b[2].clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    script_frames.push(("forged tag".into(), forged));
    for (step, (what, frame)) in script_frames.iter().enumerate() {
        let now_ms = 1_000 + 10 * step as u64;
        receive.push(open(&mut at_b, frame, now_ms, what));
    }

    // The large frame (A -> B), split into PILF fragments, and the transports.
    let large_index = packets
        .iter()
        .position(|(_, wire, _)| wire.len() > 1223)
        .unwrap();
    let large_frame = hex::decode(sealed[large_index]["frame_hex"].as_str().unwrap()).unwrap();
    let fragments = match Fragmenter::new(FRAGMENT_SEED)
        .split(a.node, &large_frame)
        .unwrap()
    {
        Split::Fragments(fragments) => fragments.map(hex::encode).collect::<Vec<_>>(),
        Split::Whole(_) => panic!("large frame was not fragmented"),
    };
    let small_frame = &frames_to_b[0];
    let mut tcp_bytes = Vec::new();
    tcp::encode(small_frame, &mut tcp_bytes).unwrap();
    let mut relay = Vec::new();
    wrap_relay(a.node, b.node, small_frame, &mut relay).unwrap();

    let transcript = json!({
        "description": "native pilot-core transcript; replayed through wasm by test/transcript.test.mjs",
        "peers": [peer_json(&a, &pila_a), peer_json(&b, &pila_b)],
        "packets": packets.iter().map(|(_, wire, fields)| {
            let mut fields = fields.clone();
            fields["wire_hex"] = json!(hex::encode(wire));
            fields
        }).collect::<Vec<_>>(),
        "sealed": sealed,
        "receive_at_b": receive,
        "fragments": {
            "seed": FRAGMENT_SEED, "sender": a.node, "packet": large_index,
            "fragments_hex": fragments,
        },
        "tcp": { "frame_hex": hex::encode(small_frame), "tcp_hex": hex::encode(&tcp_bytes) },
        "relay": { "sender": a.node, "dest": b.node, "envelope_hex": hex::encode(&relay) },
    });
    println!("{}", serde_json::to_string_pretty(&transcript).unwrap());
}

fn pila_of(peer: &Peer) -> Vec<u8> {
    let identity = Identity::from_seed(&peer.seed);
    let tunnel = TunnelKey::from_bytes(&peer.x25519_private);
    let mut out = Vec::new();
    Pila::sign(&identity, peer.node, &tunnel.public_key(), Trailer::NONE).encode(&mut out);
    out
}

/// `me` verifies `them`'s PILA against their registry key and installs the session at 0 ms.
fn handle(pila: &[u8], them: &Peer, me: &Peer) -> Live {
    let decoded = Pila::decode(pila).unwrap();
    let registry_key = Identity::from_seed(&them.seed).public_key();
    decoded.verify(&registry_key).unwrap();
    let own = TunnelKey::from_bytes(&me.x25519_private);
    Live {
        key: derive_session_key(&own, &decoded.x25519_public).unwrap(),
        send: SendState::with_fixed_prefix_for_replay(me.send_prefix),
        receive: ReceiveState::new(Instant::ZERO),
    }
}

fn open(session: &mut Live, frame: &[u8], now_ms: u64, what: &str) -> Value {
    let now = Instant::from_millis(now_ms);
    let mut buffer = frame.to_vec();
    let base = json!({ "what": what, "frame_hex": hex::encode(frame), "now_ms": now_ms });
    let (verdict, reason, counter, packet) = match pils::open(&session.key, &mut buffer) {
        Ok(opened) => {
            let verdict = session.receive.on_authenticated(opened.nonce, now);
            let (name, reason) = verdict_words(verdict);
            let packet = verdict.is_deliver().then(|| hex::encode(opened.packet));
            (name, reason, Some(opened.nonce.counter()), packet)
        }
        Err(_) => match session.receive.on_auth_failure(now) {
            GateVerdict::Keep => ("auth_failed", None, None, None),
            GateVerdict::Drop(_) => ("drop_session", Some("decrypt_failures"), None, None),
        },
    };
    let mut out = base;
    out["verdict"] = json!(verdict);
    out["reason"] = json!(reason);
    out["counter"] = json!(counter.map(|c| c.to_string()));
    out["packet_hex"] = json!(packet);
    out
}

/// The verdict words of the wasm API (`OpenVerdict` and `reason`).
fn verdict_words(verdict: RecvVerdict) -> (&'static str, Option<&'static str>) {
    let accept = |a: Accept| match a {
        Accept::First => "first",
        Accept::NewMax => "new_max",
        Accept::InWindow => "in_window",
    };
    let reject = |r: Reject| match r {
        Reject::OutsideWindow => "outside_window",
        Reject::Replay => "replay",
        Reject::ZeroCounter => "zero_counter",
    };
    match verdict {
        RecvVerdict::Accept(a) | RecvVerdict::AcceptOlderEpoch(a) => ("deliver", Some(accept(a))),
        RecvVerdict::NewEpoch => ("new_epoch", None),
        RecvVerdict::Reject(r) => (reject(r), None),
        RecvVerdict::RejectStaleEpoch(r) => ("stale_epoch", Some(reject(r))),
        RecvVerdict::RejectRetiredEpoch => ("retired_epoch", None),
        RecvVerdict::DropSession(_) => ("drop_session", None),
    }
}

/// One scripted packet: direction and the header fields that vary.
struct Scripted {
    from_a: bool,
    flags: Flags,
    protocol: Protocol,
    ports: (u16, u16),
    seq_ack: (u32, u32),
    payload: Vec<u8>,
}

/// The scripted packets: (sent by A?, wire bytes, the fields as the wasm API takes them).
fn script(a: &Peer, b: &Peer) -> Vec<(bool, Vec<u8>, Value)> {
    let addr_a = Addr::new(1, a.node);
    let addr_b = Addr::new(1, b.node);
    let large: Vec<u8> = (0..LARGE_PAYLOAD_LEN).map(|i| (i % 251) as u8).collect();
    let stream = |from_a, flags, ports, seq_ack, payload| Scripted {
        from_a,
        flags,
        protocol: Protocol::Stream,
        ports,
        seq_ack,
        payload,
    };
    let specs = [
        stream(true, Flags::SYN, (49152, 1000), (1, 0), vec![]),
        stream(
            false,
            Flags::SYN | Flags::ACK,
            (1000, 49152),
            (7, 2),
            vec![],
        ),
        stream(
            true,
            Flags::ACK,
            (49152, 1000),
            (2, 8),
            b"hello over pilot".to_vec(),
        ),
        Scripted {
            from_a: true,
            flags: Flags::NONE,
            protocol: Protocol::Datagram,
            ports: (5000, 1001),
            seq_ack: (0, 0),
            payload: large,
        },
        stream(
            false,
            Flags::FIN | Flags::ACK,
            (1000, 49152),
            (8, 18),
            vec![],
        ),
    ];
    specs
        .into_iter()
        .map(|spec| {
            let (src, dst) = if spec.from_a {
                (addr_a, addr_b)
            } else {
                (addr_b, addr_a)
            };
            let header = Header {
                flags: spec.flags,
                protocol: spec.protocol,
                src,
                dst,
                src_port: spec.ports.0,
                dst_port: spec.ports.1,
                seq: spec.seq_ack.0,
                ack: spec.seq_ack.1,
                window: 512,
            };
            let mut wire = Vec::new();
            PacketRef::new(header, &spec.payload)
                .encode(&mut wire)
                .unwrap();
            let fields = json!({
                "flags": spec.flags.bits(), "protocol": u8::from(spec.protocol),
                "src": src.to_string(), "dst": dst.to_string(),
                "srcPort": spec.ports.0, "dstPort": spec.ports.1,
                "seq": spec.seq_ack.0, "ack": spec.seq_ack.1,
                "window": 512, "payload_hex": hex::encode(&spec.payload),
            });
            (spec.from_a, wire, fields)
        })
        .collect()
}

fn peer_json(peer: &Peer, pila: &[u8]) -> Value {
    json!({
        "name": peer.name,
        "node": peer.node,
        "ed25519_seed": hex::encode(peer.seed),
        "ed25519_public": hex::encode(Identity::from_seed(&peer.seed).public_key()),
        "x25519_private": hex::encode(peer.x25519_private),
        "x25519_public": hex::encode(TunnelKey::from_bytes(&peer.x25519_private).public_key()),
        "send_prefix": hex::encode(peer.send_prefix),
        "pila_hex": hex::encode(pila),
    })
}
