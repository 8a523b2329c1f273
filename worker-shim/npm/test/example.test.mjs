// The example TypeScript Worker (worker-shim/examples/ts-worker), bundled by wrangler against
// this package, runs in workerd with a real PilotNode Durable Object. A local registry and
// relay run on 127.0.0.1 so the node can register; every process is stopped in `after`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startWorker, startWorld } from "./helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const example = join(here, "..", "..", "examples", "ts-worker");
/** Most /info polls while waiting for the registration, and the pause between them (ms). */
const REGISTER_POLLS = 120;
const REGISTER_POLL_PAUSE_MS = 250;
/** Ed25519 public keys are 32 bytes (spec §2). */
const PUBLIC_KEY_BYTES = 32;

let world;
let worker;

before(async () => {
  world = await startWorld();
  worker = await startWorker(join(example, "wrangler.toml"), {
    PILOT_RELAY_URL: world.relayUrl,
    PILOT_HOSTNAME: "",
  });
});

after(async () => {
  await worker?.dispose();
  world?.stop();
});

async function getInfo() {
  const response = await worker.fetch("http://127.0.0.1/info");
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text);
}

test("GET /info answers with the node's identity from the real PilotNode", async () => {
  const info = await getInfo();
  assert.equal(Buffer.from(info.public_key, "base64").length, PUBLIC_KEY_BYTES);
  assert.equal(info.transport, "relay");
  assert.ok(["registered", "not_ready"].includes(info.status), info.status);
  const again = await getInfo();
  assert.equal(again.public_key, info.public_key, "the identity is stable across requests");
});

test("the node registers through the relay and /info then shows its address", async () => {
  let info = await getInfo();
  for (let i = 0; i < REGISTER_POLLS && info.status !== "registered"; i++) {
    await new Promise((r) => setTimeout(r, REGISTER_POLL_PAUSE_MS));
    info = await getInfo();
  }
  assert.equal(info.status, "registered", JSON.stringify(info));
  assert.match(info.address, /^0:[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/);
  assert.ok(info.node_id > 0, `node_id ${info.node_id}`);
  assert.match(info.endpoint, /^127\.0\.0\.1:\d+$/);
});

test("an unknown route answers 404 with the routes it has", async () => {
  const response = await worker.fetch("http://127.0.0.1/nope");
  assert.equal(response.status, 404);
  assert.deepEqual((await response.json()).routes, ["GET /info", "POST /ping?peer=<address>"]);
});
