//! Two Pilot peers in one process: authenticated key exchange, then encrypted packets.
//!
//! Each peer has a fresh Ed25519 identity (what the registry knows it by) and a fresh X25519
//! tunnel key. They swap PILA frames, verify them against the "registry" key, derive the
//! shared AES-256-GCM session and exchange PILS frames; a forged frame, a replayed frame and a
//! frame too large for one datagram (PILF fragments) show the defences along the way.
//!
//! Run with `make demo` or `cargo run -p pilot-core --example tunnel`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;

use pilot_core::addr::{ports, Addr};
use pilot_core::crypto::{derive_session_key, Identity, OsRng, SendState, SessionKey, TunnelKey};
use pilot_core::frame::fragment::{Fragmenter, Reassembler, Split};
use pilot_core::frame::pila::{Pila, Trailer};
use pilot_core::frame::{classify, pils};
use pilot_core::packet::{Flags, Header, PacketRef, Protocol};
use pilot_core::replay::{GateVerdict, ReceiveState};
use pilot_core::time::Instant;

/// How much of a payload the transcript shows.
const PREVIEW_CHARS: usize = 40;

/// One side of the demo: identity, tunnel key, and (after the exchange) its session.
struct Peer {
    name: &'static str,
    addr: Addr,
    identity: Identity,
    tunnel_key: TunnelKey,
    session: Option<Session>,
}

struct Session {
    key: SessionKey,
    send: SendState,
    recv: ReceiveState,
}

impl Peer {
    fn new(name: &'static str, node: u32) -> Self {
        Self {
            name,
            addr: Addr::new(0, node),
            identity: Identity::generate(&mut OsRng),
            tunnel_key: TunnelKey::generate(&mut OsRng),
            session: None,
        }
    }

    fn pila(&self) -> Vec<u8> {
        let pila = Pila::sign(
            &self.identity,
            self.addr.node,
            &self.tunnel_key.public_key(),
            Trailer::NONE,
        );
        let mut frame = Vec::new();
        pila.encode(&mut frame);
        frame
    }

    /// spec §6.2: verify against the registry's key, then derive and install the session.
    fn accept_pila(&mut self, frame: &[u8], registry: &HashMap<u32, [u8; 32]>, now: Instant) {
        let pila = Pila::decode(frame).expect("well-formed PILA");
        let registered = registry.get(&pila.node).expect("sender is registered");
        pila.verify(registered).expect("PILA signature verifies");
        let key = derive_session_key(&self.tunnel_key, &pila.x25519_public).expect("contributory");
        self.session = Some(Session {
            key,
            send: SendState::new(&mut OsRng),
            recv: ReceiveState::new(now),
        });
        println!(
            "  {}: PILA from {} verified against the registry key; session installed",
            self.name,
            Addr::new(0, pila.node)
        );
    }

    fn seal(&mut self, to: Addr, dst_port: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            flags: Flags::ACK,
            protocol: Protocol::Stream,
            src: self.addr,
            dst: to,
            src_port: ports::EPHEMERAL_START,
            dst_port,
            seq,
            ack: 1,
            window: 512,
        };
        let mut packet = Vec::new();
        PacketRef { header, payload }
            .encode(&mut packet)
            .expect("payload fits");
        let session = self.session.as_mut().expect("session installed");
        let mut frame = Vec::new();
        pils::seal(
            &session.key,
            &mut session.send,
            self.addr.node,
            &packet,
            &mut frame,
        )
        .expect("sealed");
        frame
    }

    /// Opens a PILS frame and runs the replay check; prints what happened and returns whether
    /// the packet was delivered.
    fn receive(&mut self, mut frame: Vec<u8>, now: Instant) -> bool {
        let session = self.session.as_mut().expect("session installed");
        match pils::open(&session.key, &mut frame) {
            Ok(opened) => {
                let verdict = session.recv.on_authenticated(opened.nonce, now);
                if !verdict.is_deliver() {
                    println!("  {}: authenticated but refused: {verdict:?}", self.name);
                    return false;
                }
                let packet = PacketRef::decode(opened.packet).expect("valid packet");
                let text = String::from_utf8_lossy(packet.payload);
                let preview: String = text.chars().take(PREVIEW_CHARS).collect();
                let more = if text.chars().count() > PREVIEW_CHARS {
                    "…"
                } else {
                    ""
                };
                println!(
                    "  {}: delivered {} -> port {}, seq {}, {} bytes {preview:?}{more}",
                    self.name,
                    packet.header.src,
                    packet.header.dst_port,
                    packet.header.seq,
                    packet.payload.len(),
                );
                true
            }
            Err(e) => {
                let newest_max =
                    |recv: &ReceiveState| recv.epochs().newest_window().map_or(0, |w| w.max());
                let before = newest_max(&session.recv);
                let gate = session.recv.on_auth_failure(now);
                let after = newest_max(&session.recv);
                let keep = matches!(gate, GateVerdict::Keep);
                println!(
                    "  {}: dropped ({e}); replay window max {before} -> {after}, session kept: {keep}",
                    self.name
                );
                false
            }
        }
    }
}

