/**
 * Errors of the PilotNode HTTP API (`worker-shim/API.md`): every failure the client reports is
 * a {@link PilotError} whose `code` is one of {@link PILOT_ERROR_CODES}.
 */

/** Every error code the API answers with, plus none other. */
export const PILOT_ERROR_CODES = [
  "bad_request",
  "not_ready",
  "timeout",
  "peer_unreachable",
  "not_trusted",
  "unknown_connection",
  "connection_closed",
  "queue_full",
  "registry_error",
  "internal",
] as const;

/** One of the API's error codes (`not_ready`, `timeout`, …). */
export type PilotErrorCode = (typeof PILOT_ERROR_CODES)[number];

/** What a caller can tell the error's constructor beyond code and message. */
export interface PilotErrorOptions {
  /** What to do about it; the API's `hint`. */
  hint?: string;
  /** HTTP status of the answer, or 0 when no answer arrived. */
  status?: number;
  /** The underlying failure, if any. */
  cause?: unknown;
}

/** A failure reported by the PilotNode Durable Object, or detected by the client before sending. */
export class PilotError extends Error {
  /** The verdict, for `switch`/`if` on what happened. */
  readonly code: PilotErrorCode;
  /** What to do about it (never empty). */
  readonly hint: string;
  /** HTTP status of the answer, or 0 when the request was never answered. */
  readonly status: number;

  /** An error with `code`, what happened (`message`) and what to do (`options.hint`). */
  constructor(code: PilotErrorCode, message: string, options: PilotErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PilotError";
    this.code = code;
    this.hint = options.hint ?? DEFAULT_HINTS[code];
    this.status = options.status ?? 0;
  }
}

/** Whether `error` is a {@link PilotError}, optionally with the given `code`. */
export function isPilotError(error: unknown, code?: PilotErrorCode): error is PilotError {
  return error instanceof PilotError && (code === undefined || error.code === code);
}

/** Whether `code` is one of the API's error codes. */
export function isPilotErrorCode(code: unknown): code is PilotErrorCode {
  return typeof code === "string" && (PILOT_ERROR_CODES as readonly string[]).includes(code);
}

/** The hint used when an answer carries none (mirrors the API's own defaults). */
const DEFAULT_HINTS: Record<PilotErrorCode, string> = {
  bad_request: "fix the request; worker-shim/API.md lists every route and body",
  not_ready: "retry shortly: the node reconnects to the relay and registers on its own",
  timeout: "retry, or raise timeoutMs (at most 60000)",
  peer_unreachable: "check that the peer is registered and online, then retry",
  not_trusted: "ask the peer for trust with handshake()",
  unknown_connection: "use a connection returned by dial() or accept()",
  connection_closed: "open a new connection",
  queue_full: "read pending data first, or retry later",
  registry_error: "check PILOT_RELAY_URL and the relay's registry, then retry",
  internal: "retry; if it persists, report it with the Worker's logs",
};

/** Longest piece of an unexpected answer body quoted in an error message, in characters. */
const QUOTED_BODY_MAX_CHARS = 200;

/**
 * The error an unsuccessful answer stands for. The API's error body gives code, message and
 * hint; an answer without one (a crash in the runtime, a proxy) becomes `internal` and quotes
 * the start of the body so the failure can still be traced.
 */
export async function errorFromResponse(route: string, response: Response): Promise<PilotError> {
  const text = await response.text().catch(() => "");
  const status = response.status;
  const body = parseErrorBody(text);
  if (body === undefined) {
    const quoted = text.slice(0, QUOTED_BODY_MAX_CHARS);
    return new PilotError(
      "internal",
      `${route} answered HTTP ${status} without an API error body: ${JSON.stringify(quoted)}`,
      { status, hint: "check that the binding points at the PilotNode class, and the Worker's logs" },
    );
  }
  if (!isPilotErrorCode(body.code)) {
    return new PilotError(
      "internal",
      `${route} answered HTTP ${status} with unknown error code ${JSON.stringify(body.code)}: ${body.message}`,
      { status, hint: body.hint || "update @pilot-workers/worker to match the Worker" },
    );
  }
  return new PilotError(body.code, body.message, { status, hint: body.hint || undefined });
}

interface ErrorFields {
  code: unknown;
  message: string;
  hint: string;
}

/** `{"error":{"code","message","hint"}}`, or undefined when `text` is not that shape. */
function parseErrorBody(text: string): ErrorFields | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof json !== "object" || json === null) return undefined;
  const error = (json as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return undefined;
  const { code, message, hint } = error as Record<string, unknown>;
  if (typeof code !== "string") return undefined;
  return {
    code,
    message: typeof message === "string" ? message : "(no message)",
    hint: typeof hint === "string" ? hint : "",
  };
}
