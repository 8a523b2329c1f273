// Types of the package entry points (node.js, workerd.js): the generated bindings plus the
// error helpers. The module is initialised on import; `initSync` and the default export of
// the generated file are for the "./raw" entry and need not be called.
export * from "./pilot_wasm.js";

/** Every error code the module throws (see README "Errors"). */
export type PilotErrorCode =
  | "ADDR_TOO_SHORT"
  | "ADDR_MISSING_COLON"
  | "ADDR_INVALID_NETWORK"
  | "ADDR_WRONG_GROUP_COUNT"
  | "ADDR_WRONG_GROUP_LENGTH"
  | "ADDR_INVALID_HEX_DIGIT"
  | "ADDR_NETWORK_MISMATCH"
  | "ADDR_MISSING_PORT"
  | "ADDR_INVALID_PORT"
  | "PACKET_TOO_SHORT"
  | "PACKET_TRUNCATED"
  | "PACKET_CHECKSUM_MISMATCH"
  | "PACKET_UNSUPPORTED_VERSION"
  | "PACKET_PAYLOAD_TOO_LARGE"
  | "CRYPTO_NON_CONTRIBUTORY"
  | "CRYPTO_KEY_DERIVATION"
  | "CRYPTO_INVALID_PUBLIC_KEY"
  | "CRYPTO_KEYPAIR_MISMATCH"
  | "CRYPTO_BAD_SIGNATURE"
  | "CRYPTO_NONCE_EXHAUSTED"
  | "CRYPTO_SEAL_FAILED"
  | "CRYPTO_OPEN_FAILED"
  | "PILK_TOO_SHORT"
  | "PILK_BAD_MAGIC"
  | "PILA_TOO_SHORT"
  | "PILA_BAD_MAGIC"
  | "PILA_IDENTITY_MISMATCH"
  | "PILA_INVALID_IDENTITY_KEY"
  | "PILA_BAD_SIGNATURE"
  | "PILS_TOO_SHORT"
  | "PILS_BAD_MAGIC"
  | "PILS_AUTHENTICATION"
  | "PILS_PACKET_TOO_LARGE"
  | "PILS_NONCE_EXHAUSTED"
  | "BEACON_EMPTY"
  | "BEACON_UNKNOWN_CODE"
  | "BEACON_UNEXPECTED_CODE"
  | "BEACON_TOO_SHORT"
  | "BEACON_BAD_IP_LENGTH"
  | "BEACON_SYNC_COUNT_MISMATCH"
  | "BEACON_RELAY_FRAME_TOO_LARGE"
  | "TCP_FRAME_TOO_LARGE"
  | "TCP_DECLARED_TOO_LARGE"
  | "PILF_TOO_SHORT"
  | "PILF_BAD_MAGIC"
  | "PILF_COUNT_OUT_OF_RANGE"
  | "PILF_INDEX_OUT_OF_RANGE"
  | "PILF_CHUNK_TOO_LONG"
  | "PILF_SHORT_CHUNK"
  | "PILF_RELAY_SENDER_MISMATCH"
  | "PILF_DUPLICATE"
  | "PILF_COUNT_MISMATCH"
  | "PILF_TOO_MANY_GROUPS"
  | "PILF_TOO_MANY_GROUPS_FOR_SOURCE"
  | "PILF_NESTED_FRAGMENT"
  | "PILF_REASSEMBLED_TOO_SHORT"
  | "PILF_FRAME_TOO_LARGE"
  | "DX_TRUNCATED"
  | "DX_FRAME_TOO_LARGE"
  | "DX_FILE_NAME_TOO_LONG"
  | "DX_FILE_NAME_NOT_UTF8"
  | "DX_FILE_NAME_NOT_BASE_NAME"
  | "DX_MALFORMED_REPLY"
  | "EVENT_TRUNCATED"
  | "EVENT_TOPIC_TOO_LONG"
  | "EVENT_PAYLOAD_TOO_LARGE"
  | "ARG_LENGTH"
  | "ARG_RANGE"
  | "ARG_INVALID_TIME"
  | "RNG_UNAVAILABLE"
  | "SESSION_DROPPED"
  | "SESSION_WRONG_SENDER";

/** An error thrown by pilot-wasm: a plain Error named "PilotError" with a stable code. */
export interface PilotError extends Error {
  name: "PilotError";
  code: PilotErrorCode;
}

/** The `name` of every error the module throws. */
export declare const PILOT_ERROR_NAME: "PilotError";

/** Whether `error` was thrown by pilot-wasm (optionally: with this `code`). */
export declare function isPilotError(error: unknown, code?: PilotErrorCode): error is PilotError;
