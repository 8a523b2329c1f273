// Every case of ../shared/vectors/*.json that the wasm surface can express, run through the
// built package. Verdicts on rejected input are compared with the class of the Go error
// text, as the native conformance runners do, so a case fails when we reject for another
// reason than the reference. A summary line per file is printed at the end.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";

import * as pw from "@pilot-workers/pilot-wasm";
import { hex, loadVectors, unhex } from "./helpers.mjs";

const counts = new Map();

/** Registers one test per case of `file`, counting how many ran and passed. */
function vectorFile(file, check) {
  const vectors = loadVectors(file);
  const tally = { total: vectors.cases.length, passed: 0 };
  counts.set(file, tally);
  describe(file, () => {
    for (const [index, c] of vectors.cases.entries()) {
      test(`${index}: ${c.name}`, async () => {
        await check(c, vectors.cases);
        tally.passed += 1;
      });
    }
  });
}

after(() => {
  for (const [file, { total, passed }] of counts) {
    console.log(`# ${file}: ${passed}/${total} cases passed through wasm`);
  }
});

/** The PilotError thrown by `fn`. */
function errorOf(fn) {
  try {
    fn();
  } catch (error) {
    assert.ok(pw.isPilotError(error), `not a PilotError: ${error}`);
    return error;
  }
  assert.fail("expected a PilotError, nothing was thrown");
}

const u16At = (bytes, at) => (bytes[at] << 8) | bytes[at + 1];
const u32At = (bytes, at) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at);

// --- pilot-address.json (spec §1) -------------------------------------------------------

/** Whether our error code is the same kind of rejection as the Go error text. */
function sameAddrClass(error, go) {
  switch (error.code) {
    case "ADDR_MISSING_COLON":
      return go.startsWith("invalid address:") && go.includes("(expected N:");
    case "ADDR_WRONG_GROUP_COUNT":
      return go.includes("expected 3 dot-separated hex groups");
    case "ADDR_INVALID_NETWORK":
      return go.startsWith("invalid network ID");
    case "ADDR_WRONG_GROUP_LENGTH":
      return go.includes("(expected 4 digits)");
    case "ADDR_INVALID_HEX_DIGIT":
      return go.startsWith("invalid hex group") && go.includes("invalid syntax");
    case "ADDR_NETWORK_MISMATCH":
      return go === error.message;
    case "ADDR_INVALID_PORT":
      return go.startsWith("invalid port");
    default:
      return false;
  }
}

function checkAddr(addr, c) {
  assert.equal(hex(addr.bytes), c.binary_hex);
  assert.equal(addr.network, c.network);
  assert.equal(addr.node, c.node);
  const decoded = pw.decodeAddr(unhex(c.binary_hex));
  assert.equal(decoded.text, addr.text);
}

vectorFile("pilot-address.json", (c) => {
  switch (c.direction) {
    case "text_to_binary": {
      if (!c.valid) {
        const error = errorOf(() => pw.parseAddr(c.input));
        assert.ok(sameAddrClass(error, c.error), `${error.code} vs Go "${c.error}"`);
        return;
      }
      const addr = pw.parseAddr(c.input);
      checkAddr(addr, c);
      assert.equal(addr.text, c.canonical);
      assert.equal(pw.parseAddr(c.canonical).text, c.canonical);
      assert.equal(pw.formatAddr(c.network, c.node), c.canonical);
      return;
    }
    case "binary_to_text": {
      const addr = pw.decodeAddr(unhex(c.binary_hex));
      assert.equal(addr.network, c.network);
      assert.equal(addr.node, c.node);
      assert.equal(addr.text, c.text);
      assert.equal(addr.broadcast, c.broadcast);
      assert.equal(hex(pw.encodeAddr(c.network, c.node)), c.binary_hex);
      return;
    }
    case "socket_text_to_binary": {
      if (!c.valid) {
        const error = errorOf(() => pw.parseSocketAddr(c.input));
        assert.ok(sameAddrClass(error, c.error), `${error.code} vs Go "${c.error}"`);
        return;
      }
      const socket = pw.parseSocketAddr(c.input);
      checkAddr(socket, c);
      assert.equal(socket.port, c.port);
      assert.equal(pw.formatSocketAddr(socket.network, socket.node, socket.port), c.canonical);
      return;
    }
    default:
      assert.fail(`unknown direction ${c.direction}`);
  }
});

