/**
 * google.api.http path templates (the grammar of google/api/http.proto):
 *
 *     Template = "/" Segments [ Verb ] ;
 *     Segments = Segment { "/" Segment } ;
 *     Segment  = "*" | "**" | LITERAL | Variable ;
 *     Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *     Verb     = ":" LITERAL ;
 *
 * A template is parsed once into flat segments; matching a request path is then a single pass over its
 * segments with no allocation beyond the captured values.
 */

type Segment =
  | { readonly kind: "literal"; readonly value: string; readonly variable: number | undefined }
  | { readonly kind: "single"; readonly variable: number | undefined }
  | { readonly kind: "multi"; readonly variable: number | undefined };

export interface TemplateVariable {
  /** The dotted field path, split ("book.name" → ["book", "name"]). */
  readonly fieldPath: readonly string[];
  /** Whether the variable may span several segments; its value then keeps "%2F" encoded (http.proto). */
  readonly multiSegment: boolean;
}

export interface PathTemplate {
  readonly source: string;
  readonly variables: readonly TemplateVariable[];
  /** The custom verb after ":" in the last segment, if any. */
  readonly verb: string | undefined;
  /** How many segments are literals (more literal = more specific). */
  readonly literalCount: number;
  /**
   * Matches a raw (still percent-encoded) request path without the query. Returns the decoded value of each
   * variable, in `variables` order, or undefined when the path does not match or is badly encoded.
   */
  match(path: string): string[] | undefined;
}

const literalRe = /^[A-Za-z0-9\-._~!$&'()+,;=@%]+$/;
const fieldPathRe = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Splits at `sep` outside braces. */
function splitTopLevel(text: string, sep: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{") depth++;
    else if (c === "}") depth--;
    else if (c === sep && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** Parses a template; throws an Error naming the template when it is not valid. */
export function parsePathTemplate(source: string): PathTemplate {
  const fail = (why: string): never => {
    throw new Error(`invalid google.api.http path template "${source}": ${why}`);
  };
  if (!source.startsWith("/")) fail("must start with /");
  let body = source.slice(1);
  let verb: string | undefined;
  const lastSlash = body.lastIndexOf("/");
  const lastBrace = body.lastIndexOf("}");
  const colon = body.lastIndexOf(":");
  if (colon > lastSlash && colon > lastBrace) {
    verb = body.slice(colon + 1);
    body = body.slice(0, colon);
    if (!literalRe.test(verb)) fail("bad verb");
  }
  const segments: Segment[] = [];
  const variables: TemplateVariable[] = [];
  let literalCount = 0;
  const addSegment = (raw: string, variable: number | undefined): void => {
    if (raw === "*") segments.push({ kind: "single", variable });
    else if (raw === "**") segments.push({ kind: "multi", variable });
    else if (literalRe.test(raw)) {
      segments.push({ kind: "literal", value: raw, variable });
      literalCount++;
    } else fail(`bad segment "${raw}"`);
  };
  for (const raw of splitTopLevel(body, "/")) {
    if (raw.startsWith("{")) {
      if (!raw.endsWith("}")) fail(`bad variable "${raw}"`);
      const inner = raw.slice(1, -1);
      const eq = inner.indexOf("=");
      const fieldPath = eq < 0 ? inner : inner.slice(0, eq);
      const sub = eq < 0 ? ["*"] : inner.slice(eq + 1).split("/");
      if (!fieldPathRe.test(fieldPath)) fail(`bad field path "${fieldPath}"`);
      const index = variables.length;
      variables.push({ fieldPath: fieldPath.split("."), multiSegment: sub.length > 1 || sub[0] === "**" });
      for (const s of sub) {
        if (s.includes("{")) fail("nested variable");
        addSegment(s, index);
      }
    } else addSegment(raw, undefined);
  }
  const multiAt = segments.findIndex((s) => s.kind === "multi");
  if (multiAt >= 0 && multiAt !== segments.length - 1) fail('"**" must be the last segment');
  const variableCount = variables.length;
  // The literal segments before the first variable, as a prefix every matching path starts with: most
  // templates are ruled out by it without splitting the path.
  let prefix = "/";
  for (const seg of segments) {
    if (seg.kind !== "literal" || seg.variable !== undefined) break;
    prefix += `${seg.value}/`;
  }
  const exact = segments.every((seg) => seg.kind === "literal" && seg.variable === undefined);
  const exactPath = exact ? `/${body}${verb === undefined ? "" : `:${verb}`}` : undefined;
  const verbSuffix = verb === undefined ? undefined : `:${verb}`;

  return {
    source,
    variables,
    verb,
    literalCount,
    match(path) {
      if (exactPath !== undefined) return path === exactPath ? [] : undefined;
      if (!path.startsWith(prefix)) return undefined;
      let rest = path.slice(1);
      if (verbSuffix !== undefined) {
        if (!rest.endsWith(verbSuffix)) return undefined;
        rest = rest.slice(0, rest.length - verbSuffix.length);
      }
      const parts = rest.split("/");
      const captured: string[][] = [];
      for (let v = 0; v < variableCount; v++) captured.push([]);
      let i = 0;
      for (const seg of segments) {
        if (seg.kind === "multi") {
          const tail = parts.slice(i);
          if (seg.variable !== undefined) captured[seg.variable]?.push(...tail);
          i = parts.length;
          break;
        }
        const part = parts[i];
        if (part === undefined || part === "") return undefined;
        if (seg.kind === "literal" && part !== seg.value) return undefined;
        if (seg.variable !== undefined) captured[seg.variable]?.push(part);
        i++;
      }
      if (i !== parts.length) return undefined;
      const values: string[] = [];
      for (let v = 0; v < variableCount; v++) {
        const raw = (captured[v] ?? []).join("/");
        const decoded = variables[v]?.multiSegment ? decodeKeepingSlash(raw) : decode(raw);
        if (decoded === undefined) return undefined;
        values.push(decoded);
      }
      return values;
    },
  };
}

function decode(raw: string): string | undefined {
  if (!raw.includes("%")) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** Decodes everything except "%2F"/"%2f", which stay as sent (multi-segment variables, http.proto). */
function decodeKeepingSlash(raw: string): string | undefined {
  if (!raw.includes("%")) return raw;
  const pieces = raw.split(/(%2[Ff])/);
  const out: string[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i] ?? "";
    if (i % 2 === 1) out.push(piece);
    else {
      const d = decode(piece);
      if (d === undefined) return undefined;
      out.push(d);
    }
  }
  return out.join("");
}
