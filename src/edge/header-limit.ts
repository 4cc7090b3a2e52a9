import { positiveInt } from "../lib/options.js";
import type { EdgeEntry } from "./exchange.js";

export interface HeaderLimitEdgeOptions {
  /** Largest request header block in bytes, counted as RFC 9113 §6.5.2 does (name + value + 32 per field). */
  readonly maxHeaderBytes: number;
}

/**
 * Answers 431 to an HTTP/2 request whose header list is over the limit. nghttp2 advertises the limit
 * (SETTINGS_MAX_HEADER_LIST_SIZE, set by the one-port server) but does not refuse a larger list, so the
 * check is here, where the answer gets its access line. HTTP/1.1 needs none: Node refuses the request
 * itself (431) before any handler runs.
 */
export function createHeaderLimitEdge(options: HeaderLimitEdgeOptions): EdgeEntry {
  const maxHeaderBytes = positiveInt("createHeaderLimitEdge", "maxHeaderBytes", options.maxHeaderBytes);
  return (next) => (exchange) => {
    if (exchange.httpVersion === "2" && headerListSize(exchange.req.rawHeaders) > maxHeaderBytes) {
      exchange.res.writeHead(431, { "content-type": "text/plain" });
      exchange.res.end("Request Header Fields Too Large");
      return;
    }
    next(exchange);
  };
}

function headerListSize(rawHeaders: readonly string[]): number {
  let size = 0;
  // rawHeaders alternates names and values: 16 per entry is RFC 9113's 32 per field.
  for (const entry of rawHeaders) size += Buffer.byteLength(entry) + 16;
  return size;
}
