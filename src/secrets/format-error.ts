/** Where in a document's text a syntax error is, 1-based. */
export interface TextPosition {
  readonly line: number;
  readonly column: number;
}

/**
 * A secret document that does not match its schema. The message is one line, `<JSON path>: <what is
 * wrong>` (a syntax error: `$: not valid JSON at line L, column C`), and never contains a value from the
 * document (only key names, which are not secret). `at(where)` names the file or secret version.
 */
export class SecretFormatError extends Error {
  override readonly name = "SecretFormatError";
  /** JSONPath of the fault, e.g. `$["product-dev"].providers.foo.kind`. */
  readonly path: string;
  readonly problem: string;
  /** A syntax error's place in the text; undefined for a schema error (the path says where). */
  readonly position: TextPosition | undefined;

  constructor(path: string, problem: string, position?: TextPosition) {
    super(
      position === undefined
        ? `${path}: ${problem}`
        : `${path}: ${problem} at line ${position.line}, column ${position.column}`,
    );
    this.path = path;
    this.problem = problem;
    this.position = position;
  }

  /**
   * The same fault, said from where the document came from (a file path, a Secret Manager version name):
   * `<where>:<line>:<column>: not valid JSON` for a syntax error (the form editors and terminals link
   * to), `<where>: <JSON path>: <what is wrong>` for a schema error.
   */
  at(where: string): Error {
    const message =
      this.position === undefined
        ? `${where}: ${this.message}`
        : `${where}:${this.position.line}:${this.position.column}: ${this.problem}`;
    return new Error(message, { cause: this });
  }
}

/** Appends a key or index to a JSONPath: `.name` for identifiers, `["odd-name"]` or `[0]` otherwise. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

export type JsonObject = Readonly<Record<string, unknown>>;

/**
 * Parses JSON text; a syntax error becomes a SecretFormatError at `$` with its line and column, without
 * quoting the text.
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    // JSON.parse's own message quotes the text around the error, which may be a key: only the place is
    // taken from it, never its words.
    const message = err instanceof Error ? err.message : "";
    throw new SecretFormatError("$", "not valid JSON", positionOf(text, syntaxErrorOffset(text, message)));
  }
}

/**
 * The offset of JSON.parse's syntax error: V8 says "... in JSON at position N" for most errors, nothing
 * for the end of the input (the offset is the text's length) or for an unexpected token ("Unexpected token
 * 'x', ..."), whose offset is found as the shortest prefix that is already broken (parsing stops at the
 * first error, so brokenness only grows with the prefix). Only on a failed parse, and config files are small.
 */
function syntaxErrorOffset(text: string, message: string): number {
  const at = /at position (\d+)/.exec(message)?.[1];
  if (at !== undefined) return Number(at);
  if (message.startsWith("Unexpected end of JSON input")) return text.length;
  let low = 1;
  let high = text.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (brokenWithin(text.slice(0, mid))) high = mid;
    else low = mid + 1;
  }
  return low - 1;
}

/** Whether a prefix of a JSON text is broken before its end (rather than merely unfinished). */
function brokenWithin(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return false;
  } catch (err) {
    const message = err instanceof Error ? err.message : "";
    if (message.startsWith("Unexpected end of JSON input")) return false;
    const at = /at position (\d+)/.exec(message)?.[1];
    return at === undefined || Number(at) < prefix.length;
  }
}

/** The 1-based line and column of a UTF-16 offset in `text`. */
function positionOf(text: string, offset: number): TextPosition {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

export function fail(path: string, problem: string): never {
  throw new SecretFormatError(path, problem);
}

/** Names the JSON type of a value without showing the value. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

export function expectObject(value: unknown, path: string): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(path, `expected an object, got ${typeName(value)}`);
  }
  return value as JsonObject;
}

/** Rejects keys outside `allowed`, so a typo ("base_ur") fails instead of silently doing nothing. */
export function expectKeys(object: JsonObject, allowed: readonly string[], path: string): void {
  for (const key of Object.keys(object)) {
    if (!allowed.includes(key))
      fail(childPath(path, key), `unknown key (expected one of ${allowed.join(", ")})`);
  }
}

export function expectString(value: unknown, path: string): string {
  if (value === undefined) fail(path, "required");
  if (typeof value !== "string" || value === "")
    fail(path, `expected a non-empty string, got ${typeName(value)}`);
  return value;
}

export function expectPositiveInteger(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    fail(
      path,
      `expected a positive integer, got ${typeof value === "number" ? String(value) : typeName(value)}`,
    );
  }
  return value;
}

/** A non-empty array of distinct non-empty strings; `secret` values are never quoted in an error. */
export function expectStringList(value: unknown, path: string, secret = false): string[] {
  if (value === undefined) fail(path, "required");
  if (!Array.isArray(value) || value.length === 0) {
    fail(
      path,
      `expected a non-empty array of strings, got ${Array.isArray(value) ? "an empty array" : typeName(value)}`,
    );
  }
  const seen = new Set<string>();
  return value.map((item: unknown, i) => {
    const s = expectString(item, childPath(path, i));
    if (seen.has(s)) fail(childPath(path, i), secret ? "duplicate value" : `duplicate ${JSON.stringify(s)}`);
    seen.add(s);
    return s;
  });
}

/** Names used in URLs, headers and logs: product names, key ids. */
export function expectIdentifier(key: string, path: string, what: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(key)) {
    fail(path, `${what} must be 1-128 letters, digits, '.', '_' or '-'`);
  }
  return key;
}
