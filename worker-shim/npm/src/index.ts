/**
 * `@pilot-workers/worker`: a Cloudflare Worker as a Pilot Protocol peer.
 *
 * - `PilotNode`: the Durable Object class that is the peer (built from the `pilot-worker` Rust
 *   crate by worker-build). Re-export it from your Worker's entry module and bind it in
 *   wrangler.toml.
 * - `PilotClient`: a typed client of the object's HTTP API.
 *
 * Importing this module loads the wasm; a Worker that only talks to a `PilotNode` in another
 * script imports `@pilot-workers/worker/client` instead.
 */

export { PilotNode } from "./worker/index.js";
export * from "./client.js";
