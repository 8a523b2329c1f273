// Types of the package entry points (node.js, workerd.js): the generated bindings plus the
// error helpers. The module is initialised on import; `initSync` and the default export of
// the generated file are for the "./raw" entry and need not be called.
export * from "./pilot_wasm.js";

/** Every error code the module throws (see README "Errors"). */
export type PilotErrorCode = string;

/** An error thrown by pilot-wasm: a plain Error named "PilotError" with a stable code. */
export interface PilotError extends Error {
  name: "PilotError";
  code: PilotErrorCode;
}

/** The `name` of every error the module throws. */
export declare const PILOT_ERROR_NAME: "PilotError";

/** Whether `error` was thrown by pilot-wasm (optionally: with this `code`). */
export declare function isPilotError(error: unknown, code?: PilotErrorCode): error is PilotError;
