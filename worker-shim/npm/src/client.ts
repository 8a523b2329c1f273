/**
 * A typed client for the HTTP API of the `PilotNode` Durable Object (`worker-shim/API.md`).
 *
 * The client only speaks HTTP to a Durable Object stub, so it carries no wasm: import it from
 * `@pilot-workers/worker/client` in a Worker that binds a `PilotNode` living in another script.
 */

import { bytesOf, fromBase64, toBase64 } from "./bytes.js";
import { errorFromResponse, PilotError } from "./errors.js";

export {
  isPilotError,
  isPilotErrorCode,
  PILOT_ERROR_CODES,
  PilotError,
  type PilotErrorCode,
  type PilotErrorOptions,
} from "./errors.js";

/** Origin of the API routes on the stub; the host is never resolved (the stub routes to the object). */
export const DEFAULT_BASE_URL = "https://pilot.internal";
/** Longest wait the API accepts for an operation, in milliseconds. */
export const MAX_TIMEOUT_MS = 60_000;
/** Header that marks the end of a stream on an empty read answer. */
const EOF_HEADER = "pilot-eof";
/** Highest port of spec §1.3's 16-bit port space. */
const MAX_PORT = 65_535;

/** What the client needs from a Durable Object stub (a `DurableObjectStub` fits). */
export interface PilotStub {
  /** Sends a request to the Durable Object. */
  fetch(request: Request): Promise<Response>;
}

/** What the client needs from a Durable Object namespace (a `DurableObjectNamespace` fits). */
export interface PilotNamespace<Id = unknown> {
  /** The ID of the object called `name`. */
  idFromName(name: string): Id;
  /** A stub for the object `id`. */
  get(id: Id): PilotStub;
}

/** Options of {@link PilotClient}. */
export interface PilotClientOptions {
  /** Origin the routes are requested under; defaults to {@link DEFAULT_BASE_URL}. */
  baseUrl?: string;
}

/** Options of an operation that waits. */
export interface WaitOptions {
  /** How long the node waits, 1..60000 ms; the node's default (10000) when left out. */
  timeoutMs?: number;
}

/** Options of {@link PilotConn.read}. */
export interface ReadOptions extends WaitOptions {
  /** Most bytes to return at once (at least 1); the node's default when left out. */
  maxBytes?: number;
}

/** The node's identity and state (`GET /v1/info`). */
export interface NodeInfo {
  /** Our address (`0:0000.0000.0004`); empty before the first registration. */
  address: string;
  /** Our node ID; 0 before the first registration. */
  nodeId: number;
  /** Our hostname; empty if none. */
  hostname: string;
  /** Our Ed25519 public key (32 bytes). */
  publicKey: Uint8Array;
  /** The transport in use (`relay`). */
  transport: string;
  /** Our UDP endpoint as peers see it; empty while the transport is down. */
  endpoint: string;
  /** Whether the registry holds our current endpoint. */
  registered: boolean;
  /** Whether we registered as a public node. */
  public: boolean;
  /** Datagrams and events dropped because a bounded queue was full. */
  dropped: number;
}

/** A trust request waiting for our verdict (`GET /v1/handshakes`). */
export interface PendingHandshake {
  /** The requesting node's ID (what approve/reject take). */
  node: number;
  /** The requesting node's address. */
  address: string;
  /** Why it asks for trust. */
  justification: string;
}

/** A peer we trust (`GET /v1/trusted`). */
export interface TrustedPeer {
  /** The peer's node ID. */
  node: number;
  /** The peer's address. */
  address: string;
}

/** A datagram received on a port (`POST /v1/recv-from`). */
export interface Datagram {
  /** The sender's address. */
  from: string;
  /** The sender's port. */
  srcPort: number;
  /** Our port it arrived on. */
  port: number;
  /** The payload. */
  data: Uint8Array;
}

/** An event received on a subscription (`POST /v1/subscriptions/{id}/next`). */
export interface PilotEvent {
  /** The topic it was published on. */
  topic: string;
  /** The payload. */
  data: Uint8Array;
}

/** Frame types of the data exchange service (port 1001) that {@link PilotClient.sendMessage} sends. */
export type MessageType = "text" | "json" | "binary";

/** A JSON object as parsed from an answer. */
type JsonObject = Record<string, unknown>;