// --- pilot-packet.json (spec §2) --------------------------------------------------------

const FLAG_NAMES = ["SYN", "ACK", "FIN", "RST"];

function checkPacketFields(packet, want) {
  assert.equal(packet.version, want.version);
  assert.equal(packet.flags, want.flags);
  const names = FLAG_NAMES.filter((_, bit) => packet.flags & (1 << bit));
  assert.deepEqual(names, want.flag_names);
  for (const key of ["protocol", "src", "dst", "seq", "ack", "window"]) {
    assert.equal(packet[key], want[key], key);
  }
  assert.equal(packet.srcPort, want.src_port);
  assert.equal(packet.dstPort, want.dst_port);
  assert.equal(hex(packet.payload), want.payload_hex);
}

vectorFile("pilot-packet.json", (c) => {
  if (c.kind === "encode") {
    const f = c.fields;
    assert.equal(f.flags, c.input_flags);
    const wire = pw.encodePacket({
      flags: c.input_flags,
      protocol: f.protocol,
      src: f.src,
      dst: f.dst,
      srcPort: f.src_port,
      dstPort: f.dst_port,
      seq: f.seq,
      ack: f.ack,
      window: f.window,
      payload: unhex(f.payload_hex),
    });
    assert.equal(hex(wire), c.wire_hex);
    assert.equal(hex(wire.subarray(30, 34)), c.checksum_hex);
    assert.equal("50494c54" + hex(wire), c.pilt_frame_hex);
    const decoded = pw.decodePacket(wire);
    checkPacketFields(decoded, c.decoded);
    assert.equal(decoded.checksum.toString(16).padStart(8, "0"), c.checksum_hex);
    return;
  }
  assert.equal(c.kind, "decode");
  const wire = unhex(c.wire_hex);
  if (c.expect_may === "accept") {
    checkPacketFields(pw.decodePacket(wire), c.decoded);
    return;
  }
  assert.equal(c.expect_may, "reject");
  const error = errorOf(() => pw.decodePacket(wire));
  const go = c.error_may;
  const same = {
    PACKET_TOO_SHORT: () => go === error.message,
    PACKET_TRUNCATED: () => go === error.message,
    PACKET_CHECKSUM_MISMATCH: () => go === "checksum mismatch",
    PACKET_UNSUPPORTED_VERSION: () => go.startsWith(`unsupported protocol version ${wire[0] >> 4} `),
  }[error.code];
  assert.ok(same?.(), `${error.code} (${error.message}) vs Go "${go}"`);
});

// --- pilot-dataexchange.json (spec §10.3) -----------------------------------------------

function checkDataExchange(frame, want) {
  assert.equal(frame.type, want.type);
  assert.equal(frame.typeName, want.type_name);
  assert.equal(frame.filename ?? "", want.filename);
  assert.equal(hex(frame.payload), want.payload_hex);
}

/** Feeds `wire` one byte at a time: the first frame and the bytes fed, or the error code. */
function byteByByte(Decoder, wire) {
  const decoder = new Decoder();
  try {
    for (let fed = 1; fed <= wire.length; fed += 1) {
      const [first] = decoder.push(wire.subarray(fed - 1, fed));
      if (first) return { first, fed };
    }
    decoder.finish();
    return { code: "NO_FRAME" };
  } catch (error) {
    assert.ok(pw.isPilotError(error), String(error));
    return { code: error.code };
  } finally {
    decoder.free();
  }
}

