//! Records a native `Node` transcript for the cross-implementation test of the engine.
//!
//! Two native [`Node`]s with fixed identity and CSPRNG seeds (ChaCha20) run a scripted
//! scenario (key exchange, echo stream, datagrams both ways, data exchange, ping, close)
//! over an in-memory network with a fake clock. Every output is recorded in order: each
//! transmitted frame's bytes and each event's type. `test/node-transcript.test.mjs` drives
//! two wasm `Node`s with the same seeds and script through `test/worker/src/node-sim.js`,
//! whose loop this file mirrors rule for rule, and must produce the same bytes.
//!
//! Run: `cargo run -p pilot-wasm --example node_transcript > test/out/node-transcript.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;

use pilot_core::addr::Addr;
use pilot_core::keyexchange::PathId;
use pilot_core::node::{ConnectionId, Event, Input, Node, NodeConfig, NodeError, Output};
use pilot_core::services::dataexchange::Frame;
use pilot_core::stream::StreamError;
use pilot_core::time::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

/// Network of both nodes.
const NETWORK: u16 = 1;
/// One-way delay of every frame.
const DELAY_MS: u64 = 10;
/// Bytes asked for per `read`.
const READ_BYTES: usize = 65536;
/// Most steps of the run.
const MAX_STEPS: usize = 100_000;
/// Clock origin and end of the run, in milliseconds.
const START_MS: u64 = 1_000;
const UNTIL_MS: u64 = 60_000;

/// One scripted action (the vocabulary of `Sim.act` in node-sim.js).
struct Action {
    at_ms: u64,
    node: u32,
    op: &'static str,
    peer: u32,
    port: u16,
    data: Vec<u8>,
}

struct Entry {
    id: u32,
    node: Node<ChaCha20Rng>,
    timeout: Option<Instant>,
    last_conn: Option<ConnectionId>,
}

struct Queued {
    at: Instant,
    seq: u64,
    to: u32,
    from: u32,
    bytes: Vec<u8>,
}

struct Sim {
    now: Instant,
    nodes: Vec<Entry>,
    registry: BTreeMap<u32, [u8; 32]>,
    queue: Vec<Queued>,
    sequence: u64,
    log: Vec<Value>,
    results: Vec<Value>,
}

fn ms(at: Instant) -> f64 {
    at.as_micros() as f64 / 1_000.0
}

fn event_type(event: &Event) -> &'static str {
    match event {
        Event::PeerSessionUp { .. } => "peerSessionUp",
        Event::PeerSessionDown { .. } => "peerSessionDown",
        Event::PeerUnreachable { .. } => "peerUnreachable",
        Event::NeedPeerKey { .. } => "needPeerKey",
        Event::StreamOpened(_) => "streamOpened",
        Event::StreamAccepted { .. } => "streamAccepted",
        Event::StreamReadable(_) => "streamReadable",
        Event::StreamWritable(_) => "streamWritable",
        Event::StreamPeerClosed(_) => "streamPeerClosed",
        Event::StreamReset { .. } => "streamReset",
        Event::StreamClosed(_) => "streamClosed",
        Event::Datagram { .. } => "datagram",
        Event::Pong { .. } => "pong",
        Event::MessageReceived { .. } => "messageReceived",
        Event::MessageAcked { .. } => "messageAcked",
        Event::BrokerSubscribed { .. } => "brokerSubscribed",
        Event::EventReceived { .. } => "eventReceived",
        Event::Trust(_) => "trust",
        Event::RegistryRequest(_) => "registryRequest",
        Event::Error(_) => "error",
    }
}

