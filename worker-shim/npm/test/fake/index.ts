// The Worker behind client.test.mjs. `POST /run` takes {script, steps}: a fresh FakePilotNode
// is loaded with the scripted answers, a PilotClient over its stub performs the steps, and the
// answer reports the steps' results (or the error) and every request the fake received.
import { isPilotError, PilotClient } from "../../src/client.js";
import { fromBase64, runSteps, toBase64, type Step } from "../runner.js";

interface Env {
  FAKE: DurableObjectNamespace;
}

/** One scripted answer of the fake: status, headers and a text or base64 body; or a throw. */
interface Scripted {
  status?: number;
  headers?: Record<string, string>;
  json?: unknown;
  text?: string;
  bytes?: string;
  throw?: string;
}

/** What the fake recorded of one request. */
interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | null;
  body: string;
}

/** Control routes of the fake live on a host the client never uses. */
const CONTROL_ORIGIN = "https://fake.control";

export class FakePilotNode implements DurableObject {
  #script: Scripted[] = [];
  #requests: Recorded[] = [];

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.origin === CONTROL_ORIGIN) return this.#control(url.pathname, request);
    const body = new Uint8Array(await request.arrayBuffer());
    this.#requests.push({
      method: request.method,
      path: `${url.origin}${url.pathname}`,
      query: Object.fromEntries(url.searchParams),
      contentType: request.headers.get("content-type"),
      body: toBase64(body),
    });
    const next = this.#script.shift();
    if (next === undefined) return new Response("the test scripted no answer", { status: 599 });
    if (next.throw !== undefined) throw new Error(next.throw);
    return answer(next);
  }

  async #control(path: string, request: Request): Promise<Response> {
    if (path === "/script") {
      this.#script = (await request.json()) as Scripted[];
      return Response.json({});
    }
    return Response.json(this.#requests);
  }
}

function answer(s: Scripted): Response {
  const init = { status: s.status ?? 200, headers: s.headers ?? {} };
  if (s.json !== undefined) return Response.json(s.json, init);
  if (s.bytes !== undefined) return new Response(fromBase64(s.bytes), init);
  return new Response(s.text ?? null, init);
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { script, steps } = (await request.json()) as { script: Scripted[]; steps: Step[] };
    const stub = env.FAKE.get(env.FAKE.newUniqueId());
    await stub.fetch(`${CONTROL_ORIGIN}/script`, { method: "POST", body: JSON.stringify(script) });

    const { results, error } = await runSteps(new PilotClient(stub), steps, isPilotError);
    const requests = await (await stub.fetch(`${CONTROL_ORIGIN}/requests`)).json();
    return Response.json({ results, error, requests });
  },
};