vectorFile("pilot-dataexchange.json", (c) => {
  if (c.kind === "encode") {
    const wire = pw.encodeDataExchangeFrame({
      type: c.type,
      payload: unhex(c.payload_hex),
      filename: c.filename,
    });
    assert.equal(hex(wire), c.wire_hex);
    const decoded = pw.decodeDataExchangeFrame(wire);
    assert.equal(decoded.consumed, wire.length);
    checkDataExchange(decoded, c.decoded);
    return;
  }
  const wire = unhex(c.wire_hex);
  const incremental = byteByByte(pw.DataExchangeDecoder, wire);
  if (c.expect_may === "accept") {
    const frame = pw.decodeDataExchangeFrame(wire);
    checkDataExchange(frame, c.decoded_may);
    assert.equal(frame.consumed, u32At(wire, 4) + 8);
    checkDataExchange(incremental.first, c.decoded_may);
    assert.equal(incremental.fed, frame.consumed);
    return;
  }
  assert.equal(c.expect_may, "reject");
  const error = errorOf(() => pw.decodeDataExchangeFrame(wire));
  assert.equal(incremental.code, error.code, "incremental and one-shot verdicts differ");
  const go = c.error_may;
  const same = {
    DX_TRUNCATED: () => go === "EOF" || go === "unexpected EOF",
    DX_FRAME_TOO_LARGE: () => go === `frame too large: ${u32At(wire, 4)}`,
    DX_FILE_NAME_TOO_LONG: () => go.startsWith(`filename too long: ${u16At(wire, 8)} bytes`),
    DX_FILE_NAME_NOT_BASE_NAME: () => go.includes("path traversal characters not allowed"),
  }[error.code];
  assert.ok(same?.(), `${error.code} (${error.message}) vs Go "${go}"`);
});

// --- pilot-eventstream.json (spec §10.4) ------------------------------------------------

vectorFile("pilot-eventstream.json", (c) => {
  if (c.kind === "encode") {
    const wire = pw.encodeEvent(c.topic, unhex(c.payload_hex));
    assert.equal(hex(wire), c.wire_hex);
    const decoded = pw.decodeEvent(wire);
    assert.equal(decoded.consumed, wire.length);
    assert.equal(decoded.topic, c.decoded.topic);
    assert.equal(hex(decoded.payload), c.decoded.payload_hex);
    return;
  }
  const wire = unhex(c.wire_hex);
  const incremental = byteByByte(pw.EventDecoder, wire);
  if (c.expect === "accept") {
    const event = pw.decodeEvent(wire);
    assert.equal(hex(event.topicBytes), hex(Buffer.from(c.decoded.topic, "utf8")));
    assert.equal(hex(event.payload), c.decoded.payload_hex);
    assert.equal(event.consumed, wire.length);
    assert.equal(incremental.fed, wire.length);
    assert.equal(hex(incremental.first.payload), c.decoded.payload_hex);
    return;
  }
  assert.equal(c.expect, "reject");
  const error = errorOf(() => pw.decodeEvent(wire));
  assert.equal(incremental.code, error.code, "incremental and one-shot verdicts differ");
  const topicLen = u16At(wire, 0);
  const same = {
    EVENT_TRUNCATED: () => c.error === "EOF" || c.error === "unexpected EOF",
    EVENT_TOPIC_TOO_LONG: () => c.error === `topic too long: ${topicLen}`,
    EVENT_PAYLOAD_TOO_LARGE: () => c.error === `payload too large: ${u32At(wire, 2 + topicLen)}`,
  }[error.code];
  assert.ok(same?.(), `${error.code} (${error.message}) vs Go "${c.error}"`);
});

// --- pilot-replay-window.json (spec §5.1, §5.2) -----------------------------------------
//
// Each event becomes a real PILS frame with that counter, sealed by WebCrypto AES-GCM (so
// counter 0, which no Pilot sender emits, can be expressed too) and opened by a wasm
// Session; `aead_ok: false` flips a tag bit. The session's verdict and `receiveMax` are
// compared with the reference, and with a naive model of our target (every accepted counter
// kept in a set). Documented divergences, as in conformance/src/runners/replay_window.rs:
// an AEAD failure never moves our window (the reference pins max at the forged counter),
// and counter 0 is rejected (the reference accepts it as "first" forever).

const REPLAY_KEY = new Uint8Array(32).map((_, i) => i + 1);
const REPLAY_PREFIX = unhex("c0c1c2c3");
const REPLAY_SENDER = 0x0000_0701;
const REPLAY_RECEIVER = 0x0000_0702;
const REPLAY_PACKET = new TextEncoder().encode("replay-window vector");

