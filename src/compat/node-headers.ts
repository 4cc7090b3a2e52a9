import type { IncomingHttpHeaders } from "node:http";

/** A request header's value as one string (repeated values joined as HTTP joins them), undefined if absent. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * The request metadata as connect-node gives it to handlers (`nodeHeaderToWebHeader`): every field but
 * HTTP/2's pseudo-headers. Shared by the gRPC and Connect codecs (src/protocols/).
 */
export function requestHeaders(headers: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* : */) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === "string") out.append(name, value);
    else for (const v of value) out.append(name, v);
  }
  return out;
}

/** Headers as Node's `writeHead` takes them, one value per name (as connect-node's `webHeaderToNodeHeaders`). */
export function nodeHeaders(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  headers.forEach((value, name) => {
    // Headers yields each `set-cookie` value on its own; every other name once, values joined.
    const seen = out[name];
    if (seen === undefined) out[name] = value;
    else if (typeof seen === "string") out[name] = [seen, value];
    else seen.push(value);
  });
  return out;
}
