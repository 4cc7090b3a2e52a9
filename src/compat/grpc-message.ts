/**
 * The gRPC spec's percent-encoding of `grpc-message`: only bytes outside 0x20–0x7E, and `%` itself, are
 * encoded. connect-es encodes with encodeURIComponent (`:` → `%3A`, `=` → `%3D`), which is valid, but
 * @grpc/grpc-js decodes with decodeURI, which leaves those escapes in place, so its callers would read
 * `messages%3A must ...`. The spec's minimal form decodes to the same text in every compliant client. The
 * gRPC codec (src/protocols/grpc/grpc-codec.ts) and the fallback lane (connect-dispatch.ts) both send it.
 */
const encoder = new TextEncoder();

/** Decodes a percent-encoded grpc-message and re-encodes it minimally. */
export function toSpecEncoding(value: string): string {
  let text: string;
  try {
    text = decodeURIComponent(value);
  } catch {
    return value;
  }
  let out = "";
  for (const byte of encoder.encode(text)) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