async function sealWithWebCrypto(key, sender, prefix, counter, plaintext) {
  const nonce = new Uint8Array(12);
  nonce.set(prefix);
  new DataView(nonce.buffer).setBigUint64(4, counter);
  const aad = new Uint8Array(4);
  new DataView(aad.buffer).setUint32(0, sender);
  const aesKey = await webcrypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  const sealed = new Uint8Array(
    await webcrypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, aesKey, plaintext),
  );
  return Uint8Array.from([...Buffer.from("PILS"), ...aad, ...nonce, ...sealed]);
}

const REFERENCE_REASON = {
  "deliver/first": "accept_first",
  "deliver/new_max": "accept_new_max",
  "deliver/in_window": "accept_in_window",
  outside_window: "reject_too_old",
  replay: "reject_duplicate",
};

class SpecTarget {
  accepted = new Set();
  max = 0n;
  step(counter) {
    let verdict;
    if (counter === 0n) verdict = "zero_counter";
    else if (this.accepted.size === 0) verdict = "deliver/first";
    else if (counter > this.max) verdict = "deliver/new_max";
    else if (this.max - counter >= 256n) verdict = "outside_window";
    else if (this.accepted.has(counter)) verdict = "replay";
    else verdict = "deliver/in_window";
    if (verdict.startsWith("deliver")) {
      this.accepted.add(counter);
      if (counter > this.max) this.max = counter;
    }
    return verdict;
  }
}

vectorFile("pilot-replay-window.json", async (c) => {
  assert.equal(c.window_size, 256);
  const receiver = pw.Session.fromKey(REPLAY_KEY, REPLAY_RECEIVER, REPLAY_SENDER, 0, unhex("d0d1d2d3"));
  const target = new SpecTarget();
  let poisoned = false;
  let divergences = 0;
  for (const [i, event] of c.events.entries()) {
    const counter = BigInt(event.counter);
    const maxAfter = BigInt(event.max_after);
    const frame = await sealWithWebCrypto(REPLAY_KEY, REPLAY_SENDER, REPLAY_PREFIX, counter, REPLAY_PACKET);
    const at = `event ${i} (counter ${counter})`;
    const maxBefore = receiver.receiveMax ?? 0n;

    if (event.aead_ok === false) {
      assert.deepEqual([event.expect, event.reason], ["reject", "reject_auth"], at);
      frame[frame.length - 1] ^= 0x01;
      const result = receiver.open(frame, 0);
      assert.equal(result.verdict, "auth_failed", at);
      assert.equal(result.deliver, false, at);
      assert.equal(result.packet, undefined, at);
      assert.equal(receiver.receiveMax ?? 0n, maxBefore, `${at}: an AEAD failure moved the window`);
      poisoned = true;
      if (maxAfter !== maxBefore) divergences += 1;
      continue;
    }

    const result = receiver.open(frame, 0);
    const ours = result.verdict === "deliver" ? `deliver/${result.reason}` : result.verdict;
    const modelled = target.step(counter);
    const max = receiver.receiveMax ?? 0n;
    assert.equal(ours, modelled, `${at}: wasm ${ours}, spec target ${modelled}`);
    assert.equal(max, target.max, `${at}: receiveMax ${max}, spec target ${target.max}`);
    if (result.deliver) {
      assert.equal(hex(result.packet), hex(REPLAY_PACKET), at);
      assert.equal(result.counter, counter, at);
    } else {
      assert.equal(result.packet, undefined, `${at}: a rejected frame handed out plaintext`);
    }

    const expect = result.deliver ? "accept" : "reject";
    if (expect === event.expect && REFERENCE_REASON[ours] === event.reason && max === maxAfter) continue;
    divergences += 1;
    if (ours === "zero_counter") {
      assert.ok(c.reference_quirk, `${at}: counter 0 in a case not marked reference_quirk`);
    } else if (poisoned) {
      // After a forged frame pinned the reference's max: we deliver whatever it delivers, and
      // may deliver what it called too old only because of that pinned max.
      const allowed =
        (event.expect === "accept" && result.deliver) ||
        (event.expect === "reject" && event.reason === "reject_too_old" && result.deliver);
      assert.ok(allowed, `${at}: reference ${event.expect}/${event.reason}, wasm ${ours}`);
    } else {
      assert.fail(`${at}: reference ${event.expect}/${event.reason} max ${maxAfter}, wasm ${ours} max ${max}`);
    }
  }
  if (c.reference_quirk) {
    assert.ok(divergences > 0, "marked reference_quirk but wasm agreed with every event");
  }
  receiver.free();
});

