// Entry point for Cloudflare Workers (workerd, wrangler): a `.wasm` import is a compiled
// `WebAssembly.Module` there (wrangler's CompiledWasm rule), and code generation from bytes at
// run time is not allowed, so the module is instantiated from that import.
import wasmModule from "./pilot_wasm_bg.wasm";
import { initSync } from "./pilot_wasm.js";

initSync({ module: wasmModule });

export * from "./pilot_wasm.js";
export { isPilotError, PILOT_ERROR_NAME } from "./errors.js";
