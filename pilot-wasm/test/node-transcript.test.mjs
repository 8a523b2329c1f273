// Cross-implementation test of the engine: examples/node_transcript.rs ran two native Nodes
// with fixed identity and ChaCha20 seeds through a scripted scenario and recorded every
// output (`make test-wasm` writes it); the same seeds and script through two wasm Nodes must
// give the same transmitted bytes, events and command results, in the same order.
// Path: $PILOT_NODE_TRANSCRIPT, else test/out/node-transcript.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

import * as pw from "@pilot-workers/pilot-wasm";
import { REPO_ROOT, unhex } from "./helpers.mjs";
import { Sim, scenario } from "./worker/src/node-sim.js";

const path = resolve(
  REPO_ROOT,
  "pilot-wasm",
  process.env.PILOT_NODE_TRANSCRIPT ?? "test/out/node-transcript.json",
);
const transcript = JSON.parse(readFileSync(path, "utf8"));
const [a, b] = transcript.nodes;

function replay() {
  const sim = new Sim(
    pw,
    transcript.nodes.map((n) => ({ id: n.id, identitySeed: unhex(n.identity_seed), rngSeed: unhex(n.rng_seed) })),
    { start: transcript.start_ms },
  );
  sim.run(scenario(a.id, b.id), transcript.until_ms);
  return sim;
}

test("seeded wasm nodes draw the native tunnel keys", () => {
  const sim = replay();
  for (const n of transcript.nodes) {
    assert.equal(Buffer.from(sim.get(n.id).node.tunnelPublicKey).toString("hex"), n.tunnel_public);
  }
});

test("the scripted run transmits the native bytes and events, in order", () => {
  const sim = replay();
  assert.ok(transcript.log.filter((l) => l.kind === "transmit").length >= 20, "a non-trivial transcript");
  assert.equal(sim.log.length, transcript.log.length, "same number of outputs");
  transcript.log.forEach((want, i) => assert.deepEqual(sim.log[i], want, `output ${i}`));
  assert.deepEqual(sim.results, transcript.results);
  assert.equal(sim.now, transcript.end_ms);
});
