// Runs the Worker in test/worker inside workerd (wrangler's local runtime, loopback only) and
// checks that two in-Worker peers completed the key exchange and the encrypted round trip.
// Self-terminating: the runtime is disposed in `after`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// No telemetry and no Cloudflare API calls from the local runtime.
process.env.WRANGLER_SEND_METRICS = "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";

const { unstable_startWorker } = await import("wrangler");
const here = dirname(fileURLToPath(import.meta.url));
let worker;

before(async () => {
  worker = await unstable_startWorker({
    config: join(here, "wrangler.toml"),
    dev: { server: { hostname: "127.0.0.1", port: 0 }, inspector: false, watch: false },
  });
  await worker.ready;
});

after(async () => {
  await worker?.dispose();
});

test("two peers inside workerd exchange keys and encrypted packets", async () => {
  const response = await worker.fetch("http://127.0.0.1/");
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  assert.equal(body.ok, true);
  const r = body.report;
  assert.equal(r.classify, "PILS");
  assert.deepEqual(r.atB, { verdict: "deliver", text: "hello from A" });
  assert.equal(r.replay, "replay");
  assert.deepEqual(r.atA, { verdict: "deliver", text: "hello from B" });
  assert.equal(r.forged, "auth_failed");
  assert.ok(r.fragments >= 2, `fragments: ${r.fragments}`);
  assert.deepEqual(r.big, { verdict: "deliver", length: 3000 });
});

test("two Node engines inside workerd exchange keys, echo a stream and trade messages", async () => {
  const response = await worker.fetch("http://127.0.0.1/");
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  assert.deepEqual(body.nodes, {
    sessions: [true, true],
    echo: "hello, echo",
    datagramAtB: "datagram from A",
    datagramAtA: "datagram from B",
    acked: { ok: true, len: "hello exchange".length },
  });
});
