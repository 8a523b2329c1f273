// `make bench-wasm`: PILA handshake and PILS 1 KiB seal/open in wasm under Node, printed next
// to pilot-core's native criterion medians from the same run (benches/crypto.rs).
// Usage: node bench/bench.mjs <criterion dir>   (the criterion dir is optional)
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import * as pw from "@pilot-workers/pilot-wasm";

const PACKET_LEN_BYTES = 1024;
const NODE = 0x0001_2345;
const BATCH_TARGET_NS = 50e6;
const BATCHES = 15;

/** Median nanoseconds per call of `fn`, over BATCHES batches of calibrated size. */
function measure(fn) {
  let iterations = 1;
  for (;;) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i += 1) fn(i);
    const elapsed = Number(process.hrtime.bigint() - start);
    if (elapsed > BATCH_TARGET_NS / 4) {
      iterations = Math.max(1, Math.round((iterations * BATCH_TARGET_NS) / elapsed));
      break;
    }
    iterations *= 2;
  }
  const perCall = [];
  for (let b = 0; b < BATCHES; b += 1) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i += 1) fn(i);
    perCall.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  perCall.sort((x, y) => x - y);
  return perCall[Math.floor(perCall.length / 2)];
}

/** Native median in ns from criterion's estimates, or undefined when not run. */
function native(dir, id) {
  const file = dir && join(dir, id, "new", "estimates.json");
  if (!file || !existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, "utf8")).median.point_estimate;
}

const identity = pw.Identity.generate();
const tunnel = pw.TunnelKey.generate();
const peerTunnel = pw.TunnelKey.generate();
const x25519 = tunnel.publicKey;
const frame = pw.buildPila(identity, NODE, x25519);
const registryKey = identity.publicKey;

const wasm = {};
wasm.build = measure(() => pw.buildPila(identity, NODE, x25519));
wasm.handle = measure(() => pw.handlePila(frame, registryKey, peerTunnel, 7, 0).session.free());
wasm.handshake = measure(() => {
  const own = pw.buildPila(identity, NODE, x25519);
  pw.handlePila(own, registryKey, peerTunnel, 7, 0).session.free();
});

const aesKey = new Uint8Array(32).fill(0x42);
const packet = new Uint8Array(PACKET_LEN_BYTES).fill(0xa5);
const sealer = pw.Session.fromKey(aesKey, NODE, 7, 0, Uint8Array.of(1, 2, 3, 4));
wasm.seal = measure(() => sealer.seal(packet));
// Every frame is opened once, as on the wire: a fresh receiver judges distinct counters.
const frames = [];
const source = pw.Session.fromKey(aesKey, NODE, 7, 0, Uint8Array.of(5, 6, 7, 8));
for (let i = 0; i < 200_000; i += 1) frames.push(source.seal(packet));
const receiver = pw.Session.fromKey(aesKey, 7, NODE, 0, Uint8Array.of(9, 9, 9, 9));
let opened = 0;
wasm.open = measure(() => {
  const result = receiver.open(frames[opened % frames.length], 0);
  opened += 1;
  return result;
});

const dir = process.argv[2];
const nat = {
  build: native(dir, "pila_build"),
  handle:
    native(dir, "pila_verify") !== undefined && native(dir, "x25519_hkdf_derive") !== undefined
      ? native(dir, "pila_verify") + native(dir, "x25519_hkdf_derive")
      : undefined,
  seal: native(dir, "pils_1KiB/seal"),
  open: native(dir, "pils_1KiB/open"),
};
nat.handshake = nat.build !== undefined && nat.handle !== undefined ? nat.build + nat.handle : undefined;

const us = (ns) => (ns === undefined ? "-" : `${(ns / 1e3).toFixed(1)} µs`);
const mbps = (ns) => (ns === undefined ? "" : ` (${(PACKET_LEN_BYTES / ns * 1e3).toFixed(0)} MB/s)`);
const rows = [
  ["PILA build", "build", false],
  ["PILA verify + derive", "handle", false],
  ["handshake (build+verify+derive)", "handshake", false],
  ["PILS seal 1 KiB", "seal", true],
  ["PILS open 1 KiB", "open", true],
];
console.log(`pilot-wasm ${pw.version()} under Node ${process.version}; native = criterion median`);
console.log("operation".padEnd(34) + "wasm".padEnd(26) + "native".padEnd(26) + "wasm/native");
for (const [label, key, throughput] of rows) {
  const w = wasm[key];
  const n = nat[key];
  const ratio = n === undefined ? "-" : `${(w / n).toFixed(2)}x`;
  console.log(
    label.padEnd(34) +
      (us(w) + (throughput ? mbps(w) : "")).padEnd(26) +
      (us(n) + (throughput ? mbps(n) : "")).padEnd(26) +
      ratio,
  );
}
if (dir === undefined) console.log("(no criterion dir given: native column empty)");
