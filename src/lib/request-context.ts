import { createContextKey } from "@connectrpc/connect";

/**
 * What the HTTP surfaces (REST, OpenAI-compatible) know about the original HTTP request and an interceptor
 * cannot see: the HTTP method, path and raw query as the caller sent them. They set it (a trusted,
 * in-process value, never a header a caller could forge); it is undefined for gRPC and Connect calls.
 * (The HMAC signature is checked on the raw request before this exists: `Auth.precheck`.)
 */
export interface HttpRequestInfo {
  readonly method: string;
  /** The path as sent (still percent-encoded), without the query. */
  readonly path: string;
  /** The raw query string without the leading "?" ("" when none). */
  readonly query: string;
}

export const httpRequestInfoKey = createContextKey<HttpRequestInfo | undefined>(undefined, {
  description: "original HTTP request of a REST call",
});
