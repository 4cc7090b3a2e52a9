import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { AppError } from "../errors/index.js";

// Bounds on what an authenticated request body may make the server decode (docs/auth.md, "Decoding
// limits"): the count is taken on the raw bytes before JSON.parse or the protobuf decode, so a body over
// the limit costs a scan, never the decode. Self-contained, called where bodies are decoded: the call
// pipeline (src/call/pipeline.ts) for every codec, and the fallback lane (src/protocols/fallback/connect-node-lane.ts).

/**
 * Most values one request body may hold: JSON values (counted as 1 + the `{`, `[` and `,` outside
 * strings), or protobuf fields on the wire at any depth (each message, list element, map entry, scalar).
 */
export const maxRequestValues = 10_000;
/** Deepest nesting of messages the protobuf scan follows (protobuf-es refuses deeper JSON too). */
export const maxRequestDepth = 100;

/** The 400 / INVALID_ARGUMENT of a body over the limits (README error table). */
export function requestTooComplex(): AppError {
  return new AppError("invalid_argument", {
    message: `Request too complex (more than ${maxRequestValues} values or ${maxRequestDepth} levels of nesting)`,
  });
}

const comma = 0x2c;
const openBrace = 0x7b;
const openBracket = 0x5b;
const quote = 0x22;
const backslash = 0x5c;

/**
 * Throws `requestTooComplex()` when JSON text (UTF-8 bytes, not yet parsed) holds more than `max` values,
 * counted as 1 + the number of `{`, `[` and `,` outside strings: exact for non-empty containers, an empty
 * `{}` or `[]` counts one more. Malformed JSON is left to the parser. First a native count of those bytes
 * anywhere (enough for nearly every body), and only when that exceeds `max` a scan that skips strings.
 */
export function checkJsonValues(bytes: Uint8Array, max = maxRequestValues): void {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let anywhere = 1;
  for (const byte of [comma, openBrace, openBracket]) {
    for (let i = buf.indexOf(byte); i >= 0 && anywhere <= max; i = buf.indexOf(byte, i + 1)) anywhere++;
    if (anywhere > max) break;
  }
  if (anywhere <= max) return;
  let count = 1;
  const n = buf.length;
  for (let i = 0; i < n; i++) {
    const b = buf[i];
    if (b === quote) {
      // To the closing quote: one not preceded by an odd run of backslashes.
      let j = i + 1;
      for (;;) {
        j = buf.indexOf(quote, j);
        if (j < 0) return;
        let k = j - 1;
        while (buf[k] === backslash) k--;
        if (((j - 1 - k) & 1) === 0) break;
        j++;
      }
      i = j;
    } else if (b === comma || b === openBrace || b === openBracket) {
      if (++count > max) throw requestTooComplex();
    }
  }
}

/** Field numbers of a message to their descriptors, built once per message type. */
const fieldsByNumber = new WeakMap<DescMessage, Map<number, DescField>>();

function fieldOf(desc: DescMessage, number: number): DescField | undefined {
  let map = fieldsByNumber.get(desc);
  if (map === undefined) {
    map = new Map(desc.fields.map((f) => [f.number, f]));
    fieldsByNumber.set(desc, map);
  }
  return map.get(number);
}

/** What a nested occurrence is scanned as: a message, a map entry (with its value's type), or unknown. */
type Scope = DescMessage | { readonly mapValue: DescMessage | undefined } | undefined;

/** The scope of a field's nested occurrence: its message, or its map entry; undefined for anything else. */
function nestedOf(field: DescField | undefined): Scope {
  if (field === undefined) return undefined;
  switch (field.fieldKind) {
    case "message":
      return field.message;
    case "list":
      return field.listKind === "message" ? field.message : undefined;
    case "map":
      return { mapValue: field.mapKind === "message" ? field.message : undefined };
    default:
      return undefined;
  }
}

function isMessage(scope: Scope): scope is DescMessage {
  return scope !== undefined && "kind" in scope;
}

class TooComplex extends Error {}
class Truncated extends Error {}

/**
 * Throws `requestTooComplex()` when protobuf binary of `desc` (not yet decoded) holds more than `max`
 * fields on the wire at any depth (each occurrence counts: a message, a list element, each element of a
 * packed list, a map entry and its key and value, a scalar, an unknown field) or nests messages deeper
 * than `maxRequestDepth`. Reads only tags and lengths, following the descriptor into message fields; the
 * bytes of strings and other fields are skipped. A malformed body is left to the decoder.
 */
export function checkBinaryValues(desc: DescMessage, bytes: Uint8Array, max = maxRequestValues): void {
  let count = 0;
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (pos >= bytes.length) throw new Truncated();
      const b = bytes[pos++] as number;
      if (shift < 28) result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
    }
    throw new Truncated();
  };
  const bump = (n = 1): void => {
    count += n;
    if (count > max) throw new TooComplex();
  };
  /** Scans fields up to `end` (or an end-group tag) as `scope`. */
  const scan = (scope: Scope, end: number, depth: number): void => {
    if (depth > maxRequestDepth) throw new TooComplex();
    while (pos < end) {
      const tag = varint();
      const number = tag >>> 3;
      const wireType = tag & 7;
      bump();
      let nested: Scope;
      let field: DescField | undefined;
      if (isMessage(scope)) {
        field = fieldOf(scope, number);
        nested = nestedOf(field);
      } else if (scope !== undefined && number === 2) {
        nested = scope.mapValue;
      }
      switch (wireType) {
        case 0:
          varint();
          break;
        case 1:
          pos += 8;
          break;
        case 5:
          pos += 4;
          break;
        case 2: {
          // A length over the rest of the body is malformed: the decoder refuses it.
          const len = varint();
          if (len > end - pos) throw new Truncated();
          const stop = pos + len;
          if (nested !== undefined) {
            scan(nested, stop, depth + 1);
          } else if (field?.fieldKind === "list" && field.listKind !== "message") {
            // A packed list: each element costs the decoder (a varint ends at a byte below 0x80).
            let elements = 0;
            for (let i = pos; i < stop && count + elements <= max; i++) {
              if ((bytes[i] as number) < 0x80) elements++;
            }
            bump(elements);
          }
          pos = stop;
          break;
        }
        case 3:
          // A group (delimited encoding): scanned as a nested message up to its end tag.
          scan(nested, end, depth + 1);
          break;
        case 4:
          return;
        default:
          throw new Truncated();
      }
      if (pos > end) throw new Truncated();
    }
  };
  try {
    scan(desc, bytes.length, 0);
  } catch (err) {
    if (err instanceof TooComplex) throw requestTooComplex();
    if (err instanceof Truncated) return;
    throw err;
  }
}
