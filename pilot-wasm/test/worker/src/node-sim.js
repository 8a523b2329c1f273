// A tiny deterministic driver for `Node`s in one JS process: the event loop a real driver
// runs around sockets, with a fake clock and an in-memory network. Shared by the Node tests
// (test/node.test.mjs, test/node-transcript.test.mjs) and the Worker (src/index.js), so it
// uses only what both runtimes have (no Buffer, no fs).
//
// Rules, mirrored exactly by examples/node_transcript.rs so that the native and the wasm
// engines see the same inputs in the same order:
// * A frame a node transmits on path `p` reaches node `p` after DELAY_MS, as a frame on the
//   path named after its sender.
// * After every input, every node is drained (in the order given) until `timeout`/`null`.
//   `needPeerKey` is answered at once from the registry table; on `streamReadable` and
//   `streamPeerClosed` the connection is read until nothing is buffered (or end of stream).
// * The clock jumps to the earliest of: the next frame, the next script action, the earliest
//   node timeout; at equal times frames go first, then actions, then timers (node order).
//   One item is handled per step.

/** One-way delay of every frame, in milliseconds. */
export const DELAY_MS = 10;
/** Bytes asked for per `read`. */
export const READ_BYTES = 65536;
/** Most steps one `run` takes. */
export const MAX_STEPS = 100000;

const HEX = "0123456789abcdef";

/** Lower-case hex of `bytes`. */
export function toHex(bytes) {
  let out = "";
  for (const b of bytes) out += HEX[b >> 4] + HEX[b & 15];
  return out;
}

