// `wrangler deploy --dry-run` (bundles, uploads nothing) of the template Worker
// (worker-shim/wrangler.toml) and of the TypeScript example: both must bundle, and the
// example's bundle must carry the package's wasm unchanged. Needs `make worker-npm` first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const shim = join(pkg, "..");
const example = join(shim, "examples", "ts-worker");
const wrangler = join(pkg, "node_modules", ".bin", "wrangler");
/** Upper bound for one dry run (the template's build step may run worker-build), in ms. */
const DRY_RUN_LIMIT_MS = 10 * 60_000;

/** Runs `wrangler deploy --dry-run` for `config` from `cwd` into a fresh directory. */
function dryRun(cwd, config) {
  const outdir = mkdtempSync(join(tmpdir(), "pilot-dry-run-"));
  const result = spawnSync(wrangler, ["deploy", "--dry-run", "--outdir", outdir, "--config", config], {
    cwd,
    encoding: "utf8",
    timeout: DRY_RUN_LIMIT_MS,
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      FORCE_COLOR: "0",
    },
  });
  return { outdir, result, log: `${result.stdout}\n${result.stderr}` };
}

test("the template worker-shim/wrangler.toml bundles with wrangler deploy --dry-run", (t) => {
  const { outdir, result, log } = dryRun(shim, join(shim, "wrangler.toml"));
  t.after(() => rmSync(outdir, { recursive: true, force: true }));
  assert.equal(result.status, 0, log);
  const files = readdirSync(outdir);
  assert.ok(files.some((f) => f.endsWith(".wasm")), `no wasm in ${files}`);
  assert.ok(files.some((f) => f.endsWith(".js")), `no JS in ${files}`);
});

test("the TypeScript example bundles the package's PilotNode and its wasm unchanged", (t) => {
  const { outdir, result, log } = dryRun(example, join(example, "wrangler.toml"));
  t.after(() => rmSync(outdir, { recursive: true, force: true }));
  assert.equal(result.status, 0, log);
  const files = readdirSync(outdir);
  const wasm = files.filter((f) => f.endsWith(".wasm"));
  assert.equal(wasm.length, 1, `wasm modules: ${files}`);
  const shipped = readFileSync(join(pkg, "dist", "worker", "index_bg.wasm"));
  assert.ok(readFileSync(join(outdir, wasm[0])).equals(shipped), "bundled wasm differs from the package's");
  const entry = readFileSync(join(outdir, "index.js"), "utf8");
  assert.match(entry, /export\s*\{[^}]*\bPilotNode\b/, "the bundle does not export PilotNode");
});

test("npm pack ships the client, its types, the PilotNode module and its wasm", () => {
  const result = spawnSync("npm", ["pack", "--dry-run", "--json"], { cwd: pkg, encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  const [{ files }] = JSON.parse(result.stdout);
  const paths = files.map((f) => f.path).sort();
  for (const path of [
    "README.md",
    "package.json",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/client.js",
    "dist/client.d.ts",
    "dist/errors.js",
    "dist/bytes.js",
    "dist/worker/index.js",
    "dist/worker/index.d.ts",
    "dist/worker/index_bg.wasm",
  ]) {
    assert.ok(paths.includes(path), `${path} missing from the package: ${paths}`);
  }
  assert.ok(!paths.some((p) => p.startsWith("src/") || p.startsWith("test/")), `${paths}`);
});
