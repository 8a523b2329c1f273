//! A deterministic simulation of several [`Node`]s, shared by the `node_*` scenario files.
//!
//! * Clock: one simulated [`Instant`] that jumps to the earliest wake-up (a frame arrival or
//!   a node's `poll_timeout`); nothing reads a real clock.
//! * Network: every frame a node transmits on `PathId(n)` goes to node `n`, through a link
//!   with seeded loss, duplication, reordering (extra delay for some frames), one-way delay
//!   with jitter, and an MTU above which frames are dropped. Links are per direction.
//! * Registry: a table of Ed25519 keys answering every `NeedPeerKey` at once.
//! * Applications: per node, bytes queued on a connection (`sources`) are written as the
//!   stream accepts them and closed when done if asked; every readable connection is read
//!   into `sinks` (with `eof` marking end of stream).
//!
//! Every loop is bounded by `MAX_STEPS`; every run with the same seed replays exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use pilot_core::addr::Addr;
use pilot_core::crypto::{Identity, TunnelKey};
use pilot_core::keyexchange::PathId;
use pilot_core::node::{ConnectionId, Event, Input, Node, NodeConfig, NodeError, Output};
use pilot_core::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// Most clock steps one `run_until` may take.
pub const MAX_STEPS: usize = 5_000_000;
/// Network of every simulated address.
pub const NETWORK: u16 = 1;
/// Bytes a source hands to `write` at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// Behaviour of one direction of a link.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Probability a frame is dropped.
    pub loss: f64,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Probability a frame is held back by up to `reorder_delay` more.
    pub reorder: f64,
    /// Extra delay of reordered frames (uniform in `0..reorder_delay`).
    pub reorder_delay: Duration,
    /// One-way delay.
    pub delay: Duration,
    /// Uniform extra delay in `0..jitter`.
    pub jitter: Duration,
    /// Frames longer than this are dropped.
    pub mtu: usize,
    /// Link down: everything is dropped.
    pub down: bool,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            delay: Duration::from_millis(20),
            jitter: Duration::ZERO,
            mtu: 1500,
            down: false,
        }
    }
}

impl Link {
    /// 10 % loss, 5 % duplication, 10 % reordering by up to 30 ms, 15 ± 5 ms delay.
    pub fn lossy() -> Self {
        Link {
            loss: 0.10,
            duplicate: 0.05,
            reorder: 0.10,
            reorder_delay: Duration::from_millis(30),
            delay: Duration::from_millis(15),
            jitter: Duration::from_millis(5),
            ..Link::default()
        }
    }
}

/// Bytes an application queued on a connection.
#[derive(Debug)]
pub struct Source {
    pub data: Vec<u8>,
    pub offset: usize,
    pub close_when_done: bool,
}

/// One simulated node and its application.
pub struct SimNode {
    pub node: Node<ChaCha20Rng>,
    pub seed: [u8; 32],
    /// Every event the node produced, in order.
    pub events: Vec<Event>,
    /// When each event of `events` came out.
    pub event_times: Vec<Instant>,
    /// Errors returned for frames (forged, replayed, …), in order.
    pub frame_errors: Vec<NodeError>,
    pub sources: BTreeMap<ConnectionId, Source>,
    pub sinks: BTreeMap<ConnectionId, Vec<u8>>,
    pub eof: BTreeSet<ConnectionId>,
    /// Read readable connections into `sinks` automatically.
    pub auto_read: bool,
}

type Queued = Reverse<(Instant, u64, u32, u32, Vec<u8>)>;

/// The simulation.
pub struct Sim {
    pub now: Instant,
    pub nodes: BTreeMap<u32, SimNode>,
    pub links: BTreeMap<(u32, u32), Link>,
    pub default_link: Link,
    /// The registry's Ed25519 keys.
    pub registry: BTreeMap<u32, [u8; 32]>,
    /// Record every transmitted frame in `wire` (for replay and inspection).
    pub capture: bool,
    pub wire: Vec<(u32, u32, Vec<u8>)>,
    /// With `capture`: (from, to, length) of every frame delivered, after the link.
    pub delivered: Vec<(u32, u32, usize)>,
    queue: BinaryHeap<Queued>,
    sequence: u64,
    rng: ChaCha20Rng,
}

/// The identity seed of simulated node `id` (plus a restart generation for fresh identities
/// is never needed: a restarted node keeps its identity, as a daemon does).
pub fn seed_of(id: u32) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&id.to_be_bytes());
    seed[4] = 0x5E;
    seed
}

/// The address of simulated node `id`.
pub fn addr(id: u32) -> Addr {
    Addr::new(NETWORK, id)
}

