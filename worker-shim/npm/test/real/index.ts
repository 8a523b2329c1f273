// The Worker behind real-node.test.mjs. `POST /run` takes {steps} and performs them with a
// PilotClient on the real PilotNode (the package's dist/, as a consumer gets it).
import { isPilotError, PilotClient } from "../../dist/index.js";
import { runSteps, type Step } from "../runner.js";

export { PilotNode } from "../../dist/index.js";

interface Env {
  PILOT: DurableObjectNamespace;
}

/** Every run talks to the same node, so state (listeners, identity) carries across runs. */
const NODE_NAME = "real-node-test";

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { steps } = (await request.json()) as { steps: Step[] };
    const client = PilotClient.fromNamespace(env.PILOT, NODE_NAME);
    return Response.json(await runSteps(client, steps, isPilotError));
  },
};
