import { randomUUID } from "node:crypto";

/**
 * A caller's own `X-Request-Id` is kept when it is sane: 1-128 characters of letters, digits and
 * `. _ : @ + = / -` (what UUIDs, ULIDs, hex, base64 and the common tracing ids are made of), so it is safe
 * to echo in a header and to put in a log line. Anything else (too long, spaces, quotes, control
 * characters, a header sent twice) is replaced.
 */
const sane = /^[\w.:@+=/-]{1,128}$/;

/**
 * The id of one request: the caller's `X-Request-Id` when sane, else a random UUID (crypto.randomUUID
 * draws from a pre-filled entropy cache, so this costs no system call per request).
 */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === "string" && header.length <= 128 && sane.test(header) ? header : randomUUID();
}
