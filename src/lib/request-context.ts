import { createContextKey } from "@connectrpc/connect";

/**
 * What the REST transcoder knows about the original HTTP request and an interceptor cannot see: the HTTP
 * method, path and raw query as the caller sent them, and the SHA-256 of the exact body bytes. The
 * transcoder sets it (a trusted, in-process value, never a header a caller could forge); it is undefined
 * for gRPC and Connect calls.
 */
export interface HttpRequestInfo {
  readonly method: string;
  /** The path as sent (still percent-encoded), without the query. */
  readonly path: string;
  /** The raw query string without the leading "?" ("" when none). */
  readonly query: string;
  /** Lowercase hex SHA-256 of the raw request body (of the empty string when there is none). */
  readonly bodySha256: string;
}

export const httpRequestInfoKey = createContextKey<HttpRequestInfo | undefined>(undefined, {
  description: "original HTTP request of a REST call",
});
