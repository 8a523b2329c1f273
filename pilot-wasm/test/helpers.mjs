// Shared helpers of the Node tests: the package under test, vectors and hex.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is pilot-wasm/test/helpers.mjs). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Where the Go-generated vectors live: $PILOT_VECTORS_DIR, else ../shared/vectors. */
export const VECTORS_DIR =
  process.env.PILOT_VECTORS_DIR ?? resolve(REPO_ROOT, "..", "shared", "vectors");

/** Loads one vector file. */
export function loadVectors(file) {
  return JSON.parse(readFileSync(join(VECTORS_DIR, file), "utf8"));
}

export function unhex(text) {
  return Uint8Array.from(Buffer.from(text, "hex"));
}

export function hex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

/** Runs `fn` and returns the PilotError code it threw, or fails when it did not throw one. */
export function codeOf(fn) {
  try {
    fn();
  } catch (error) {
    if (error?.name !== "PilotError" || typeof error.code !== "string") throw error;
    return error.code;
  }
  throw new Error("expected a PilotError, nothing was thrown");
}