// --- pilot-tunnel-frames.json (spec §3–§4, §7.5) ----------------------------------------

const ANY_PACKET = pw.encodePacket({ protocol: 2, src: "0:0000.0000.0001", dst: "0:0000.0000.0002" });

function peerNamed(cases, name) {
  const peer = cases.find((c) => c.kind === "peer_keys" && c.peer.name === name)?.peer;
  assert.ok(peer, `no peer_keys case for ${name}`);
  return peer;
}

function signedMessage(node, x25519) {
  const message = new Uint8Array(40);
  message.set(Buffer.from("auth"));
  new DataView(message.buffer).setUint32(4, node);
  message.set(x25519, 8);
  return message;
}

function checkPeerKeys(c) {
  const peer = c.peer;
  assert.equal(hex(pw.Identity.fromSeed(unhex(peer.ed25519_seed)).publicKey), peer.ed25519_public);
  assert.equal(hex(pw.TunnelKey.fromPrivate(unhex(peer.x25519_private)).publicKey), peer.x25519_public);
  assert.equal(peer.node_id.toString(16).padStart(8, "0"), peer.node_id_hex);
  assert.equal(pw.parseAddr(peer.address).node, peer.node_id);
  // The first frame a fresh session seals carries this prefix and counter 1 (spec §4.3).
  const session = pw.Session.fromKey(new Uint8Array(32), peer.node_id, 0, 0, unhex(peer.nonce_prefix));
  const header = pw.peekPils(session.seal(ANY_PACKET));
  assert.equal(hex(header.prefix), peer.nonce_prefix);
  assert.equal(header.counter, 1n);
  assert.equal(header.sender, peer.node_id);
}

function checkKdf(c) {
  const a = pw.TunnelKey.fromPrivate(unhex(c.a_x25519_private));
  const b = pw.TunnelKey.fromPrivate(unhex(c.b_x25519_private));
  assert.equal(hex(a.publicKey), c.a_x25519_public);
  assert.equal(hex(b.publicKey), c.b_x25519_public);
  // The session key itself never leaves the module: identical frames under one prefix and
  // counter show that both sides derived the same key, and that it is the vector's key.
  const prefix = unhex("01020304");
  const sealWith = (session) => hex(session.seal(ANY_PACKET));
  const ab = sealWith(pw.Session.deriveUnauthenticated(a, b.publicKey, 1, 2, 0, prefix));
  const ba = sealWith(pw.Session.deriveUnauthenticated(b, a.publicKey, 1, 2, 0, prefix));
  const may = sealWith(pw.Session.fromKey(unhex(c.may.aes256_key), 1, 2, 0, prefix));
  const feb = sealWith(pw.Session.fromKey(unhex(c.feb.aes256_key), 1, 2, 0, prefix));
  assert.equal(ab, ba, "the two sides derived different keys");
  assert.equal(ab, may, "derived key differs from the vector's HKDF key");
  assert.notEqual(ab, feb, "derived key equals the out-of-scope feb key");
}

function checkPilk(c) {
  const frame = unhex(c.frame_hex);
  const pilk = pw.decodePilk(frame);
  assert.equal(pilk.node, c.node_id);
  assert.equal(hex(pilk.x25519Public), c.x25519_public);
  assert.equal(hex(pw.encodePilk(c.node_id, unhex(c.x25519_public))), c.frame_hex);
  assert.deepEqual(pw.classifyFrame(frame), { kind: "PILK" });
}