impl Sim {
    fn drain(&mut self, index: usize) {
        let now = self.now;
        loop {
            let entry = &mut self.nodes[index];
            match entry.node.poll_output() {
                None => {
                    entry.timeout = None;
                    return;
                }
                Some(Output::Timeout(at)) => {
                    entry.timeout = Some(at);
                    return;
                }
                Some(Output::Transmit { path, bytes }) => {
                    self.log.push(json!({
                        "t": ms(now), "node": entry.id, "kind": "transmit",
                        "path": path.0, "hex": hex::encode(&bytes),
                    }));
                    self.queue.push(Queued {
                        at: now + core::time::Duration::from_millis(DELAY_MS),
                        seq: self.sequence,
                        to: u32::try_from(path.0).unwrap(),
                        from: entry.id,
                        bytes,
                    });
                    self.sequence += 1;
                }
                Some(Output::Event(event)) => {
                    self.log.push(json!({
                        "t": ms(now), "node": entry.id, "kind": "event", "type": event_type(&event),
                    }));
                    match event {
                        Event::NeedPeerKey { node } => {
                            let key = self.registry.get(&node).copied();
                            // A refused key is the node's verdict, seen in what follows.
                            let _ = entry.node.handle_input(now, Input::PeerKey { node, key });
                        }
                        Event::StreamReadable(conn) | Event::StreamPeerClosed(conn) => {
                            read_all(&mut entry.node, now, conn);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn drain_all(&mut self) {
        for index in 0..self.nodes.len() {
            self.drain(index);
        }
    }

    fn act(&mut self, action: &Action) {
        let now = self.now;
        let index = self.nodes.iter().position(|e| e.id == action.node).unwrap();
        let entry = &mut self.nodes[index];
        let peer = Addr::new(NETWORK, action.peer);
        let n = &mut entry.node;
        let result = match action.op {
            "addPeerPath" => {
                n.add_peer_path(now, action.peer, PathId(u64::from(action.peer)))
                    .unwrap();
                Value::Null
            }
            "setTrusted" => {
                n.set_trusted(action.peer, true).unwrap();
                Value::Null
            }
            "listen" => {
                n.listen(action.port).unwrap();
                Value::Null
            }
            "dial" => {
                let id = n.dial(now, peer, action.port).unwrap();
                entry.last_conn = Some(id);
                json!(id.0)
            }
            "write" => json!(n
                .write(now, entry.last_conn.unwrap(), &action.data)
                .unwrap()),
            "close" => {
                n.close(now, entry.last_conn.unwrap()).unwrap();
                Value::Null
            }
            "sendTo" => {
                n.send_to(now, peer, action.port, &action.data).unwrap();
                Value::Null
            }
            "sendMessage" => json!(
                n.send_message(now, peer, &Frame::Text(&action.data))
                    .unwrap()
                    .0
            ),
            "ping" => {
                n.ping(now, peer, &action.data).unwrap();
                Value::Null
            }
            other => panic!("unknown op {other}"),
        };
        self.results.push(result);
    }

    fn run(&mut self, script: &[Action], until: Instant) {
        let mut next = 0;
        self.drain_all();
        for _ in 0..MAX_STEPS {
            let frame =
                (0..self.queue.len()).min_by_key(|&i| (self.queue[i].at, self.queue[i].seq));
            let action = script.get(next);
            let timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].timeout.is_some())
                .min_by_key(|&i| self.nodes[i].timeout);
            let frame_at = frame.map(|i| self.queue[i].at);
            let action_at = action.map(|a| Instant::from_millis(a.at_ms));
            let timer_at = timer.and_then(|i| self.nodes[i].timeout);
            let Some(at) = [frame_at, action_at, timer_at].into_iter().flatten().min() else {
                return;
            };
            if at > until {
                return;
            }
            self.now = self.now.max(at);
            if let Some(i) = frame.filter(|_| frame_at == Some(at)) {
                let f = self.queue.remove(i);
                if let Some(entry) = self.nodes.iter_mut().find(|e| e.id == f.to) {
                    // Dropped frames are normal traffic; the log shows what followed.
                    let _ = entry.node.handle_input(
                        self.now,
                        Input::Frame {
                            path: PathId(u64::from(f.from)),
                            bytes: f.bytes,
                            relay_sender: None,
                        },
                    );
                }
            } else if let Some(a) = action.filter(|_| action_at == Some(at)) {
                next += 1;
                self.act(a);
            } else if let Some(i) = timer {
                self.nodes[i]
                    .node
                    .handle_input(self.now, Input::Tick)
                    .unwrap();
            }
            self.drain_all();
        }
        panic!("no quiescence after {MAX_STEPS} steps");
    }
}

/// Reads until nothing is buffered or the stream ended (node-sim.js `readAll`).
fn read_all(node: &mut Node<ChaCha20Rng>, now: Instant, conn: ConnectionId) {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        match node.read(now, conn, &mut buf) {
            Ok(0) | Err(NodeError::Stream(StreamError::WouldBlock)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The scenario of node-sim.js `scenario(a, b)`.
fn scenario(a: u32, b: u32) -> Vec<Action> {
    let act = |at_ms, node, op, peer, port, data: &str| Action {
        at_ms,
        node,
        op,
        peer,
        port,
        data: data.as_bytes().to_vec(),
    };
    vec![
        act(1000, a, "setTrusted", b, 0, ""),
        act(1000, b, "setTrusted", a, 0, ""),
        act(1000, a, "listen", 0, 5000, ""),
        act(1000, b, "listen", 0, 5000, ""),
        act(1000, a, "addPeerPath", b, 0, ""),
        act(1200, a, "dial", b, 7, ""),
        act(1300, a, "write", 0, 0, "hello, echo"),
        act(1500, a, "sendTo", b, 5000, "datagram from A"),
        act(1510, b, "sendTo", a, 5000, "datagram from B"),
        act(1600, a, "sendMessage", b, 0, "hello exchange"),
        act(1700, a, "ping", b, 0, "abc"),
        act(2000, a, "close", 0, 0, ""),
    ]
}

fn main() {
    let (a, b) = (0x0a0a_u32, 0x0b0b_u32);
    let specs = [
        (a, [0x31u8; 32], [0x41u8; 32]),
        (b, [0x32u8; 32], [0x42u8; 32]),
    ];
    let mut sim = Sim {
        now: Instant::from_millis(START_MS),
        nodes: Vec::new(),
        registry: BTreeMap::new(),
        queue: Vec::new(),
        sequence: 0,
        log: Vec::new(),
        results: Vec::new(),
    };
    let mut peers = Vec::new();
    for (id, identity_seed, rng_seed) in specs {
        let rng = ChaCha20Rng::from_seed(rng_seed);
        let node = Node::new(
            NodeConfig::default(),
            Addr::new(NETWORK, id),
            &identity_seed,
            rng,
        );
        let public = pilot_core::crypto::Identity::from_seed(&identity_seed).public_key();
        sim.registry.insert(id, public);
        peers.push(json!({
            "id": id,
            "identity_seed": hex::encode(identity_seed),
            "rng_seed": hex::encode(rng_seed),
            "tunnel_public": hex::encode(node.tunnel_public_key()),
        }));
        sim.nodes.push(Entry {
            id,
            node,
            timeout: None,
            last_conn: None,
        });
    }
    let script = scenario(a, b);
    sim.run(&script, Instant::from_millis(UNTIL_MS));
    let transcript = json!({
        "start_ms": START_MS,
        "until_ms": UNTIL_MS,
        "nodes": peers,
        "results": sim.results,
        "log": sim.log,
        "end_ms": ms(sim.now),
    });
    println!("{}", serde_json::to_string_pretty(&transcript).unwrap());
}
