// Unit tests of PilotClient, run inside workerd against a scripted fake of the PilotNode
// Durable Object (test/fake): each test pins the requests the client sends and how it maps
// the answers, including every error path. Self-terminating: the runtime is disposed in `after`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { b64, startWorker } from "./helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const ORIGIN = "https://pilot.internal";
const PEER = "0:0000.0000.0007";
let worker;

before(async () => {
  worker = await startWorker(join(here, "fake", "wrangler.toml"));
});

after(async () => {
  await worker?.dispose();
});

/** Runs `steps` against a fresh fake answering with `script`; returns results, error, requests. */
async function run(script, steps) {
  const response = await worker.fetch("http://127.0.0.1/run", {
    method: "POST",
    body: JSON.stringify({ script, steps }),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text);
}

const json = (body) => JSON.parse(Buffer.from(body, "base64").toString("utf8"));
const apiError = (status, code, message, hint) => ({
  status,
  json: { error: { code, message, hint } },
});

describe("request shapes and answer mapping", () => {
  test("info is a GET without body and maps every field, the key as bytes", async () => {
    const key = Buffer.alloc(32, 0xab).toString("base64");
    const info = {
      address: "0:0000.0000.0004",
      node_id: 4,
      hostname: "edge",
      public_key: key,
      transport: "relay",
      endpoint: "127.0.0.1:40000",
      registered: true,
      public: false,
      dropped: 3,
    };
    const { results, error, requests } = await run([{ json: info }], [{ op: "client.info" }]);
    assert.equal(error, null);
    assert.deepEqual(requests, [
      { method: "GET", path: `${ORIGIN}/v1/info`, query: {}, contentType: null, body: "" },
    ]);
    assert.deepEqual(results[0], {
      address: "0:0000.0000.0004",
      nodeId: 4,
      hostname: "edge",
      publicKey: { bytes: key },
      transport: "relay",
      endpoint: "127.0.0.1:40000",
      registered: true,
      public: false,
      dropped: 3,
    });
  });

  test("setHostname posts JSON and resolveHostname puts the name in the query", async () => {
    const { results, requests } = await run(
      [{ json: { hostname: "edge-1" } }, { json: { address: PEER } }],
      [
        { op: "client.setHostname", args: ["edge-1"] },
        { op: "client.resolveHostname", args: ["a b&c"] },
      ],
    );
    assert.deepEqual(results, ["edge-1", PEER]);
    assert.equal(requests[0].method, "POST");
    assert.equal(requests[0].path, `${ORIGIN}/v1/hostname`);
    assert.equal(requests[0].contentType, "application/json");
    assert.deepEqual(json(requests[0].body), { hostname: "edge-1" });
    assert.equal(requests[1].method, "GET");
    assert.equal(requests[1].path, `${ORIGIN}/v1/resolve-hostname`);
    assert.deepEqual(requests[1].query, { hostname: "a b&c" });
  });

  test("ping sends timeout_ms only when given and returns rtt_ms", async () => {
    const { results, requests } = await run(
      [{ json: { rtt_ms: 12.5 } }, { json: { rtt_ms: 3 } }],
      [
        { op: "client.ping", args: [PEER, { timeoutMs: 250 }] },
        { op: "client.ping", args: [PEER] },
      ],
    );
    assert.deepEqual(results, [12.5, 3]);
    assert.deepEqual(
      requests.map((r) => [r.method, r.path, r.contentType]),
      [
        ["POST", `${ORIGIN}/v1/ping`, "application/json"],
        ["POST", `${ORIGIN}/v1/ping`, "application/json"],
      ],
    );
    assert.deepEqual(json(requests[0].body), { peer: PEER, timeout_ms: 250 });
    assert.deepEqual(json(requests[1].body), { peer: PEER });
  });

  test("trust routes: handshake, pending, approve, reject (reason optional), trusted", async () => {
    const pending = [{ node: 9, address: "0:0000.0000.0009", justification: "demo" }];
    const trusted = [{ node: 7, address: PEER }];
    const { results, error, requests } = await run(
      [
        { json: { status: "requested" } },
        { json: { pending } },
        { json: {} },
        { json: {} },
        { json: {} },
        { json: { trusted } },
      ],
      [
        { op: "client.handshake", args: [PEER, "let me in"] },
        { op: "client.pendingHandshakes" },
        { op: "client.approveHandshake", args: [9] },
        { op: "client.rejectHandshake", args: [10, "unknown"] },
        { op: "client.rejectHandshake", args: [11] },
        { op: "client.trustedPeers" },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results, [null, pending, null, null, null, trusted]);
    assert.deepEqual(
      requests.map((r) => [r.method, r.path.slice(ORIGIN.length)]),
      [
        ["POST", "/v1/handshake"],
        ["GET", "/v1/handshakes"],
        ["POST", "/v1/handshakes/approve"],
        ["POST", "/v1/handshakes/reject"],
        ["POST", "/v1/handshakes/reject"],
        ["GET", "/v1/trusted"],
      ],
    );
    assert.deepEqual(json(requests[0].body), { peer: PEER, justification: "let me in" });
    assert.deepEqual(json(requests[2].body), { node: 9 });
    assert.deepEqual(json(requests[3].body), { node: 10, reason: "unknown" });
    assert.deepEqual(json(requests[4].body), { node: 11 });
  });

  test("dial returns a connection whose write, read and close use its ID", async () => {
    const { results, error, requests } = await run(
      [
        { json: { conn: 42, peer: PEER, port: 7, local_port: 49152 } },
        { json: { written: 5 } },
      ],
      [
        { op: "client.dial", args: [PEER, 7, { timeoutMs: 5000 }] },
        { op: "last.write", args: [{ bytes: b64("hello") }, { timeoutMs: 900 }] },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results, [{ id: 42, peer: PEER, peerPort: 7, localPort: 49152 }, 5]);
    assert.deepEqual(json(requests[0].body), { peer: PEER, port: 7, timeout_ms: 5000 });
    assert.equal(requests[1].path, `${ORIGIN}/v1/conns/42/write`);
    assert.deepEqual(requests[1].query, { timeout_ms: "900" });
    assert.equal(requests[1].contentType, "application/octet-stream");
    assert.equal(requests[1].body, b64("hello"));
  });

  test("read returns the raw bytes, null at end of stream; close posts to the close route", async () => {
    const dialed = { json: { conn: 5, peer: PEER, port: 7, local_port: 49153 } };
    const { results, error, requests } = await run(
      [dialed, { bytes: b64("abc"), headers: { "content-type": "application/octet-stream" } }],
      [
        { op: "client.dial", args: [PEER, 7] },
        { op: "last.read", args: [{ maxBytes: 3, timeoutMs: 100 }] },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results[1], { bytes: b64("abc") });
    assert.equal(requests[1].path, `${ORIGIN}/v1/conns/5/read`);
    assert.deepEqual(requests[1].query, { max_bytes: "3", timeout_ms: "100" });

    const eof = await run(
      [dialed, { text: "", headers: { "pilot-eof": "1" } }],
      [{ op: "client.dial", args: [PEER, 7] }, { op: "last.read" }],
    );
    assert.equal(eof.error, null);
    assert.equal(eof.results[1], null);
    assert.deepEqual(eof.requests[1].query, {});

    const closed = await run([dialed, { json: {} }], [
      { op: "client.dial", args: [PEER, 7] },
      { op: "last.close" },
    ]);
    assert.equal(closed.error, null);
    assert.equal(closed.requests[1].method, "POST");
    assert.equal(closed.requests[1].path, `${ORIGIN}/v1/conns/5/close`);
  });

  test("listen then accept sends the listened port and maps the accepted stream", async () => {
    const { results, error, requests } = await run(
      [{ json: { port: 1000 } }, { json: { conn: 8, peer: PEER, peer_port: 49999, port: 1000 } }],
      [
        { op: "client.listen", args: [1000] },
        { op: "last.accept", args: [{ timeoutMs: 30000 }] },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results, [
      { port: 1000 },
      { id: 8, peer: PEER, peerPort: 49999, localPort: 1000 },
    ]);
    assert.deepEqual(json(requests[0].body), { port: 1000 });
    assert.equal(requests[1].path, `${ORIGIN}/v1/accept`);
    assert.deepEqual(json(requests[1].body), { port: 1000, timeout_ms: 30000 });
  });

  test("datagrams: sendTo base64-encodes, recvFrom decodes", async () => {
    const { results, error, requests } = await run(
      [{ json: {} }, { json: { from: PEER, src_port: 5000, port: 6000, data: b64("pong") } }],
      [
        { op: "client.sendTo", args: [PEER, 5000, { bytes: b64("ping") }] },
        { op: "client.recvFrom", args: [6000] },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results[1], { from: PEER, srcPort: 5000, port: 6000, data: { bytes: b64("pong") } });
    assert.deepEqual(json(requests[0].body), { peer: PEER, port: 5000, data: b64("ping") });
    assert.deepEqual(json(requests[1].body), { port: 6000 });
  });

  test("sendMessage sends strings as UTF-8; sendFile is type file with its filename", async () => {
    const { results, error, requests } = await run(
      [{ json: { reply: "ACK TEXT 7 bytes" } }, { json: { reply: "ACK FILE 3 bytes" } }],
      [
        { op: "client.sendMessage", args: [PEER, "text", "héllo"] },
        { op: "client.sendFile", args: [PEER, "a.txt", { bytes: b64("abc") }, { timeoutMs: 2000 }] },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results, ["ACK TEXT 7 bytes", "ACK FILE 3 bytes"]);
    assert.equal(requests[0].path, `${ORIGIN}/v1/send-message`);
    assert.deepEqual(json(requests[0].body), { peer: PEER, type: "text", data: b64("héllo") });
    assert.deepEqual(json(requests[1].body), {
      peer: PEER,
      type: "file",
      data: b64("abc"),
      filename: "a.txt",
      timeout_ms: 2000,
    });
  });

  test("events: publishEvent, subscribe, and next on the subscription's route", async () => {
    const { results, error, requests } = await run(
      [
        { json: {} },
        { json: {} },
        { json: { subscription: "s/1" } },
        { json: { topic: "news", data: b64("flash") } },
      ],
      [
        { op: "client.publishEvent", args: [PEER, "news", "flash"] },
        { op: "client.publishEvent", args: [PEER, "news", { bytes: b64("more") }, { timeoutMs: 700 }] },
        { op: "client.subscribe", args: [PEER, "news"] },
        { op: "last.next", args: [{ timeoutMs: 50 }] },
      ],
    );
    assert.equal(error, null);
    assert.deepEqual(results[2], { id: "s/1", topic: "news" });
    assert.deepEqual(results[3], { topic: "news", data: { bytes: b64("flash") } });
    assert.equal(requests[0].path, `${ORIGIN}/v1/publish`);
    assert.deepEqual(json(requests[0].body), { peer: PEER, topic: "news", data: b64("flash") });
    assert.deepEqual(json(requests[1].body), {
      peer: PEER,
      topic: "news",
      data: b64("more"),
      timeout_ms: 700,
    });
    assert.equal(requests[2].path, `${ORIGIN}/v1/subscribe`);
    assert.deepEqual(json(requests[2].body), { peer: PEER, topic: "news" });
    assert.equal(requests[3].path, `${ORIGIN}/v1/subscriptions/s%2F1/next`);
    assert.deepEqual(json(requests[3].body), { timeout_ms: 50 });
  });
});

describe("error mapping", () => {
  const codes = [
    [400, "bad_request"],
    [503, "not_ready"],
    [408, "timeout"],
    [502, "peer_unreachable"],
    [403, "not_trusted"],
    [404, "unknown_connection"],
    [410, "connection_closed"],
    [429, "queue_full"],
    [502, "registry_error"],
    [500, "internal"],
  ];
  for (const [status, code] of codes) {
    test(`an HTTP ${status} ${code} body becomes PilotError ${code} with message and hint`, async () => {
      const { error } = await run(
        [apiError(status, code, `what happened (${code})`, `what to do (${code})`)],
        [{ op: "client.ping", args: [PEER] }],
      );
      assert.deepEqual(error, {
        pilot: true,
        name: "PilotError",
        code,
        message: `what happened (${code})`,
        hint: `what to do (${code})`,
        status,
      });
    });
  }

  test("a read that times out rejects with code timeout", async () => {
    const { error } = await run(
      [
        { json: { conn: 1, peer: PEER, port: 7, local_port: 49152 } },
        apiError(408, "timeout", "no data within 100 ms", "retry"),
      ],
      [{ op: "client.dial", args: [PEER, 7] }, { op: "last.read", args: [{ timeoutMs: 100 }] }],
    );
    assert.equal(error.code, "timeout");
    assert.equal(error.status, 408);
  });

  test("an error answer without the API's body is internal and quotes the body", async () => {
    const { error } = await run([{ status: 502, text: "Bad Gateway from a proxy" }], [
      { op: "client.info" },
    ]);
    assert.equal(error.code, "internal");
    assert.equal(error.status, 502);
    assert.match(error.message, /GET \/v1\/info answered HTTP 502/);
    assert.match(error.message, /Bad Gateway from a proxy/);
    assert.ok(error.hint.length > 0);
  });

  test("an unknown error code is internal and names the code; an empty hint gets a default", async () => {
    const unknown = await run([apiError(418, "teapot", "short and stout", "tip me over")], [
      { op: "client.info" },
    ]);
    assert.equal(unknown.error.code, "internal");
    assert.match(unknown.error.message, /"teapot"/);
    const noHint = await run([apiError(503, "not_ready", "relay down", "")], [{ op: "client.info" }]);
    assert.equal(noHint.error.code, "not_ready");
    assert.match(noHint.error.hint, /retry/);
  });

  test("a Durable Object that throws becomes internal with status 0", async () => {
    const { error } = await run([{ throw: "object exploded" }], [{ op: "client.info" }]);
    assert.equal(error.code, "internal");
    assert.equal(error.status, 0);
    assert.match(error.message, /failed before an answer/);
  });

  test("a success answer lacking a field is internal, naming the field", async () => {
    const { error } = await run([{ json: { rtt: 1 } }], [{ op: "client.ping", args: [PEER] }]);
    assert.equal(error.code, "internal");
    assert.match(error.message, /"rtt_ms"/);
    const notJson = await run([{ text: "hello" }], [{ op: "client.info" }]);
    assert.equal(notJson.error.code, "internal");
    assert.match(notJson.error.message, /not JSON/);
  });

  test("bad ports, timeouts and read sizes are refused before any request is sent", async () => {
    for (const steps of [
      [{ op: "client.dial", args: [PEER, 0] }],
      [{ op: "client.dial", args: [PEER, 65536] }],
      [{ op: "client.listen", args: [1.5] }],
      [{ op: "client.ping", args: [PEER, { timeoutMs: 60001 }] }],
      [{ op: "client.ping", args: [PEER, { timeoutMs: 0 }] }],
    ]) {
      const { error, requests } = await run([], steps);
      assert.equal(error?.code, "bad_request", JSON.stringify(steps));
      assert.equal(error.status, 0);
      assert.deepEqual(requests, [], JSON.stringify(steps));
    }
    const read = await run([{ json: { conn: 1, peer: PEER, port: 7, local_port: 1 } }], [
      { op: "client.dial", args: [PEER, 7] },
      { op: "last.read", args: [{ maxBytes: 0 }] },
    ]);
    assert.equal(read.error.code, "bad_request");
    assert.equal(read.requests.length, 1);
  });
});
