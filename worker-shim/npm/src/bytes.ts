/** Standard base64 for the API's `data` fields, and UTF-8 for text payloads. */

/** Bytes turned into a binary string per call to `String.fromCharCode`, to bound the argument list. */
const BINARY_STRING_CHUNK_BYTES = 0x8000;

/** Standard base64 (with padding) of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let start = 0; start < bytes.length; start += BINARY_STRING_CHUNK_BYTES) {
    binary += String.fromCharCode(...bytes.subarray(start, start + BINARY_STRING_CHUNK_BYTES));
  }
  return btoa(binary);
}

/** The bytes of standard base64 `text`; throws a `TypeError` naming `field` when it is not base64. */
export function fromBase64(text: string, field: string): Uint8Array {
  let binary: string;
  try {
    binary = atob(text);
  } catch (cause) {
    throw new TypeError(`${field} is not standard base64`, { cause });
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** `data` as bytes: strings are UTF-8 encoded, byte arrays pass through. */
export function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}