fn show(label: &str, frame: &[u8]) {
    let head: String = frame.iter().take(24).map(|b| format!("{b:02x}")).collect();
    println!(
        "{label}: {:?}, {} bytes: {head}…",
        classify(frame).expect("Pilot frame"),
        frame.len()
    );
}

fn main() {
    let mut a = Peer::new("A", 0x0000_1001);
    let mut b = Peer::new("B", 0x0000_1002);
    let registry: HashMap<u32, [u8; 32]> = [
        (a.addr.node, a.identity.public_key()),
        (b.addr.node, b.identity.public_key()),
    ]
    .into();
    println!(
        "A is {}, B is {} (Ed25519 keys registered)\n",
        a.addr, b.addr
    );

    println!("1. key exchange (spec §3.5, §6.2)");
    let pila_a = a.pila();
    show("A -> B", &pila_a);
    b.accept_pila(&pila_a, &registry, Instant::ZERO);
    let pila_b = b.pila();
    show("B -> A", &pila_b);
    a.accept_pila(&pila_b, &registry, Instant::ZERO);

    println!("\n2. encrypted packets (spec §3.3, §4)");
    let hello = a.seal(b.addr, ports::ECHO, 1, b"hello from A");
    show("A -> B", &hello);
    assert!(b.receive(hello.clone(), Instant::from_millis(10)));
    let reply = b.seal(a.addr, ports::EPHEMERAL_START, 1, b"hello from B");
    show("B -> A", &reply);
    assert!(a.receive(reply, Instant::from_millis(20)));

    println!("\n3. a replayed frame and a forged one (spec §5.1, §5.2)");
    show("replay of A's first frame", &hello);
    assert!(
        !b.receive(hello, Instant::from_millis(30)),
        "replay delivered"
    );
    let mut forged = a.seal(b.addr, ports::ECHO, 2, b"forged");
    forged[8..20].copy_from_slice(&[0xff; 12]); // claim counter 2^64-1 under a new prefix
    show("forged frame", &forged);
    assert!(
        !b.receive(forged, Instant::from_millis(40)),
        "forgery delivered"
    );
    let after = a.seal(b.addr, ports::ECHO, 3, b"still flowing after the forgery");
    assert!(b.receive(after, Instant::from_millis(50)));

    println!("\n4. a frame larger than one datagram: PILF fragments (spec §3.8)");
    let big = a.seal(b.addr, ports::ECHO, 4, &[b'x'; 3000]);
    let mut fragmenter = Fragmenter::new(7);
    let mut reassembler: Reassembler<&str> = Reassembler::new();
    let Split::Fragments(fragments) = fragmenter.split(a.addr.node, &big).expect("fits") else {
        unreachable!("3000-byte payload needs fragments")
    };
    println!(
        "A -> B: {} bytes as {} PILF fragments",
        big.len(),
        fragments.fragment_count()
    );
    let mut whole = None;
    for fragment in fragments {
        whole = reassembler
            .push("udp:A", None, &fragment, Instant::from_millis(60))
            .expect("valid fragment");
    }
    let whole = whole.expect("reassembled");
    println!("  B: reassembled {} bytes", whole.len());
    assert!(b.receive(whole, Instant::from_millis(61)));

    println!("\ndemo complete: keys exchanged, packets delivered once, forgery and replay refused");
}
