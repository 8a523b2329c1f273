// Two peers, one process: PILA key exchange, then an encrypted packet each way.
// Run after `make wasm`: node pilot-wasm/examples/handshake.mjs
import {
  Identity, TunnelKey, buildPila, handlePila, encodePacket, decodePacket, isPilotError,
} from "@pilot-workers/pilot-wasm";

const now = () => performance.now(); // any monotonic clock in milliseconds

// Each node has a long-term Ed25519 identity (registered with the registry) and a fresh
// X25519 tunnel key per process start.
const alice = { node: 0x0001_0001, identity: Identity.generate(), tunnel: TunnelKey.generate() };
const bob = { node: 0x0001_0002, identity: Identity.generate(), tunnel: TunnelKey.generate() };

// Key exchange: send your PILA; verify the peer's against the key the registry holds for it.
const pilaFromAlice = buildPila(alice.identity, alice.node, alice.tunnel.publicKey);
const pilaFromBob = buildPila(bob.identity, bob.node, bob.tunnel.publicKey);
const atBob = handlePila(pilaFromAlice, alice.identity.publicKey, bob.tunnel, bob.node, now()).session;
const atAlice = handlePila(pilaFromBob, bob.identity.publicKey, alice.tunnel, alice.node, now()).session;

// Alice sends a datagram to Bob's port 1000 as a PILS frame.
const packet = encodePacket({
  protocol: 2, // datagram
  src: { network: 1, node: alice.node },
  dst: { network: 1, node: bob.node },
  srcPort: 1000,
  dstPort: 1000,
  payload: new TextEncoder().encode("hello, Bob"),
});
const frame = atAlice.seal(packet);

const opened = atBob.open(frame, now());
console.log(opened.verdict, new TextDecoder().decode(decodePacket(opened.packet).payload));
// -> deliver hello, Bob

// The same frame again is a replay: no plaintext comes out.
console.log(atBob.open(frame, now()).verdict); // -> replay

// Errors carry a stable code.
try {
  atBob.open(frame.subarray(0, 10), now());
} catch (error) {
  if (!isPilotError(error)) throw error;
  console.log(error.code); // -> PILS_TOO_SHORT
}
