/**
 * Types of the worker-build output of the `pilot-worker` crate (worker-shim/build/index.js,
 * copied next to this file by `npm run build`).
 */

/**
 * The Durable Object that is a Pilot peer: one object, one node identity (kept in its SQLite
 * storage). Bind it in wrangler.toml with a `new_sqlite_classes` migration and talk to it with
 * `PilotClient`.
 */
export declare class PilotNode {
  /** Made by the Workers runtime, never by hand. */
  constructor(state: unknown, env: unknown);
  /** The HTTP API (`https://pilot.internal/v1/...`, see worker-shim/API.md). */
  fetch(request: Request): Promise<Response>;
}

/** The Worker entrypoint of the template (`worker-shim/wrangler.toml`). */
declare const entrypoint: unknown;
export default entrypoint;
