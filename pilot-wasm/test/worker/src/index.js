// Two Pilot peers inside one Worker: each builds its PILA, verifies the other's against the
// Ed25519 key a registry would hold, derives the session, and they exchange encrypted
// packets (plus a replay, a forgery and a fragmented frame). Then two `Node` engines run the
// tests' scenario (key exchange, echo stream, datagrams, data exchange) through the shared
// driver loop. Responds with a JSON report.
import * as pw from "@pilot-workers/pilot-wasm";
import { Sim, scenario } from "./node-sim.js";

const NETWORK = 1;

function peer(node) {
  return { node, identity: pw.Identity.generate(), tunnel: pw.TunnelKey.generate() };
}

function datagram(from, to, text) {
  return pw.encodePacket({
    protocol: 2,
    src: { network: NETWORK, node: from.node },
    dst: { network: NETWORK, node: to.node },
    srcPort: 1000,
    dstPort: 1000,
    payload: new TextEncoder().encode(text),
  });
}

function run(now) {
  const a = peer(0x0001_0001);
  const b = peer(0x0001_0002);
  const pilaA = pw.buildPila(a.identity, a.node, a.tunnel.publicKey);
  const pilaB = pw.buildPila(b.identity, b.node, b.tunnel.publicKey);

  // Each side verifies the other's PILA against the registry's key for that node.
  const atA = pw.handlePila(pilaB, b.identity.publicKey, a.tunnel, a.node, now).session;
  const atB = pw.handlePila(pilaA, a.identity.publicKey, b.tunnel, b.node, now).session;

  const toB = atA.seal(datagram(a, b, "hello from A"));
  const atBOpened = atB.open(toB, now + 1);
  const replayed = atB.open(toB, now + 2);
  const reply = atB.seal(datagram(b, a, "hello from B"));
  const atAOpened = atA.open(reply, now + 3);

  const forged = reply.slice();
  forged[forged.length - 1] ^= 1;
  const forgedOpened = atA.open(forged, now + 4);

  // A 3000-byte payload travels as PILF fragments and is reassembled before opening.
  const big = atA.seal(datagram(a, b, "x".repeat(3000)));
  const fragments = new pw.Fragmenter().split(a.node, big);
  const reassembler = new pw.Reassembler();
  let whole;
  for (const fragment of fragments) whole = reassembler.push("udp:peer-a", undefined, fragment, now + 5) ?? whole;
  const bigOpened = atB.open(whole, now + 6);

  const text = (opened) => new TextDecoder().decode(pw.decodePacket(opened.packet).payload);
  return {
    classify: pw.classifyFrame(toB).kind,
    atB: { verdict: atBOpened.verdict, text: text(atBOpened) },
    replay: replayed.verdict,
    atA: { verdict: atAOpened.verdict, text: text(atAOpened) },
    forged: forgedOpened.verdict,
    fragments: fragments.length,
    big: { verdict: bigOpened.verdict, length: pw.decodePacket(bigOpened.packet).payload.length },
  };
}

/** Two `Node`s with fresh identities: what each saw of the scenario. */
function runNodes() {
  const [a, b] = [0x0a0a, 0x0b0b];
  const sim = new Sim(pw, [{ id: a }, { id: b }]);
  sim.run(scenario(a, b), 60_000);
  const text = (bytes) => (bytes === undefined ? null : new TextDecoder().decode(bytes));
  const find = (id, type) => sim.get(id).events.find((e) => e.type === type);
  const echoConn = sim.results[5];
  return {
    sessions: [sim.get(a).node.hasSession(b), sim.get(b).node.hasSession(a)],
    echo: text(sim.get(a).sinks.get(echoConn)),
    datagramAtB: text(find(b, "datagram")?.payload),
    datagramAtA: text(find(a, "datagram")?.payload),
    acked: { ok: find(a, "messageAcked")?.ok, len: find(a, "messageAcked")?.len },
  };
}

export default {
  async fetch() {
    try {
      return Response.json({ ok: true, version: pw.version(), report: run(Date.now()), nodes: runNodes() });
    } catch (error) {
      return Response.json({ ok: false, code: error.code, message: String(error) }, { status: 500 });
    }
  },
};
