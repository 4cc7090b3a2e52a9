/**
 * A secret document that does not match its schema. The message is one line, `<JSON path>: <what is
 * wrong>`, and never contains a value from the document (only key names, which are not secret).
 */
export class SecretFormatError extends Error {
  override readonly name = "SecretFormatError";
  /** JSONPath of the fault, e.g. `$["product-dev"].providers.foo.kind`. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.path = path;
  }
}

/** Appends a key or index to a JSONPath: `.name` for identifiers, `["odd-name"]` or `[0]` otherwise. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

export type JsonObject = Readonly<Record<string, unknown>>;

/** Parses JSON text; a syntax error becomes a SecretFormatError at `$` without quoting the text. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // JSON.parse's own message quotes the text around the error, which may be a key.
    return fail("$", "not valid JSON");
  }
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
