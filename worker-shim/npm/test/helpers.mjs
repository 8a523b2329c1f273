// Shared by the tests: start a Worker in workerd (wrangler's local runtime, loopback only,
// no telemetry, no Cloudflare API calls) and dispose of it at the end.
process.env.WRANGLER_SEND_METRICS = "false";
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";

const { unstable_startWorker } = await import("wrangler");

/** Starts the Worker of `config` on 127.0.0.1 with an ephemeral port; `vars` override its vars. */
export async function startWorker(config, vars = {}) {
  const worker = await unstable_startWorker({
    config,
    bindings: Object.fromEntries(
      Object.entries(vars).map(([name, value]) => [name, { type: "plain_text", value }]),
    ),
    dev: { server: { hostname: "127.0.0.1", port: 0 }, inspector: false, watch: false },
  });
  await worker.ready;
  return worker;
}

/** Standard base64 of a UTF-8 string (Node's own encoder, independent of the client's). */
export const b64 = (text) => Buffer.from(text, "utf8").toString("base64");