/** One request to the node: route, optional query, and a JSON or raw body. */
export interface ApiCall {
  method: "GET" | "POST";
  path: string;
  query?: Record<string, number | string | undefined>;
  json?: JsonObject;
  bytes?: Uint8Array;
}

/** A client of one `PilotNode` Durable Object. Every method rejects with a {@link PilotError}. */
export class PilotClient {
  readonly #stub: PilotStub;
  readonly #baseUrl: string;

  /** A client of the object behind `stub`. */
  constructor(stub: PilotStub, options: PilotClientOptions = {}) {
    this.#stub = stub;
    this.#baseUrl = (options.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
  }

  /** A client of the object called `name` in `namespace` (one name, one node identity). */
  static fromNamespace<Id>(
    namespace: PilotNamespace<Id>,
    name: string,
    options?: PilotClientOptions,
  ): PilotClient {
    return new PilotClient(namespace.get(namespace.idFromName(name)), options);
  }

  /** The node's identity and state. */
  async info(): Promise<NodeInfo> {
    const route = "GET /v1/info";
    const a = await this.#json(route, { method: "GET", path: "/v1/info" });
    return {
      address: str(route, a, "address"),
      nodeId: num(route, a, "node_id"),
      hostname: str(route, a, "hostname"),
      publicKey: b64(route, a, "public_key"),
      transport: str(route, a, "transport"),
      endpoint: str(route, a, "endpoint"),
      registered: bool(route, a, "registered"),
      public: bool(route, a, "public"),
      dropped: typeof a.dropped === "number" ? a.dropped : 0,
    };
  }

  /** Claims `hostname` at the registry; resolves to the hostname now held. */
  async setHostname(hostname: string): Promise<string> {
    const route = "POST /v1/hostname";
    const a = await this.#json(route, { method: "POST", path: "/v1/hostname", json: { hostname } });
    return str(route, a, "hostname");
  }

  /** The address registered under `hostname`. */
  async resolveHostname(hostname: string): Promise<string> {
    const route = "GET /v1/resolve-hostname";
    const call: ApiCall = { method: "GET", path: "/v1/resolve-hostname", query: { hostname } };
    return str(route, await this.#json(route, call), "address");
  }

  /** Pings `peer` (an address) and resolves to the round-trip time in milliseconds. */
  async ping(peer: string, options: WaitOptions = {}): Promise<number> {
    const route = "POST /v1/ping";
    const json = { peer, timeout_ms: timeoutOf(options) };
    return num(route, await this.#json(route, { method: "POST", path: "/v1/ping", json }), "rtt_ms");
  }

  /** Asks `peer` for trust, saying why; resolves once the request is sent. */
  async handshake(peer: string, justification: string): Promise<void> {
    const json = { peer, justification };
    await this.#json("POST /v1/handshake", { method: "POST", path: "/v1/handshake", json });
  }

  /** Trust requests waiting for approval or rejection. */
  async pendingHandshakes(): Promise<PendingHandshake[]> {
    const route = "GET /v1/handshakes";
    const a = await this.#json(route, { method: "GET", path: "/v1/handshakes" });
    return list(route, a, "pending").map((p) => ({
      node: num(route, p, "node"),
      address: str(route, p, "address"),
      justification: str(route, p, "justification"),
    }));
  }

  /** Approves the pending trust request of node `node`. */
  async approveHandshake(node: number): Promise<void> {
    const json = { node };
    await this.#json("POST /v1/handshakes/approve", {
      method: "POST",
      path: "/v1/handshakes/approve",
      json,
    });
  }