/** Bytes of lower-case or upper-case hex `text`. */
export function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export class Sim {
  /**
   * `specs`: `[{ id, identitySeed?, rngSeed?, options? }]` (network 1). `start`: clock origin (ms).
   */
  constructor(pw, specs, { start = 1000, network = 1 } = {}) {
    this.now = start;
    this.network = network;
    this.order = [];
    this.nodes = new Map();
    this.registry = new Map();
    for (const s of specs) {
      const node = new pw.Node({ network, node: s.id }, s.identitySeed, s.options, s.rngSeed);
      const entry = { id: s.id, node, timeout: null, events: [], sinks: new Map(), eof: new Set(), lastConn: null };
      this.nodes.set(s.id, entry);
      this.order.push(entry);
      this.registry.set(s.id, node.identityPublicKey);
    }
    this.queue = [];
    this.sequence = 0;
    /** Every output in order: transmits (with hex bytes) and event types. */
    this.log = [];
    /** Results of the script's actions, in order. */
    this.results = [];
  }

  /** The entry of node `id`. */
  get(id) {
    return this.nodes.get(id);
  }

  drainAll() {
    for (const entry of this.order) this.drain(entry);
  }

  drain(entry) {
    for (;;) {
      const out = entry.node.pollOutput();
      if (out === null) {
        entry.timeout = null;
        return;
      }
      if (out.kind === "timeout") {
        entry.timeout = out.at;
        return;
      }
      if (out.kind === "transmit") {
        this.log.push({ t: this.now, node: entry.id, kind: "transmit", path: out.path, hex: toHex(out.bytes) });
        this.queue.push({ at: this.now + DELAY_MS, seq: this.sequence++, to: out.path, from: entry.id, bytes: out.bytes });
        continue;
      }
      const event = out.event;
      this.log.push({ t: this.now, node: entry.id, kind: "event", type: event.type });
      entry.events.push(event);
      if (event.type === "needPeerKey") {
        entry.node.providePeerKey(this.now, event.node, this.registry.get(event.node) ?? null);
      } else if (event.type === "streamReadable" || event.type === "streamPeerClosed") {
        this.readAll(entry, event.conn);
      }
    }
  }

  readAll(entry, conn) {
    for (;;) {
      let bytes;
      try {
        bytes = entry.node.read(this.now, conn, READ_BYTES);
      } catch {
        return; // not an application connection, or gone
      }
      if (bytes === null) return;
      if (bytes.length === 0) {
        entry.eof.add(conn);
        return;
      }
      const old = entry.sinks.get(conn) ?? new Uint8Array(0);
      const joined = new Uint8Array(old.length + bytes.length);
      joined.set(old);
      joined.set(bytes, old.length);
      entry.sinks.set(conn, joined);
    }
  }

  /** Applies one scripted action (see examples/node_transcript.rs for the vocabulary). */
  act(action) {
    const entry = this.nodes.get(action.node);
    const n = entry.node;
    const data = action.data === undefined ? undefined : fromHex(action.data);
    let result = null;
    switch (action.op) {
      case "addPeerPath": n.addPeerPath(this.now, action.peer, action.peer); break;
      case "setTrusted": n.setTrusted(action.peer, true); break;
      case "listen": n.listen(action.port); break;
      case "dial": result = entry.lastConn = n.dial(this.now, action.peer, action.port); break;
      case "write": result = n.write(this.now, entry.lastConn, data); break;
      case "close": n.close(this.now, entry.lastConn); break;
      case "sendTo": n.sendTo(this.now, action.peer, action.port, data); break;
      case "sendMessage": result = n.sendMessage(this.now, action.peer, "text", data); break;
      case "ping": n.ping(this.now, action.peer, data); break;
      default: throw new Error(`unknown op ${action.op}`);
    }
    this.results.push(result);
    return result;
  }

  /** Runs `script` (actions with `at` in ms, sorted) and the network until `until` ms. */
  run(script, until) {
    let next = 0;
    this.drainAll();
    for (let step = 0; step < MAX_STEPS; step++) {
      let frame = null;
      for (const f of this.queue) {
        if (frame === null || f.at < frame.at || (f.at === frame.at && f.seq < frame.seq)) frame = f;
      }
      const action = script[next];
      let timer = null;
      for (const e of this.order) if (e.timeout !== null && (timer === null || e.timeout < timer.timeout)) timer = e;

      const times = [frame?.at, action?.at, timer?.timeout].filter((t) => t !== undefined);
      if (times.length === 0) return;
      const at = Math.min(...times);
      if (at > until) return;
      this.now = Math.max(this.now, at);

      if (frame !== null && frame.at === at) {
        this.queue.splice(this.queue.indexOf(frame), 1);
        this.nodes.get(frame.to)?.node.handleFrame(this.now, frame.from, frame.bytes);
      } else if (action !== undefined && action.at === at) {
        next++;
        this.act(action);
      } else {
        timer.node.tick(this.now);
      }
      this.drainAll();
    }
    throw new Error(`no quiescence after ${MAX_STEPS} steps`);
  }
}

/** The scenario of the tests: key exchange, echo, datagrams both ways, data exchange, ping. */
export function scenario(a, b) {
  const enc = (text) => toHex(new TextEncoder().encode(text));
  return [
    { at: 1000, node: a, op: "setTrusted", peer: b },
    { at: 1000, node: b, op: "setTrusted", peer: a },
    { at: 1000, node: a, op: "listen", port: 5000 },
    { at: 1000, node: b, op: "listen", port: 5000 },
    { at: 1000, node: a, op: "addPeerPath", peer: b },
    { at: 1200, node: a, op: "dial", peer: b, port: 7 },
    { at: 1300, node: a, op: "write", data: enc("hello, echo") },
    { at: 1500, node: a, op: "sendTo", peer: b, port: 5000, data: enc("datagram from A") },
    { at: 1510, node: b, op: "sendTo", peer: a, port: 5000, data: enc("datagram from B") },
    { at: 1600, node: a, op: "sendMessage", peer: b, data: enc("hello exchange") },
    { at: 1700, node: a, op: "ping", peer: b, data: enc("abc") },
    { at: 2000, node: a, op: "close" },
  ];
}
