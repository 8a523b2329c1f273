// Two Pilot nodes in one process: the whole engine (`Node`) driven by a minimal event loop.
// A real driver does the same around sockets: deliver received frames with handleFrame,
// answer needPeerKey from the registry, and sleep until the `timeout` pollOutput reports.
import { Node } from "@pilot-workers/pilot-wasm";

const nodes = new Map([
  [1, new Node({ network: 1, node: 1 })], // fresh identity, CSPRNG from crypto.getRandomValues
  [2, new Node("1:0001.0000.0002")],
]);
// The registry: each node's Ed25519 public key.
const registry = new Map([...nodes].map(([id, node]) => [id, node.identityPublicKey]));
const wire = []; // frames in flight: path IDs here are simply the peer's node ID
let now = 0; // milliseconds on any monotonic clock
const timeouts = new Map();

function drain(id, node) {
  for (let out; (out = node.pollOutput()) !== null; ) {
    if (out.kind === "timeout") return timeouts.set(id, out.at);
    if (out.kind === "transmit") wire.push({ to: out.path, from: id, bytes: out.bytes });
    else onEvent(id, node, out.event);
  }
  timeouts.delete(id);
}

function onEvent(id, node, event) {
  if (event.type === "needPeerKey") node.providePeerKey(now, event.node, registry.get(event.node) ?? null);
  if (event.type === "streamReadable") {
    const bytes = node.read(now, event.conn);
    if (bytes?.length) console.log(`node ${id} read: ${new TextDecoder().decode(bytes)}`);
  }
  if (event.type === "messageAcked") console.log(`node ${id}: data exchange acked ${event.len} bytes`);
}

function run(untilMs) {
  for (;;) {
    for (const [id, node] of nodes) drain(id, node);
    const frame = wire.shift();
    if (frame) {
      nodes.get(frame.to).handleFrame(now, frame.from, frame.bytes);
      continue;
    }
    const next = Math.min(...timeouts.values());
    if (!(next <= untilMs)) return;
    now = Math.max(now, next);
    for (const [id, node] of nodes) if (timeouts.get(id) <= now) node.tick(now);
  }
}

const [a, b] = [nodes.get(1), nodes.get(2)];
a.setTrusted(2, true); // both nodes are private (the default): admit each other
b.setTrusted(1, true);
a.addPeerPath(now, 2, 2); // key exchange with node 2 on path 2
run(now + 100);
console.log("session:", a.hasSession(2) && b.hasSession(1));

const conn = a.dial(now, 2, 7); // node 2's echo service
a.write(now, conn, new TextEncoder().encode("hello, echo"));
a.sendMessage(now, 2, "text", new TextEncoder().encode("hello")); // data exchange, port 1001
run(now + 1000);
