import { AppError } from "../../errors/index.js";

// What the Anthropic surface reads of a Messages body without parsing it (README, "Anthropic Messages
// API"): bodies go up to 32 MiB, and a JSON.parse of that size holds the event loop for far more than
// 50 ms. The native path forwards the bytes unchanged and needs only these keys, for routing and limits.

/** The top-level keys routing and limits need; a key the body does not have is undefined. */
export interface TopLevelKeys {
  readonly model: unknown;
  readonly stream: unknown;
  readonly max_tokens: unknown;
}

const quote = 0x22;
const backslash = 0x5c;
const openBrace = 0x7b;
const closeBrace = 0x7d;
const openBracket = 0x5b;
const closeBracket = 0x5d;
const colon = 0x3a;
const comma = 0x2c;

const wanted: ReadonlySet<string> = new Set(["model", "stream", "max_tokens"]);

function malformed(): AppError {
  return new AppError("invalid_argument", { message: "Malformed JSON body" });
}

/**
 * The values of `model`, `stream` and `max_tokens` of a JSON object given as UTF-8 bytes. Other values are
 * skipped, not parsed: a string by the native `indexOf` of its closing quote, a container by a walk over
 * its structure (strings inside jumped the same way), so the cost is a scan of the bytes, nearly all of
 * it in native code for the usual body (long texts). Only the three values are parsed (JSON.parse of
 * their slice). Throws AppError `invalid_argument` `Malformed JSON body` when the structure is broken
 * (not an object, an unterminated string or container); what is inside a skipped value is left for the
 * provider to judge. A key given twice counts as JSON.parse counts it: the last one.
 */
export function scanTopLevel(bytes: Uint8Array): TopLevelKeys {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = buf.length;
  const found: Record<string, unknown> = {};
  let i = skipSpace(buf, 0);
  if (buf[i] !== openBrace) throw malformed();
  i = skipSpace(buf, i + 1);
  if (buf[i] === closeBrace) return keysOf(found, buf, skipSpace(buf, i + 1));
  for (;;) {
    if (buf[i] !== quote) throw malformed();
    const keyEnd = stringEnd(buf, i);
    const key = parseSlice(buf, i, keyEnd);
    i = skipSpace(buf, keyEnd);
    if (buf[i] !== colon) throw malformed();
    const start = skipSpace(buf, i + 1);
    const end = valueEnd(buf, start);
    if (typeof key === "string" && wanted.has(key)) found[key] = parseSlice(buf, start, end);
    i = skipSpace(buf, end);
    if (i >= n) throw malformed();
    if (buf[i] === closeBrace) return keysOf(found, buf, skipSpace(buf, i + 1));
    if (buf[i] !== comma) throw malformed();
    i = skipSpace(buf, i + 1);
  }
}

function keysOf(found: Record<string, unknown>, buf: Buffer, after: number): TopLevelKeys {
  if (after !== buf.length) throw malformed();
  return { model: found["model"], stream: found["stream"], max_tokens: found["max_tokens"] };
}

function skipSpace(buf: Buffer, from: number): number {
  let i = from;
  for (;;) {
    const b = buf[i];
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) return i;
    i++;
  }
}

/** The index after the closing quote of the string opening at `at`. */
function stringEnd(buf: Buffer, at: number): number {
  let j = at + 1;
  for (;;) {
    j = buf.indexOf(quote, j);
    if (j < 0) throw malformed();
    let k = j - 1;
    while (buf[k] === backslash) k--;
    // An even run of backslashes before it: the quote is not escaped.
    if (((j - 1 - k) & 1) === 0) return j + 1;
    j++;
  }
}

/** The index after the value starting at `at` (a string, a container, or a literal / number). */
function valueEnd(buf: Buffer, at: number): number {
  const first = buf[at];
  if (first === undefined) throw malformed();
  if (first === quote) return stringEnd(buf, at);
  if (first !== openBrace && first !== openBracket) {
    let j = at;
    for (;;) {
      const b = buf[j];
      if (b === undefined || b === comma || b === closeBrace || b === closeBracket) break;
      if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) break;
      j++;
    }
    if (j === at) throw malformed();
    return j;
  }
  let depth = 0;
  const n = buf.length;
  for (let j = at; j < n; j++) {
    const b = buf[j];
    if (b === quote) {
      j = stringEnd(buf, j) - 1;
    } else if (b === openBrace || b === openBracket) {
      depth++;
    } else if (b === closeBrace || b === closeBracket) {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  throw malformed();
}

function parseSlice(buf: Buffer, start: number, end: number): unknown {
  try {
    return JSON.parse(buf.toString("utf8", start, end));
  } catch {
    throw malformed();
  }
}
