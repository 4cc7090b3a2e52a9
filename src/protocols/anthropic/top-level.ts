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

/**
 * Bytes walked between two turns of the event loop. A slice of dense JSON (short strings full of escaped
 * quotes, each a native `indexOf`) costs a few milliseconds on this machine's cores, so the loop is
 * never held much longer than that whatever the body.
 */
const sliceBytes = 256 * 1024;

const wanted: ReadonlySet<string> = new Set(["model", "stream", "max_tokens"]);

function malformed(): AppError {
  return new AppError("invalid_argument", { message: "Malformed JSON body" });
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The values of `model`, `stream` and `max_tokens` of a JSON object given as UTF-8 bytes. Other values are
 * skipped, not parsed: strings by the native `indexOf` of their closing quote, containers by a walk of
 * their structure, `sliceBytes` at a time with a turn of the event loop in between. Only the three values
 * are parsed (JSON.parse of their slice). Rejects with AppError `invalid_argument` `Malformed JSON body`
 * when the structure is broken (not an object, an unterminated string or container, trailing bytes);
 * what is inside a skipped value is left for the provider to judge. A key given twice counts as JSON.parse
 * counts it: the last one.
 */
export async function scanTopLevel(bytes: Uint8Array): Promise<TopLevelKeys> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found: Record<string, unknown> = {};
  let i = skipSpace(buf, 0);
  if (buf[i] !== openBrace) throw malformed();
  i = skipSpace(buf, i + 1);
  if (buf[i] !== closeBrace) {
    for (;;) {
      if (buf[i] !== quote) throw malformed();
      const keyEnd = await valueEnd(buf, i);
      const key = parseSlice(buf, i, keyEnd);
      i = skipSpace(buf, keyEnd);
      if (buf[i] !== colon) throw malformed();
      const start = skipSpace(buf, i + 1);
      const end = await valueEnd(buf, start);
      if (typeof key === "string" && wanted.has(key)) found[key] = parseSlice(buf, start, end);
      i = skipSpace(buf, end);
      if (buf[i] === closeBrace) break;
      if (buf[i] !== comma) throw malformed();
      i = skipSpace(buf, i + 1);
    }
  }
  if (skipSpace(buf, i + 1) !== buf.length) throw malformed();
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

/** Where a walk of one string or container stands: the next byte, the depth, inside a string or not. */
interface Walk {
  at: number;
  depth: number;
  inString: boolean;
}

/**
 * Walks `walk` up to `limit` (further when a string jump passes it); true when the value it walks ended
 * (its closing quote, brace or bracket at depth 0), `walk.at` then just after it.
 */
function walkSlice(buf: Buffer, walk: Walk, limit: number): boolean {
  while (walk.at < limit) {
    if (walk.inString) {
      const q = buf.indexOf(quote, walk.at);
      if (q < 0) throw malformed();
      let k = q - 1;
      while (buf[k] === backslash) k--;
      walk.at = q + 1;
      // An odd run of backslashes escapes the quote: the string goes on.
      if (((q - 1 - k) & 1) === 1) continue;
      walk.inString = false;
      if (walk.depth === 0) return true;
      continue;
    }
    const b = buf[walk.at++];
    if (b === quote) walk.inString = true;
    else if (b === openBrace || b === openBracket) walk.depth++;
    else if (b === closeBrace || b === closeBracket) {
      if (--walk.depth === 0) return true;
    }
  }
  return false;
}

/** The index after the value starting at `at` (a string, a container, or a literal / number). */
async function valueEnd(buf: Buffer, at: number): Promise<number> {
  const first = buf[at];
  if (first === undefined) throw malformed();
  if (first !== quote && first !== openBrace && first !== openBracket) {
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
  const walk: Walk = { at, depth: 0, inString: false };
  for (;;) {
    if (walkSlice(buf, walk, Math.min(buf.length, walk.at + sliceBytes))) return walk.at;
    if (walk.at >= buf.length) throw malformed();
    await nextTurn();
  }
}

function parseSlice(buf: Buffer, start: number, end: number): unknown {
  try {
    return JSON.parse(buf.toString("utf8", start, end));
  } catch {
    throw malformed();
  }
}