  /** Rejects the pending trust request of node `node`, optionally saying why. */
  async rejectHandshake(node: number, reason?: string): Promise<void> {
    const json = { node, reason };
    await this.#json("POST /v1/handshakes/reject", {
      method: "POST",
      path: "/v1/handshakes/reject",
      json,
    });
  }

  /** The peers we trust. */
  async trustedPeers(): Promise<TrustedPeer[]> {
    const route = "GET /v1/trusted";
    const a = await this.#json(route, { method: "GET", path: "/v1/trusted" });
    return list(route, a, "trusted").map((p) => ({
      node: num(route, p, "node"),
      address: str(route, p, "address"),
    }));
  }

  /** Opens a stream to `port` at `peer`; resolves once the stream is open. */
  async dial(peer: string, port: number, options: WaitOptions = {}): Promise<PilotConn> {
    const route = "POST /v1/dial";
    const json = { peer, port: portOf(port), timeout_ms: timeoutOf(options) };
    const a = await this.#json(route, { method: "POST", path: "/v1/dial", json });
    return new PilotConn(this, num(route, a, "conn"), {
      peer: str(route, a, "peer"),
      peerPort: num(route, a, "port"),
      localPort: num(route, a, "local_port"),
    });
  }

  /** Listens for streams on `port`; take them with {@link PilotListener.accept}. */
  async listen(port: number): Promise<PilotListener> {
    const route = "POST /v1/listen";
    const json = { port: portOf(port) };
    const a = await this.#json(route, { method: "POST", path: "/v1/listen", json });
    return new PilotListener(this, num(route, a, "port"));
  }

  /** Sends one datagram of `data` to `port` at `peer`. */
  async sendTo(peer: string, port: number, data: Uint8Array): Promise<void> {
    const json = { peer, port: portOf(port), data: toBase64(data) };
    await this.#json("POST /v1/send-to", { method: "POST", path: "/v1/send-to", json });
  }

  /** The next datagram that arrives on `port` (which must be listened on). */
  async recvFrom(port: number, options: WaitOptions = {}): Promise<Datagram> {
    const route = "POST /v1/recv-from";
    const json = { port: portOf(port), timeout_ms: timeoutOf(options) };
    const a = await this.#json(route, { method: "POST", path: "/v1/recv-from", json });
    return {
      from: str(route, a, "from"),
      srcPort: num(route, a, "src_port"),
      port: num(route, a, "port"),
      data: b64(route, a, "data"),
    };
  }

  /**
   * Sends a message to `peer`'s data exchange service (port 1001) and resolves to the peer's
   * answer line (`ACK TEXT 5 bytes`). Strings are sent as UTF-8.
   */
  async sendMessage(
    peer: string,
    type: MessageType,
    data: Uint8Array | string,
    options: WaitOptions = {},
  ): Promise<string> {
    return this.#sendExchange({ peer, type, data: toBase64(bytesOf(data)) }, options);
  }

  /** Sends `data` as a file called `filename` to `peer`'s data exchange service (port 1001). */
  async sendFile(
    peer: string,
    filename: string,
    data: Uint8Array,
    options: WaitOptions = {},
  ): Promise<string> {
    return this.#sendExchange({ peer, type: "file", data: toBase64(data), filename }, options);
  }

  /**
   * Publishes `data` on `topic` at `peer`'s event stream broker (port 1002); resolves once the
   * broker's stream took the event.
   */
  async publishEvent(
    peer: string,
    topic: string,
    data: Uint8Array | string,
    options: WaitOptions = {},
  ): Promise<void> {
    const json = { peer, topic, data: toBase64(bytesOf(data)), timeout_ms: timeoutOf(options) };
    await this.#json("POST /v1/publish", { method: "POST", path: "/v1/publish", json });
  }

  /** Subscribes to `topic` at `peer`'s event stream broker (port 1002). */
  async subscribe(peer: string, topic: string): Promise<Subscription> {
    const route = "POST /v1/subscribe";
    const a = await this.#json(route, { method: "POST", path: "/v1/subscribe", json: { peer, topic } });
    return new Subscription(this, idOf(route, a, "subscription"), topic);
  }

  async #sendExchange(fields: JsonObject, options: WaitOptions): Promise<string> {
    const route = "POST /v1/send-message";
    const json = { ...fields, timeout_ms: timeoutOf(options) };
    const a = await this.#json(route, { method: "POST", path: "/v1/send-message", json });
    return str(route, a, "reply");
  }

  /** Performs `call` and parses its JSON answer. */
  async #json(route: string, call: ApiCall): Promise<JsonObject> {
    const response = await this.request(route, call);
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new PilotError("internal", `${route} answered with a body that is not JSON`, {
        status: response.status,
        cause,
      });
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new PilotError("internal", `${route} answered with JSON that is not an object`, {
        status: response.status,
      });
    }
    return parsed as JsonObject;
  }

  /**
   * Performs one API request and returns the successful answer; an error answer or a failed
   * request rejects with a {@link PilotError}. `route` names the request in error messages.
   * The typed methods are built on it; use it only for routes they do not cover.
   */
  async request(route: string, call: ApiCall): Promise<Response> {
    const url = new URL(this.#baseUrl + call.path);
    for (const [key, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const request = new Request(url, requestInit(call));

    let response: Response;
    try {
      response = await this.#stub.fetch(request);
    } catch (cause) {
      throw new PilotError("internal", `${route} failed before an answer: ${String(cause)}`, {
        cause,
        hint: "check the Durable Object binding and the Worker's logs, then retry",
      });
    }
    if (!response.ok) throw await errorFromResponse(route, response);
    return response;
  }
}

/** A stream to a peer (from {@link PilotClient.dial} or {@link PilotListener.accept}). */
export class PilotConn {
  readonly #client: PilotClient;
  /** The node's ID of this connection. */
  readonly id: number;
  /** The peer's address. */
  readonly peer: string;
  /** The peer's port. */
  readonly peerPort: number;
  /** Our port. */
  readonly localPort: number;

  /** @internal Made by the client from a dial or accept answer. */
  constructor(
    client: PilotClient,
    id: number,
    ends: { peer: string; peerPort: number; localPort: number },
  ) {
    this.#client = client;
    this.id = id;
    this.peer = ends.peer;
    this.peerPort = ends.peerPort;
    this.localPort = ends.localPort;
  }

  /**
   * The next bytes of the stream (at least one byte), or `null` at the end of the stream.
   * Rejects with `timeout` when nothing arrives in time.
   */
  async read(options: ReadOptions = {}): Promise<Uint8Array | null> {
    const query = { max_bytes: maxBytesOf(options.maxBytes), timeout_ms: timeoutOf(options) };
    const response = await this.#client.request("POST /v1/conns/{conn}/read", {
      method: "POST",
      path: `/v1/conns/${this.id}/read`,
      query,
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length === 0 && response.headers.get(EOF_HEADER) === "1") return null;
    return bytes;
  }

  /** Queues all of `data` on the stream (waiting for window); resolves to the bytes queued. */
  async write(data: Uint8Array | string, options: WaitOptions = {}): Promise<number> {
    const route = "POST /v1/conns/{conn}/write";
    const response = await this.#client.request(route, {
      method: "POST",
      path: `/v1/conns/${this.id}/write`,
      query: { timeout_ms: timeoutOf(options) },
      bytes: bytesOf(data),
    });
    const answer: unknown = await response.json().catch(() => undefined);
    if (typeof answer !== "object" || answer === null) {
      throw new PilotError("internal", `${route} answered with a body that is not a JSON object`);
    }
    return num(route, answer as JsonObject, "written");
  }

  /** Closes the stream gracefully: the peer gets a FIN after the queued data. */
  async close(): Promise<void> {
    await this.#client.request("POST /v1/conns/{conn}/close", {
      method: "POST",
      path: `/v1/conns/${this.id}/close`,
    });
  }
}

