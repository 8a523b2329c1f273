// Recognising the errors the module throws. They are plain `Error` objects whose `name` is
// "PilotError" and which carry a stable `code` (see README "Errors").

/** The `name` of every error the module throws. */
export const PILOT_ERROR_NAME = "PilotError";

/** Whether `error` was thrown by pilot-wasm (optionally: with this `code`). */
export function isPilotError(error, code) {
  return (
    error instanceof Error &&
    error.name === PILOT_ERROR_NAME &&
    typeof error.code === "string" &&
    (code === undefined || error.code === code)
  );
}
