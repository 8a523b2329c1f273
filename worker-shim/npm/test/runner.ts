// Shared by the test Workers (fake/ and real/): performs a list of steps on a PilotClient and
// reports each step's result, or the error that stopped the run, as JSON.
// The client is passed in with its own module's `isPilotError`, so the same runner serves the
// source (fake/) and the built package (real/), whose classes are distinct.
import type { PilotError } from "../src/client.js";

/** The guard of the client module under test. */
export type PilotErrorGuard = (error: unknown) => error is Pick<PilotError, "name" | "code" | "message" | "hint" | "status">;

/**
 * A step: a method of the client (`client.ping`), of the previous step's result (`last.read`),
 * or of a result kept under a name by an earlier step's `save` (`conn.read`).
 */
export interface Step {
  op: string;
  args?: unknown[];
  save?: string;
}

/** What a run reports: one encoded result per completed step, and the error, if any. */
export interface RunReport {
  results: unknown[];
  error: unknown;
}

/** Performs `steps` in order, stopping at the first error. */
export async function runSteps(
  client: object,
  steps: Step[],
  isPilotError: PilotErrorGuard,
): Promise<RunReport> {
  const results: unknown[] = [];
  const saved = new Map<string, unknown>([["client", client]]);
  for (const step of steps) {
    try {
      const result = await perform(saved, step);
      saved.set("last", result);
      if (step.save !== undefined) saved.set(step.save, result);
      results.push(encode(result));
    } catch (e) {
      return { results, error: describeError(e, isPilotError) };
    }
  }
  return { results, error: null };
}

async function perform(saved: Map<string, unknown>, step: Step): Promise<unknown> {
  const [target, method] = step.op.split(".") as [string, string];
  const receiver = saved.get(target) as Record<string, unknown> | null | undefined;
  const fn = receiver?.[method];
  if (typeof fn !== "function") throw new Error(`test step ${step.op}: no such method`);
  return await fn.apply(receiver, (step.args ?? []).map(decode));
}

function describeError(e: unknown, isPilotError: PilotErrorGuard) {
  if (isPilotError(e)) {
    return { pilot: true, name: e.name, code: e.code, message: e.message, hint: e.hint, status: e.status };
  }
  return { pilot: false, name: (e as Error).name, message: String(e) };
}

/** Byte arrays travel as {bytes: base64} in both directions; class instances as their fields. */
function decode(arg: unknown): unknown {
  if (typeof arg === "object" && arg !== null && "bytes" in arg) {
    return fromBase64((arg as { bytes: string }).bytes);
  }
  return arg;
}

function encode(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: toBase64(value) };
  if (Array.isArray(value)) return value.map(encode);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  }
  return value === undefined ? null : value;
}

/** Base64 written independently of the client's own (src/bytes.ts), so tests cross-check it. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
