// The README's examples (examples/handshake.mjs, examples/node.mjs) run and print what the README says.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

test("examples/handshake.mjs prints deliver, replay and the error code", () => {
  const script = fileURLToPath(new URL("../examples/handshake.mjs", import.meta.url));
  const output = execFileSync(process.execPath, [script], { encoding: "utf8" });
  assert.deepEqual(output.trim().split("\n"), ["deliver hello, Bob", "replay", "PILS_TOO_SHORT"]);
});

test("examples/node.mjs: two Nodes exchange keys, echo a stream and get a data exchange ACK", () => {
  const script = fileURLToPath(new URL("../examples/node.mjs", import.meta.url));
  const output = execFileSync(process.execPath, [script], { encoding: "utf8" });
  assert.deepEqual(output.trim().split("\n"), [
    "session: true",
    "node 1 read: hello, echo",
    "node 1: data exchange acked 5 bytes",
  ]);
});
