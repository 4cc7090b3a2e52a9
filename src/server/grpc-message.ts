import type { NodeHandler } from "./one-port.js";

/**
 * Rewrites the `grpc-message` trailer of gRPC responses with the percent-encoding the gRPC spec defines:
 * only bytes outside 0x20–0x7E, and `%` itself, are encoded. connect-es encodes with encodeURIComponent
 * (`:` → `%3A`, `=` → `%3D`), which is valid, but @grpc/grpc-js decodes with decodeURI, which leaves those
 * escapes in place, so its callers would read `messages%3A must ...`. The spec's minimal form decodes to
 * the same text in every compliant client.
 */
export function withSpecGrpcMessage(handler: NodeHandler): NodeHandler {
  return (req, res) => {
    const contentType = req.headers["content-type"];
    if (
      typeof contentType === "string" &&
      contentType.startsWith("application/grpc") &&
      !contentType.startsWith("application/grpc-web")
    ) {
      const addTrailers = res.addTrailers.bind(res) as (headers: Record<string, unknown>) => void;
      (res as { addTrailers: (headers: Record<string, unknown>) => void }).addTrailers = (headers) => {
        const message = headers["grpc-message"];
        if (typeof message === "string") headers["grpc-message"] = toSpecEncoding(message);
        addTrailers(headers);
      };
    }
    handler(req, res);
  };
}

const encoder = new TextEncoder();

/** Decodes a percent-encoded grpc-message and re-encodes it minimally (exported for tests). */
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