function checkPila(c) {
  assert.equal(c.expect, "accept");
  const identity = pw.Identity.fromSeed(unhex(c.ed25519_seed));
  assert.equal(hex(identity.publicKey), c.ed25519_public);
  const x25519 = unhex(c.x25519_public);
  const frame = pw.buildPila(identity, c.node_id, x25519, BigInt(c.caps), BigInt(c.flags));
  assert.equal(hex(frame), c.frame_hex);
  assert.equal(frame.length, c.frame_len);
  assert.equal(hex(frame.subarray(136)), c.trailer_hex);
  assert.equal(hex(frame.subarray(72, 136)), c.signature_hex);
  const challenge = signedMessage(c.node_id, x25519);
  assert.equal(hex(challenge), c.challenge_hex);
  pw.verifySignature(identity.publicKey, challenge, unhex(c.signature_hex));
  assert.deepEqual(pw.classifyFrame(frame), { kind: "PILA" });

  const decoded = pw.decodePila(frame);
  assert.equal(decoded.node, c.node_id);
  assert.equal(hex(decoded.x25519Public), c.x25519_public);
  assert.equal(hex(decoded.ed25519Public), c.ed25519_public);
  assert.equal(decoded.trailer.caps, BigInt(c.caps));
  assert.equal(decoded.trailer.flags, BigInt(c.flags));
  pw.verifyPila(frame, unhex(c.ed25519_public));
  const handled = pw.handlePila(frame, unhex(c.ed25519_public), pw.TunnelKey.generate(), 9, 0);
  assert.equal(handled.peerNode, c.node_id);
  assert.equal(hex(handled.peerX25519Public), c.x25519_public);
}

function checkPilaInvalid(c) {
  const frame = unhex(c.frame_hex);
  const registry = unhex(c.registry_ed25519_public);
  const ownTunnel = pw.TunnelKey.generate();
  if (c.expect === "ignore") {
    assert.equal(errorOf(() => pw.decodePila(frame)).code, "PILA_TOO_SHORT");
    assert.equal(errorOf(() => pw.handlePila(frame, registry, ownTunnel, 9, 0)).code, "PILA_TOO_SHORT");
    return;
  }
  const decoded = pw.decodePila(frame);
  if (c.expect === "reject") {
    // A foreign identity key is caught before the signature is checked.
    const want = hex(decoded.ed25519Public) === c.registry_ed25519_public ? "PILA_BAD_SIGNATURE" : "PILA_IDENTITY_MISMATCH";
    assert.equal(errorOf(() => pw.verifyPila(frame, registry)).code, want);
    assert.equal(errorOf(() => pw.handlePila(frame, registry, ownTunnel, 9, 0)).code, want);
    return;
  }
  assert.equal(c.expect, "accept");
  // The unparseable trailer: V-FORK falls back to caps 0, flags 0.
  assert.equal(decoded.trailer.caps, 0n);
  assert.equal(decoded.trailer.flags, 0n);
  pw.verifyPila(frame, registry);
}

