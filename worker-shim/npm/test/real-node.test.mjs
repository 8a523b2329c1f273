// PilotClient from the built package against the real PilotNode in workerd, through a local
// registry and relay, with a native public pilot-peer on the other side (test/real). All on
// 127.0.0.1; every process is stopped in `after`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { b64, startWorker, startWorld } from "./helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
/** Most polls of `info` while waiting for the registration, and the pause between them (ms). */
const REGISTER_POLLS = 120;
const REGISTER_POLL_PAUSE_MS = 250;
/** The native peer's echo service (spec §10). */
const ECHO_PORT = 7;

let world;
let worker;
let ours;

before(async () => {
  world = await startWorld({ peer: true });
  worker = await startWorker(join(here, "real", "wrangler.toml"), { PILOT_RELAY_URL: world.relayUrl });
  ours = await waitRegistered();
});

after(async () => {
  await worker?.dispose();
  world?.stop();
});

/** Runs `steps` on the node's client; returns {results, error}. */
async function run(steps) {
  const response = await worker.fetch("http://127.0.0.1/run", {
    method: "POST",
    body: JSON.stringify({ steps }),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text);
}

async function waitRegistered() {
  for (let i = 0; i < REGISTER_POLLS; i++) {
    const { results, error } = await run([{ op: "client.info" }]);
    if (error === null && results[0].registered) return results[0];
    await new Promise((r) => setTimeout(r, REGISTER_POLL_PAUSE_MS));
  }
  throw new Error("the PilotNode did not register through the local relay");
}

test("info: the node registered with an address, a 32-byte key and the relay's endpoint", () => {
  assert.match(ours.address, /^0:[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/);
  assert.ok(ours.nodeId > 0);
  assert.equal(Buffer.from(ours.publicKey.bytes, "base64").length, 32);
  assert.equal(ours.transport, "relay");
  assert.match(ours.endpoint, /^127\.0\.0\.1:\d+$/);
});

test("setHostname then resolveHostname gives our own address back", async () => {
  const { results, error } = await run([
    { op: "client.setHostname", args: ["ts-real-node"] },
    { op: "client.resolveHostname", args: ["ts-real-node"] },
  ]);
  assert.equal(error, null, JSON.stringify(error));
  assert.deepEqual(results, ["ts-real-node", ours.address]);
});

test("ping reaches the native peer", async () => {
  const { results, error } = await run([
    { op: "client.ping", args: [world.peerAddress, { timeoutMs: 15000 }] },
  ]);
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(typeof results[0], "number");
  assert.ok(results[0] >= 0, `rtt ${results[0]}`);
});

test("a stream to the peer's echo port returns what was written; close ends it", async () => {
  const message = "hello through the relay";
  const { results, error } = await run([
    { op: "client.dial", args: [world.peerAddress, ECHO_PORT, { timeoutMs: 15000 }], save: "conn" },
    { op: "conn.write", args: [message] },
    { op: "conn.read", args: [{ timeoutMs: 10000 }] },
    { op: "conn.close" },
  ]);
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(results[0].peer, world.peerAddress);
  assert.equal(results[0].peerPort, ECHO_PORT);
  assert.equal(results[1], message.length);
  assert.deepEqual(results[2], { bytes: b64(message) });
});

test("sendMessage gets the data exchange service's ACK", async () => {
  const { results, error } = await run([
    { op: "client.sendMessage", args: [world.peerAddress, "text", "hello", { timeoutMs: 15000 }] },
  ]);
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(results[0], "ACK TEXT 5 bytes");
});

test("a write after close rejects with a PilotError from the node", async () => {
  const { error } = await run([
    { op: "client.dial", args: [world.peerAddress, ECHO_PORT, { timeoutMs: 15000 }], save: "conn" },
    { op: "conn.close" },
    { op: "conn.write", args: ["too late"] },
  ]);
  assert.equal(error?.pilot, true, JSON.stringify(error));
  assert.equal(error.code, "connection_closed");
  assert.equal(error.status, 410);
  assert.ok(error.hint.length > 0);
});

test("subscribe at the peer's broker, publish there, and next returns the event", async () => {
  const { results, error } = await run([
    { op: "client.subscribe", args: [world.peerAddress, "ts-news"], save: "sub" },
    { op: "client.publishEvent", args: [world.peerAddress, "ts-news", "flash", { timeoutMs: 15000 }] },
    { op: "sub.next", args: [{ timeoutMs: 15000 }] },
  ]);
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(results[0].topic, "ts-news");
  assert.deepEqual(results[2], { topic: "ts-news", data: { bytes: b64("flash") } });
});
