// Example Worker: hosts one Pilot peer (the PilotNode Durable Object) and exposes a few of
// its operations as plain HTTP routes, through the typed PilotClient.
//
//   GET  /info                      the node's identity and state
//   POST /ping?peer=0:0000.0000.0007 round-trip time to a peer
//
// PilotError answers keep the API's shape: {"error":{"code","message","hint"}}.
import { isPilotError, PilotClient } from "@pilot-workers/worker";

// workerd finds the Durable Object class among the entry module's exports.
export { PilotNode } from "@pilot-workers/worker";

interface Env {
  PILOT: DurableObjectNamespace;
}

/** One node for the whole Worker: every request talks to the object of this name. */
const NODE_NAME = "example";

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const pilot = PilotClient.fromNamespace(env.PILOT, NODE_NAME);
    try {
      if (request.method === "GET" && url.pathname === "/info") return await info(pilot);
      if (request.method === "POST" && url.pathname === "/ping") {
        const peer = url.searchParams.get("peer") ?? "";
        return Response.json({ peer, rtt_ms: await pilot.ping(peer) });
      }
      return Response.json({ routes: ["GET /info", "POST /ping?peer=<address>"] }, { status: 404 });
    } catch (error) {
      if (isPilotError(error)) {
        const status = error.status || 500;
        const body = { error: { code: error.code, message: error.message, hint: error.hint } };
        return Response.json(body, { status });
      }
      throw error;
    }
  },
} satisfies ExportedHandler<Env>;

/** The node's info as JSON, with the public key in base64 and a one-word status. */
async function info(pilot: PilotClient): Promise<Response> {
  const node = await pilot.info();
  return Response.json({
    status: node.registered ? "registered" : "not_ready",
    address: node.address,
    node_id: node.nodeId,
    hostname: node.hostname,
    public_key: btoa(String.fromCharCode(...node.publicKey)),
    transport: node.transport,
    endpoint: node.endpoint,
  });
}