/** A port we listen on for streams (from {@link PilotClient.listen}). */
export class PilotListener {
  readonly #client: PilotClient;
  /** The port. */
  readonly port: number;

  /** @internal Made by the client from a listen answer. */
  constructor(client: PilotClient, port: number) {
    this.#client = client;
    this.port = port;
  }

  /** The next stream a peer opens to this port; rejects with `timeout` if none arrives in time. */
  async accept(options: WaitOptions = {}): Promise<PilotConn> {
    const route = "POST /v1/accept";
    const response = await this.#client.request(route, {
      method: "POST",
      path: "/v1/accept",
      json: { port: this.port, timeout_ms: timeoutOf(options) },
    });
    const a = await jsonObject(route, response);
    return new PilotConn(this.#client, num(route, a, "conn"), {
      peer: str(route, a, "peer"),
      peerPort: num(route, a, "peer_port"),
      localPort: num(route, a, "port"),
    });
  }
}

/** A subscription to a topic at a peer's event stream broker (from {@link PilotClient.subscribe}). */
export class Subscription {
  readonly #client: PilotClient;
  /** The node's ID of this subscription. */
  readonly id: string;
  /** The topic subscribed to. */
  readonly topic: string;

  /** @internal Made by the client from a subscribe answer. */
  constructor(client: PilotClient, id: string, topic: string) {
    this.#client = client;
    this.id = id;
    this.topic = topic;
  }