function checkPils(c, cases) {
  assert.equal(c.expect, "accept");
  const frame = unhex(c.frame_hex);
  const prefix = unhex(c.nonce_prefix);
  const counter = BigInt(c.counter);
  const header = pw.peekPils(frame);
  assert.equal(header.sender, c.sender_node_id);
  assert.equal(hex(header.prefix), c.nonce_prefix);
  assert.equal(header.counter, counter);
  assert.equal(hex(frame.subarray(8, 20)), c.nonce_hex);
  assert.equal(hex(frame.subarray(20)), c.ciphertext_and_tag_hex);
  assert.equal(hex(frame.subarray(frame.length - 16)), c.tag_hex);

  const plaintext = unhex(c.plaintext_hex);
  const packet = pw.decodePacket(plaintext);
  const want = c.plaintext_packet;
  assert.equal(packet.flags, want.flags);
  assert.equal(packet.protocol, want.protocol);
  assert.equal(packet.src, want.src);
  assert.equal(packet.dst, want.dst);
  assert.equal(packet.srcPort, want.src_port);
  assert.equal(packet.dstPort, want.dst_port);
  assert.equal(packet.seq, want.seq);
  assert.equal(packet.ack, want.ack);
  assert.equal(packet.window, want.window);
  assert.equal(hex(packet.payload), want.payload_hex);

  const sender = peerNamed(cases, c.sender);
  assert.equal(sender.node_id, c.sender_node_id);
  const receiver = cases.find((x) => x.kind === "peer_keys" && x.peer.name !== c.sender).peer;
  // The receiver accepts the sender's PILA and derives its session the way a node would.
  const senderPila = pw.buildPila(pw.Identity.fromSeed(unhex(sender.ed25519_seed)), sender.node_id, unhex(sender.x25519_public));
  const { session } = pw.handlePila(
    senderPila,
    unhex(sender.ed25519_public),
    pw.TunnelKey.fromPrivate(unhex(receiver.x25519_private)),
    receiver.node_id,
    0,
    unhex(receiver.nonce_prefix),
  );

  if (c.variant === "may") {
    assert.equal(c.aad_hex, c.sender_node_id.toString(16).padStart(8, "0"));
    const sealer = pw.Session.fromKey(unhex(c.aes256_key), c.sender_node_id, receiver.node_id, 0, prefix, counter - 1n);
    assert.equal(hex(sealer.seal(plaintext)), c.frame_hex);
    const opened = session.open(frame, 0);
    assert.equal(opened.verdict, "deliver");
    assert.equal(opened.counter, counter);
    assert.equal(hex(opened.packet), c.plaintext_hex);
    return;
  }
  assert.equal(c.variant, "feb");
  assert.equal(c.aad_hex, "");
  // V-FEB crypto is out of scope (spec §4.5): the frame opens neither under our derived key
  // nor under the feb key with our AAD.
  assert.equal(session.open(frame, 0).verdict, "auth_failed");
  const febKey = pw.Session.fromKey(unhex(c.aes256_key), receiver.node_id, c.sender_node_id, 0, prefix);
  assert.equal(febKey.open(frame, 0).verdict, "auth_failed");
}

function checkPilsInvalid(c) {
  const frame = unhex(c.frame_hex);
  const key = unhex(c.receiver_aes256_key);
  if (c.expect === "ignore") {
    assert.equal(errorOf(() => pw.peekPils(frame)).code, "PILS_TOO_SHORT");
    const session = pw.Session.fromKey(key, 1, 0x12345, 0, new Uint8Array(4));
    assert.equal(errorOf(() => session.open(frame, 0)).code, "PILS_TOO_SHORT");
    assert.equal(session.tick(0).decryptFailures, 0, "a short frame reached the drop gate");
    return;
  }
  assert.equal(c.expect, "reject_auth");
  // The engine picks the session by the header's sender; that session must refuse the frame.
  const session = pw.Session.fromKey(key, 1, pw.peekPils(frame).sender, 0, new Uint8Array(4));
  const result = session.open(frame, 0);
  assert.equal(result.verdict, "auth_failed");
  assert.equal(result.deliver, false);
  assert.equal(result.packet, undefined);
  assert.equal(session.tick(0).decryptFailures, 1);
}

function checkTcpFrame(c) {
  const frame = unhex(c.frame_hex);
  const stream = pw.encodeTcpFrame(frame);
  assert.equal(hex(stream), c.tcp_bytes_hex);
  const deframer = new pw.TcpDeframer();
  const frames = [];
  for (const byte of stream) frames.push(...deframer.push(Uint8Array.of(byte)));
  assert.deepEqual(frames.map(hex), [c.frame_hex]);
  assert.ok(deframer.atFrameBoundary);
}

vectorFile("pilot-tunnel-frames.json", (c, cases) => {
  const check = {
    peer_keys: checkPeerKeys,
    kdf: checkKdf,
    pilk: checkPilk,
    pila: checkPila,
    pila_invalid: checkPilaInvalid,
    pils: checkPils,
    pils_invalid: checkPilsInvalid,
    tcp_frame: checkTcpFrame,
  }[c.kind];
  assert.ok(check, `unknown kind ${c.kind}`);
  check(c, cases);
});
