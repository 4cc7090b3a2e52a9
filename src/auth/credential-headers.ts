import { hmacHeaders } from "./hmac-signing.js";

/** The headers that carry credentials; each may be sent once. */
const credentialHeaders: ReadonlySet<string> = new Set([
  "authorization",
  hmacHeaders.keyId,
  hmacHeaders.timestamp,
  hmacHeaders.nonce,
  hmacHeaders.signature,
]);

/**
 * The first credential header name (lowercase) that occurs more than once in Node's `rawHeaders` (name,
 * value, name, value, ...), or undefined. Read from the raw headers because `req.headers`, which the
 * interceptors see, keeps only the first `Authorization` over HTTP/1.1: a second token would otherwise go
 * unnoticed.
 */
export function repeatedCredentialHeader(rawHeaders: readonly string[]): string | undefined {
  let seen: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]?.toLowerCase() ?? "";
    if (!credentialHeaders.has(name)) continue;
    seen ??= new Set();
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}
