// Entry point for Node >= 20: compiles the module synchronously from the file next to this
// one, so `import { ... } from "@pilot-workers/pilot-wasm"` is ready to use at once.
import { readFileSync } from "node:fs";
import { initSync } from "./pilot_wasm.js";

initSync({ module: readFileSync(new URL("./pilot_wasm_bg.wasm", import.meta.url)) });

export * from "./pilot_wasm.js";
export { isPilotError, PILOT_ERROR_NAME } from "./errors.js";
