// Cross-implementation: replays the native transcript (examples/transcript.rs, recorded with
// fixed seeds by `make test-wasm`) through the wasm module and compares every byte and
// verdict. Path: $PILOT_TRANSCRIPT, else test/out/transcript.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

import * as pw from "@pilot-workers/pilot-wasm";
import { REPO_ROOT, hex, unhex } from "./helpers.mjs";

const path = resolve(REPO_ROOT, "pilot-wasm", process.env.PILOT_TRANSCRIPT ?? "test/out/transcript.json");
const transcript = JSON.parse(readFileSync(path, "utf8"));
const [peerA, peerB] = transcript.peers;

function identityOf(peer) {
  return pw.Identity.fromSeed(unhex(peer.ed25519_seed));
}

function tunnelOf(peer) {
  return pw.TunnelKey.fromPrivate(unhex(peer.x25519_private));
}

/** `me` handles `them`'s PILA as recorded, installing the session at 0 ms. */
function sessionAt(me, them) {
  return pw.handlePila(unhex(them.pila_hex), unhex(them.ed25519_public), tunnelOf(me), me.node, 0, unhex(me.send_prefix))
    .session;
}

test("keys and PILA frames match the native ones", () => {
  for (const peer of transcript.peers) {
    assert.equal(hex(identityOf(peer).publicKey), peer.ed25519_public);
    assert.equal(hex(tunnelOf(peer).publicKey), peer.x25519_public);
    assert.equal(hex(pw.buildPila(identityOf(peer), peer.node, tunnelOf(peer).publicKey)), peer.pila_hex);
  }
});

test("packets encode to the native bytes", () => {
  for (const p of transcript.packets) {
    const wire = pw.encodePacket({ ...p, payload: unhex(p.payload_hex) });
    assert.equal(hex(wire), p.wire_hex);
  }
});

test("sealed PILS frames match the native ones in both directions", () => {
  const at = { A: sessionAt(peerA, peerB), B: sessionAt(peerB, peerA) };
  for (const s of transcript.sealed) {
    const wire = unhex(transcript.packets[s.packet].wire_hex);
    assert.equal(hex(at[s.from].seal(wire)), s.frame_hex, `packet ${s.packet} from ${s.from}`);
  }
});

test("the scripted receive sequence gets the native verdicts", () => {
  const atB = sessionAt(peerB, peerA);
  for (const step of transcript.receive_at_b) {
    const result = atB.open(unhex(step.frame_hex), step.now_ms);
    assert.equal(result.verdict, step.verdict, step.what);
    assert.equal(result.reason ?? null, step.reason, step.what);
    assert.equal(result.counter === undefined ? null : String(result.counter), step.counter, step.what);
    assert.equal(result.packet === undefined ? null : hex(result.packet), step.packet_hex, step.what);
  }
});

test("PILF fragments match, and reassemble to the sealed frame", () => {
  const f = transcript.fragments;
  const frame = unhex(transcript.sealed[f.packet].frame_hex);
  const fragments = new pw.Fragmenter(f.seed).split(f.sender, frame);
  assert.deepEqual(fragments.map(hex), f.fragments_hex);

  const reassembler = new pw.Reassembler();
  const results = fragments.reverse().map((fragment) => reassembler.push("udp:test", undefined, fragment, 5));
  assert.deepEqual(results.slice(0, -1), Array(fragments.length - 1).fill(undefined));
  assert.equal(hex(results.at(-1)), hex(frame));
  assert.equal(reassembler.pendingGroups, 0);
});

test("TCP framing and the relay envelope match", () => {
  assert.equal(hex(pw.encodeTcpFrame(unhex(transcript.tcp.frame_hex))), transcript.tcp.tcp_hex);
  const r = transcript.relay;
  assert.equal(hex(pw.wrapRelay(r.sender, r.dest, unhex(transcript.tcp.frame_hex))), r.envelope_hex);
});
