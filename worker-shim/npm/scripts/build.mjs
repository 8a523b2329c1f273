// `npm run build`: compiles the client (tsc) into dist/ and copies the worker-build output of
// the pilot-worker crate (worker-shim/build: index.js + index_bg.wasm) into dist/worker/, so
// the package carries the PilotNode Durable Object and a consumer's wrangler bundles its wasm.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const workerBuild = process.env.PILOT_WORKER_BUILD ?? join(root, "..", "build");
const dist = join(root, "dist");
const shimFiles = ["index.js", "index_bg.wasm"];

const missing = shimFiles.filter((f) => !existsSync(join(workerBuild, f)));
if (missing.length > 0) {
  console.error(
    `error: ${missing.join(", ")} missing in ${relative(process.cwd(), workerBuild) || "."}\n` +
      "hint: build the Worker first: `make worker` at the repository root " +
      "(worker-build --release in worker-shim/), or point PILOT_WORKER_BUILD at its output",
  );
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", join(root, "tsconfig.json")], {
  stdio: "inherit",
});
if (tsc.status !== 0) {
  console.error(
    tsc.error ? `error: tsc did not run: ${tsc.error.message}\nhint: run \`npm ci\` first` : "error: tsc failed",
  );
  process.exit(1);
}

mkdirSync(join(dist, "worker"), { recursive: true });
for (const f of shimFiles) copyFileSync(join(workerBuild, f), join(dist, "worker", f));
copyFileSync(join(root, "src", "worker", "index.d.ts"), join(dist, "worker", "index.d.ts"));
console.log(`built ${relative(process.cwd(), dist) || "dist"} (client + PilotNode from ${relative(root, workerBuild)})`);
