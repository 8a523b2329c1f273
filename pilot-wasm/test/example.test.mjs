// The README's example (examples/handshake.mjs) runs and prints what the README says.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

test("examples/handshake.mjs prints deliver, replay and the error code", () => {
  const script = fileURLToPath(new URL("../examples/handshake.mjs", import.meta.url));
  const output = execFileSync(process.execPath, [script], { encoding: "utf8" });
  assert.deepEqual(output.trim().split("\n"), ["deliver hello, Bob", "replay", "PILS_TOO_SHORT"]);
});
