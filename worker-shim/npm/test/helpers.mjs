// Shared by the tests: start a Worker in workerd (wrangler's local runtime, loopback only,
// no telemetry, no Cloudflare API calls), and the native binaries of a loopback world.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

// No telemetry and no Cloudflare API calls from the local runtime.
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

/** Longest wait for a spawned binary to report its listening address, in ms. */
const STARTUP_LIMIT_MS = 30_000;

/**
 * Spawns `bin` from PILOT_BIN_DIR (cargo's target/debug) with `args` and resolves to
 * `{ child, match }` once a line of its stdout or stderr matches `pattern`. The caller stops it
 * with `stop(child)`.
 */
export function spawnListening(bin, args, pattern) {
  const dir = process.env.PILOT_BIN_DIR;
  if (!dir) throw new Error("PILOT_BIN_DIR is not set: run through `make test-worker-ts`");
  const child = spawn(join(dir, bin), args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", RUST_LOG: process.env.RUST_LOG ?? "info" },
  });
  const output = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop(child);
      reject(new Error(`${bin} did not start within ${STARTUP_LIMIT_MS} ms:\n${output.join("\n")}`));
    }, STARTUP_LIMIT_MS);
    const onLine = (line) => {
      output.push(line);
      const match = pattern.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, match });
      }
    };
    createInterface({ input: child.stdout }).on("line", onLine);
    createInterface({ input: child.stderr }).on("line", onLine);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited (${code}) before listening:\n${output.join("\n")}`));
    });
  });
}

/** Stops a child started by spawnListening (SIGTERM: the binaries shut down cleanly on it). */
export function stop(child) {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
}

/**
 * A loopback world: a pilot-registry, a pilot-relay in open mode pointing at it, and with
 * `peer: true` a native public pilot-peer serving echo (7) and data exchange (1001).
 * Resolves to `{ relayUrl, peerAddress, stop }`; `stop()` ends every process it started.
 */
export async function startWorld({ peer = false } = {}) {
  const children = [];
  const work = mkdtempSync(join(tmpdir(), "pilot-ts-world-"));
  const stopAll = () => {
    for (const child of children.reverse()) stop(child);
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const registry = await spawnListening(
      "pilot-registry",
      ["--listen", "127.0.0.1:0"],
      /listening on (127\.0\.0\.1:\d+)/,
    );
    children.push(registry.child);
    const registryAddr = registry.match[1];
    const relay = await spawnListening(
      "pilot-relay",
      ["--open", "--listen", "127.0.0.1:0", "--udp-bind-ip", "127.0.0.1"]
        .concat(["--allow-dest", "127.0.0.0/8", "--registry", registryAddr]),
      /pilot-relay listening.*listen=(127\.0\.0\.1:\d+)/,
    );
    children.push(relay.child);
    let peerAddress;
    if (peer) {
      const identity = join(work, "peer-identity.json");
      const common = ["--registry", registryAddr, "--identity", identity];
      const { stdout } = await promisify(execFile)(
        join(process.env.PILOT_BIN_DIR, "pilot-peer"),
        [...common, "--json", "info"],
        { timeout: STARTUP_LIMIT_MS },
      );
      peerAddress = JSON.parse(stdout).address;
      const running = await spawnListening("pilot-peer", [...common, "--public", "run"], /registered/);
      children.push(running.child);
    }
    return { relayUrl: `ws://${relay.match[1]}`, peerAddress, stop: stopAll };
  } catch (error) {
    stopAll();
    throw error;
  }
}