/// The path by which frames go to (and come from) node `id`.
pub fn path(id: u32) -> PathId {
    PathId(u64::from(id))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Seeded pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            now: Instant::from_millis(1_000),
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            default_link: Link::default(),
            registry: BTreeMap::new(),
            capture: false,
            wire: Vec::new(),
            delivered: Vec::new(),
            queue: BinaryHeap::new(),
            sequence: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// Adds node `id` (registered with the registry) with `config`.
    pub fn add_node(&mut self, id: u32, config: NodeConfig) {
        let seed = seed_of(id);
        let rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let node = Node::new(config, addr(id), &seed, rng);
        self.install(id, seed, node);
    }

    /// Replaces node `id` by a new process with the same identity; `tunnel` keeps its
    /// X25519 key (restart keeping state), `None` draws a fresh one.
    pub fn restart(&mut self, id: u32, config: NodeConfig, tunnel: Option<TunnelKey>) {
        let seed = seed_of(id);
        let rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let node = match tunnel {
            Some(key) => Node::with_tunnel_key(config, addr(id), &seed, key, rng),
            None => Node::new(config, addr(id), &seed, rng),
        };
        self.install(id, seed, node);
    }

    fn install(&mut self, id: u32, seed: [u8; 32], node: Node<ChaCha20Rng>) {
        self.registry
            .insert(id, Identity::from_seed(&seed).public_key());
        self.nodes.insert(
            id,
            SimNode {
                node,
                seed,
                events: Vec::new(),
                event_times: Vec::new(),
                frame_errors: Vec::new(),
                sources: BTreeMap::new(),
                sinks: BTreeMap::new(),
                eof: BTreeSet::new(),
                auto_read: true,
            },
        );
    }

    pub fn node(&mut self, id: u32) -> &mut Node<ChaCha20Rng> {
        &mut self.nodes.get_mut(&id).unwrap().node
    }

    pub fn sim_node(&mut self, id: u32) -> &mut SimNode {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn events(&self, id: u32) -> &[Event] {
        &self.nodes[&id].events
    }

    pub fn link(&mut self, from: u32, to: u32) -> &mut Link {
        let default = self.default_link;
        self.links.entry((from, to)).or_insert(default)
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_links(&mut self, a: u32, b: u32, link: Link) {
        self.links.insert((a, b), link);
        self.links.insert((b, a), link);
    }

    /// Tells `from` the path to `to` (as a registry resolve would) and drains.
    pub fn introduce(&mut self, from: u32, to: u32) {
        let now = self.now;
        self.node(from)
            .handle_input(
                now,
                Input::Command(pilot_core::node::Command::AddPeerPath {
                    node: to,
                    path: path(to),
                }),
            )
            .unwrap();
        self.drain(from);
    }

    /// Runs `f` on node `id` at the current time, then drains its outputs.
    pub fn with<T>(&mut self, id: u32, f: impl FnOnce(&mut Node<ChaCha20Rng>, Instant) -> T) -> T {
        let now = self.now;
        let out = f(self.node(id), now);
        self.drain(id);
        out
    }

    /// Queues `data` to be written on `conn` of node `id` as the stream accepts it.
    pub fn queue_write(&mut self, id: u32, conn: ConnectionId, data: Vec<u8>, close: bool) {
        self.sim_node(id).sources.insert(
            conn,
            Source {
                data,
                offset: 0,
                close_when_done: close,
            },
        );
        self.pump_sources(id, &[conn]);
        self.drain(id);
    }

    /// Puts a frame on the wire from `from` to `to`, subject to the link.
    pub fn send(&mut self, from: u32, to: u32, bytes: Vec<u8>) {
        if self.capture {
            self.wire.push((from, to, bytes.clone()));
        }
        let link = self
            .links
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default_link);
        if link.down || bytes.len() > link.mtu || self.chance(link.loss) {
            return;
        }
        let copies = if self.chance(link.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = link.delay + self.uniform(link.jitter);
            if self.chance(link.reorder) {
                delay += self.uniform(link.reorder_delay);
            }
            self.inject_at(self.now + delay, from, to, bytes.clone());
        }
    }

    /// Delivers `bytes` to `to` as if from `from` at `at`, bypassing the link.
    pub fn inject_at(&mut self, at: Instant, from: u32, to: u32, bytes: Vec<u8>) {
        self.sequence += 1;
        self.queue
            .push(Reverse((at, self.sequence, to, from, bytes)));
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn uniform(&mut self, max: Duration) -> Duration {
        let micros = u64::try_from(max.as_micros()).unwrap();
        if micros == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.rng.next_u64() % micros)
    }

    /// Drains node `id`: frames to the network, key lookups to the registry, readable data
    /// to the sink, writable connections to their source; until nothing moves.
    pub fn drain(&mut self, id: u32) {
        loop {
            let now = self.now;
            let mut sent = Vec::new();
            let mut keys = Vec::new();
            let mut readable = Vec::new();
            let mut writable = Vec::new();
            let Some(sim_node) = self.nodes.get_mut(&id) else {
                return;
            };
            while let Some(output) = sim_node.node.poll_output() {
                match output {
                    Output::Transmit { path, bytes } => sent.push((path, bytes)),
                    Output::Timeout(_) => break,
                    Output::Event(event) => {
                        match &event {
                            Event::NeedPeerKey { node } => keys.push(*node),
                            Event::StreamReadable(c) | Event::StreamPeerClosed(c) => {
                                readable.push(*c)
                            }
                            Event::StreamOpened(c) | Event::StreamWritable(c) => writable.push(*c),
                            Event::StreamAccepted { conn, .. } => writable.push(*conn),
                            _ => {}
                        }
                        sim_node.events.push(event);
                        sim_node.event_times.push(now);
                    }
                }
            }
            for (path, bytes) in sent {
                self.send(id, u32::try_from(path.0).unwrap(), bytes);
            }
            if keys.is_empty() && readable.is_empty() && writable.is_empty() {
                return;
            }
            for node in keys {
                let key = self.registry.get(&node).copied();
                let sim_node = self.nodes.get_mut(&id).unwrap();
                if let Err(error) = sim_node
                    .node
                    .handle_input(now, Input::PeerKey { node, key })
                {
                    sim_node.frame_errors.push(error);
                }
            }
            self.read_sinks(id, &readable);
            self.pump_sources(id, &writable);
        }
    }

    fn read_sinks(&mut self, id: u32, conns: &[ConnectionId]) {
        let now = self.now;
        let sim_node = self.nodes.get_mut(&id).unwrap();
        if !sim_node.auto_read {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        for &conn in conns {
            loop {
                match sim_node.node.read(now, conn, &mut buf) {
                    Ok(0) => {
                        sim_node.eof.insert(conn);
                        break;
                    }
                    Ok(n) => sim_node
                        .sinks
                        .entry(conn)
                        .or_default()
                        .extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
    }

    fn pump_sources(&mut self, id: u32, conns: &[ConnectionId]) {
        let now = self.now;
        let sim_node = self.nodes.get_mut(&id).unwrap();
        for conn in conns {
            let Some(source) = sim_node.sources.get_mut(conn) else {
                continue;
            };
            while source.offset < source.data.len() {
                let end = (source.offset + WRITE_CHUNK).min(source.data.len());
                match sim_node
                    .node
                    .write(now, *conn, &source.data[source.offset..end])
                {
                    Ok(n) if n > 0 => source.offset += n,
                    _ => break,
                }
            }
            if source.offset == source.data.len() && source.close_when_done {
                source.close_when_done = false;
                let _ = sim_node.node.close(now, *conn);
            }
        }
    }

    /// The earliest wake-up: a queued frame or a node timer.
    fn next_wakeup(&self) -> Option<Instant> {
        let frame = self.queue.peek().map(|Reverse((at, ..))| *at);
        let timers = self.nodes.values().filter_map(|n| n.node.poll_timeout());
        frame.into_iter().chain(timers).min()
    }

    /// Advances the clock to the next wake-up and handles it; `false` when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_wakeup() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        while let Some(Reverse((at, ..))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, to, from, bytes)) = self.queue.pop().unwrap();
            if self.capture {
                self.delivered.push((from, to, bytes.len()));
            }
            let Some(sim_node) = self.nodes.get_mut(&to) else {
                continue;
            };
            let input = Input::Frame {
                path: path(from),
                bytes,
                relay_sender: None,
            };
            if let Err(error) = sim_node.node.handle_input(now, input) {
                sim_node.frame_errors.push(error);
            }
            self.drain(to);
        }
        let due: Vec<u32> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.node.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.node(id).handle_input(now, Input::Tick).unwrap();
            self.drain(id);
        }
        true
    }

    /// Steps until `done` holds (returns `true`) or `limit` of simulated time passed.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let end = self.now + limit;
        for _ in 0..MAX_STEPS {
            if done(self) {
                return true;
            }
            if self.next_wakeup().is_none_or(|t| t > end) {
                self.now = self.now.max(end);
                return done(self);
            }
            self.step();
        }
        panic!("simulation did not settle within {MAX_STEPS} steps");
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Whether node `id` produced an event matching `f`.
    pub fn saw(&self, id: u32, f: impl Fn(&Event) -> bool) -> bool {
        self.nodes[&id].events.iter().any(f)
    }
}

/// A default configuration with the private-node gate off (most scenarios are about
/// something else).
pub fn public_config() -> NodeConfig {
    NodeConfig {
        private: false,
        ..NodeConfig::default()
    }
}
