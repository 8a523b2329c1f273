// The Node engine class: two wasm Nodes in this process, wired by the driver loop of
// worker/src/node-sim.js (fake clock, in-memory network, registry table).
import { test } from "node:test";
import assert from "node:assert/strict";

import * as pw from "@pilot-workers/pilot-wasm";
import { Sim, scenario } from "./worker/src/node-sim.js";
import { codeOf } from "./helpers.mjs";

const A = 0x0a0a;
const B = 0x0b0b;
const text = (bytes) => new TextDecoder().decode(bytes);
const eventsOf = (entry, type) => entry.events.filter((e) => e.type === type);

function runScenario() {
  // Fresh identities and CSPRNG seeds from crypto.getRandomValues.
  const sim = new Sim(pw, [{ id: A }, { id: B }]);
  sim.run(scenario(A, B), 60_000);
  return { sim, a: sim.get(A), b: sim.get(B) };
}

test("two nodes exchange keys after a registry lookup on each side", () => {
  const { a, b } = runScenario();
  assert.ok(a.node.hasSession(B) && b.node.hasSession(A));
  assert.deepEqual(eventsOf(a, "needPeerKey").map((e) => e.node), [B]);
  assert.deepEqual(eventsOf(b, "needPeerKey").map((e) => e.node), [A]);
  assert.deepEqual(eventsOf(a, "peerSessionUp"), [{ type: "peerSessionUp", node: B, rekey: false }]);
  assert.deepEqual(eventsOf(b, "peerSessionUp"), [{ type: "peerSessionUp", node: A, rekey: false }]);
});

test("a stream to echo (port 7) comes back byte for byte, then closes", () => {
  const { sim, a } = runScenario();
  const conn = sim.results[5];
  assert.equal(typeof conn, "number");
  assert.equal(sim.results[6], "hello, echo".length, "write took every byte");
  assert.deepEqual(eventsOf(a, "streamOpened"), [{ type: "streamOpened", conn }]);
  assert.equal(text(a.sinks.get(conn)), "hello, echo");
  assert.ok(a.eof.has(conn), "echo closed its side after our FIN");
  assert.ok(eventsOf(a, "streamClosed").some((e) => e.conn === conn));
});

test("data exchange: the peer receives the TEXT frame and we get ACK TEXT <n> bytes", () => {
  const { sim, a, b } = runScenario();
  const [received] = eventsOf(b, "messageReceived");
  assert.equal(received.frameType, "text");
  assert.equal(text(received.payload), "hello exchange");
  assert.equal(received.from.node, A);
  const [acked] = eventsOf(a, "messageAcked");
  assert.equal(acked.conn, sim.results[9]);
  assert.equal(acked.ok, true);
  assert.equal(acked.frameType, "text");
  assert.equal(acked.len, "hello exchange".length);
  assert.equal(acked.peer.node, B);
});

test("datagrams go both ways to listened ports, and a ping is answered", () => {
  const { a, b } = runScenario();
  const [atB] = eventsOf(b, "datagram");
  assert.equal(text(atB.payload), "datagram from A");
  assert.deepEqual([atB.from.node, atB.dstPort], [A, 5000]);
  assert.ok(atB.srcPort >= 49152, `an ephemeral source port: ${atB.srcPort}`);
  const [atA] = eventsOf(a, "datagram");
  assert.equal(text(atA.payload), "datagram from B");
  assert.equal(atA.from.node, B);
  const [pong] = eventsOf(a, "pong");
  assert.equal(text(pong.payload), "abc");
  assert.equal(pong.from.node, B);
});

test("options default to the engine's values and reject bad types", () => {
  const node = new pw.Node("1:0001.0000.0A0A", new Uint8Array(32).fill(1), undefined);
  assert.equal(node.address.node, A);
  assert.equal(node.identityPublicKey.length, 32);
  assert.equal(node.pollOutput(), null, "nothing scheduled before the first input");
  // Built-in services listen by default: port 7 is taken.
  assert.equal(codeOf(() => node.listen(7)), "NODE_PORT_IN_USE");
  // With echo disabled, port 7 is free.
  const plain = new pw.Node({ network: 1, node: A }, undefined, { echo: false });
  plain.listen(7);
  assert.equal(codeOf(() => new pw.Node({ network: 1, node: A }, undefined, { private: "yes" })), "ARG_RANGE");
  assert.equal(codeOf(() => new pw.Node({ network: 1, node: A }, new Uint8Array(31))), "ARG_LENGTH");
  assert.equal(codeOf(() => new pw.Node("not an address")), "ADDR_MISSING_COLON");
});

test("commands throw typed PilotErrors with stable codes", () => {
  const node = new pw.Node({ network: 1, node: A });
  assert.equal(codeOf(() => node.write(0, 42, new Uint8Array([1]))), "NODE_UNKNOWN_CONNECTION");
  assert.equal(codeOf(() => node.listen(0)), "NODE_INVALID_PORT");
  assert.equal(codeOf(() => node.dial(0, A, 7)), "NODE_OWN_ADDRESS");
  assert.equal(codeOf(() => node.sendTo(0, B, 5000, new Uint8Array(0))), "NODE_EMPTY_PAYLOAD");
  assert.equal(codeOf(() => node.tick(-1)), "ARG_INVALID_TIME");
  assert.equal(codeOf(() => node.sendMessage(0, B, "carrier-pigeon", new Uint8Array([1]))), "ARG_RANGE");
  assert.equal(codeOf(() => node.providePeerKey(0, B, new Uint8Array(5))), "ARG_LENGTH");
});

test("a dropped frame is reported by its code, not thrown", () => {
  const node = new pw.Node({ network: 1, node: A });
  assert.equal(node.handleFrame(0, 1, new Uint8Array([1, 2, 3])), "NODE_UNSUPPORTED_FRAME");
});