  /**
   * The next event; rejects with `timeout` if none arrives in time, and with
   * `connection_closed` once the broker ended the subscription and every event was taken.
   */
  async next(options: WaitOptions = {}): Promise<PilotEvent> {
    const route = "POST /v1/subscriptions/{id}/next";
    const response = await this.#client.request(route, {
      method: "POST",
      path: `/v1/subscriptions/${encodeURIComponent(this.id)}/next`,
      json: { timeout_ms: timeoutOf(options) },
    });
    const a = await jsonObject(route, response);
    return { topic: str(route, a, "topic"), data: b64(route, a, "data") };
  }
}

function requestInit(call: ApiCall): RequestInit {
  if (call.bytes !== undefined) {
    return {
      method: call.method,
      headers: { "content-type": "application/octet-stream" },
      body: call.bytes,
    };
  }
  if (call.json !== undefined) {
    // JSON.stringify leaves out undefined fields: optional parameters simply vanish.
    return {
      method: call.method,
      headers: { "content-type": "application/json" },
      body: JSON.stringify(call.json),
    };
  }
  return { method: call.method };
}

async function jsonObject(route: string, response: Response): Promise<JsonObject> {
  const answer: unknown = await response.json().catch(() => undefined);
  if (typeof answer !== "object" || answer === null || Array.isArray(answer)) {
    throw new PilotError("internal", `${route} answered with a body that is not a JSON object`, {
      status: response.status,
    });
  }
  return answer as JsonObject;
}

/** `timeoutMs` checked against the API's bounds (1..60000), or undefined for the node's default. */
function timeoutOf(options: WaitOptions): number | undefined {
  const ms = options.timeoutMs;
  if (ms === undefined) return undefined;
  if (!Number.isInteger(ms) || ms < 1 || ms > MAX_TIMEOUT_MS) {
    throw new PilotError("bad_request", `timeoutMs ${ms} is not an integer in 1..${MAX_TIMEOUT_MS}`, {
      hint: `pass a whole number of milliseconds up to ${MAX_TIMEOUT_MS}, or leave it out for 10000`,
    });
  }
  return ms;
}

function portOf(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > MAX_PORT) {
    throw new PilotError("bad_request", `port ${port} is not an integer in 1..${MAX_PORT}`, {
      hint: "pass the peer's service port, e.g. 1000 for stdio or 7 for echo",
    });
  }
  return port;
}

function maxBytesOf(maxBytes: number | undefined): number | undefined {
  if (maxBytes === undefined) return undefined;
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new PilotError("bad_request", `maxBytes ${maxBytes} is not a positive integer`, {
      hint: "pass how many bytes you can take at once, or leave it out",
    });
  }
  return maxBytes;
}

function badAnswer(route: string, field: string, expected: string): PilotError {
  return new PilotError("internal", `${route} answered without ${expected} field "${field}"`, {
    hint: "the Worker and @pilot-workers/worker disagree on the API: build them from the same commit",
  });
}

function str(route: string, answer: JsonObject, field: string): string {
  const value = answer[field];
  if (typeof value !== "string") throw badAnswer(route, field, "the string");
  return value;
}

function num(route: string, answer: JsonObject, field: string): number {
  const value = answer[field];
  if (typeof value !== "number" || !Number.isFinite(value)) throw badAnswer(route, field, "the number");
  return value;
}

function bool(route: string, answer: JsonObject, field: string): boolean {
  const value = answer[field];
  if (typeof value !== "boolean") throw badAnswer(route, field, "the boolean");
  return value;
}

function b64(route: string, answer: JsonObject, field: string): Uint8Array {
  try {
    return fromBase64(str(route, answer, field), field);
  } catch (cause) {
    if (cause instanceof PilotError) throw cause;
    throw new PilotError("internal", `${route} answered with "${field}" that is not base64`, { cause });
  }
}

/** A subscription ID: the API gives a string or a number; the client keeps it as text. */
function idOf(route: string, answer: JsonObject, field: string): string {
  const value = answer[field];
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  throw badAnswer(route, field, "the ID");
}

function list(route: string, answer: JsonObject, field: string): JsonObject[] {
  const value = answer[field];
  if (!Array.isArray(value)) throw badAnswer(route, field, "the list");
  return value.map((item) => {
    if (typeof item !== "object" || item === null) throw badAnswer(route, field, "a list of objects in the");
    return item as JsonObject;
  });
}
