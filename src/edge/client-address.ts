import type { IncomingHttpHeaders } from "node:http";

/**
 * The client's address for the access line (Cloud Logging's `httpRequest.remoteIp`). With no trusted proxy
 * it is the socket's peer address, and `X-Forwarded-For` is ignored: anyone can send that header. With
 * `trustedProxies` = N (API_KEY_SERVER_TRUST_PROXY; 1 on Cloud Run, whose front end appends the address it
 * saw), each trusted proxy appended the address it received the request from, so the N-th entry from the
 * right is the address the outermost trusted proxy saw: the client, whatever the client itself put in
 * front. A header with fewer entries gives its leftmost one; no header gives the socket's address.
 */
export function clientAddressOf(
  peer: string | undefined,
  headers: IncomingHttpHeaders,
  trustedProxies: number,
): string | undefined {
  if (trustedProxies === 0) return peer;
  const header = headers["x-forwarded-for"];
  // Node joins repeated X-Forwarded-For headers with ", " (in order), which is how proxies chain them too.
  const value = typeof header === "string" ? header : undefined;
  if (value === undefined || value === "") return peer;
  let end = value.length;
  for (let hop = 1; ; hop++) {
    const comma = value.lastIndexOf(",", end - 1);
    if (hop === trustedProxies || comma < 0) return value.slice(comma + 1, end).trim() || peer;
    end = comma;
  }
}
