import { createHash, createHmac } from "node:crypto";

/** First line of every string to sign; a future scheme gets a new tag. */
export const hmacSchemeTag = "AKS1-HMAC-SHA256";

/** HTTP header (gRPC metadata key) names of the HMAC scheme, lowercase as gRPC metadata requires. */
export const hmacHeaders = {
  keyId: "x-api-key-id",
  timestamp: "x-api-timestamp",
  nonce: "x-api-nonce",
  signature: "x-api-signature",
} as const;

/** The parts of a request the signature covers. */
export interface SignedParts {
  /** HTTP method; uppercased before signing. gRPC and Connect calls use "POST". */
  readonly method: string;
  /** Path as sent, percent-encoded, without the query. gRPC and Connect: `/<package.Service>/<Method>`. */
  readonly path: string;
  /** Raw query string without "?" ("" when none); canonicalised before signing. */
  readonly query: string;
  /** Lowercase hex SHA-256 of the body bytes. */
  readonly bodySha256: string;
  /** Unix time in seconds, as the decimal string sent in the header. */
  readonly timestamp: string;
  readonly keyId: string;
  /** The nonce header's value, or "" when none is sent. */
  readonly nonce: string;
}

/** RFC 3986 percent-encoding: everything but unreserved characters, uppercase hex. */
function encodeRfc3986(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * The canonical form of a raw query string: split on "&" (empty parts dropped), each part split at its first
 * "=" (a missing "=" means an empty value), names and values percent-decoded ("+" is a space) and
 * re-encoded per RFC 3986, pairs sorted by encoded name then encoded value (code-unit order), joined as
 * `name=value` with "&". Throws URIError on an invalid percent-encoding.
 */
export function canonicalQuery(query: string): string {
  const decode = (s: string): string => decodeURIComponent(s.replace(/\+/g, " "));
  const pairs: [string, string][] = [];
  for (const part of query.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? "" : part.slice(eq + 1);
    pairs.push([encodeRfc3986(decode(name)), encodeRfc3986(decode(value))]);
  }
  const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  pairs.sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]));
  return pairs.map(([n, v]) => `${n}=${v}`).join("&");
}

/** The exact string that is HMAC'd: eight lines joined by "\n", no trailing newline. */
export function stringToSign(parts: SignedParts): string {
  return [
    hmacSchemeTag,
    parts.method.toUpperCase(),
    parts.path,
    canonicalQuery(parts.query),
    parts.bodySha256,
    parts.timestamp,
    parts.keyId,
    parts.nonce,
  ].join("\n");
}

/** Lowercase hex HMAC-SHA256 of the string to sign. */
export function computeSignature(secret: Uint8Array | string, parts: SignedParts): string {
  return createHmac("sha256", secret).update(stringToSign(parts), "utf8").digest("hex");
}

/** Lowercase hex SHA-256 of bytes (a string is taken as UTF-8). */
export function sha256Hex(body: Uint8Array | string): string {
  return createHash("sha256").update(body).digest("hex");
}

export interface SignRequestOptions {
  readonly keyId: string;
  /** The shared secret (a string is taken as UTF-8, as in hmac-secrets). */
  readonly secret: Uint8Array | string;
  readonly method: string;
  /** Path as it will be sent (percent-encoded), without the query. */
  readonly path: string;
  /** Raw query string without "?"; default "". */
  readonly query?: string;
  /** Exact body bytes that will be sent; "" for none. */
  readonly body: Uint8Array | string;
  /** Unix seconds; default now. */
  readonly timestamp?: number;
  /** Optional nonce (8–128 chars of A-Z a-z 0-9 . _ ~ -); omitted when undefined. */
  readonly nonce?: string;
}

/** Signs an HTTP request (REST). Returns the headers to send with it. */
export function signRequest(options: SignRequestOptions): Record<string, string> {
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
  const nonce = options.nonce ?? "";
  const signature = computeSignature(options.secret, {
    method: options.method,
    path: options.path,
    query: options.query ?? "",
    bodySha256: sha256Hex(options.body),
    timestamp,
    keyId: options.keyId,
    nonce,
  });
  return {
    [hmacHeaders.keyId]: options.keyId,
    [hmacHeaders.timestamp]: timestamp,
    ...(nonce !== "" ? { [hmacHeaders.nonce]: nonce } : {}),
    [hmacHeaders.signature]: signature,
  };
}

export interface SignGrpcRequestOptions {
  readonly keyId: string;
  readonly secret: Uint8Array | string;
  /** Fully qualified service name, e.g. "apikeyserver.v1.ChatService". */
  readonly service: string;
  /** Method name, e.g. "CreateChatCompletion". */
  readonly method: string;
  /**
   * The one request message of a unary or server-streaming call, exactly as it goes on the wire and
   * before any compression: its protobuf binary for gRPC, gRPC-Web and Connect `application/proto` /
   * `application/connect+proto` (`toBinary(Schema, message)`), the JSON bytes sent for Connect JSON
   * (`application/json`, `application/connect+json`). The server hashes what it receives, before decoding.
   */
  readonly message: Uint8Array | string;
  readonly timestamp?: number;
  readonly nonce?: string;
}

/**
 * Signs a gRPC or Connect call: method "POST", path `/<service>/<method>`, empty query, body = the request
 * message's bytes as sent, uncompressed (docs/auth.md, "gRPC and Connect callers"). Returns metadata
 * entries.
 */
export function signGrpcRequest(options: SignGrpcRequestOptions): Record<string, string> {
  return signRequest({
    keyId: options.keyId,
    secret: options.secret,
    method: "POST",
    path: `/${options.service}/${options.method}`,
    body: options.message,
    ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
    ...(options.nonce !== undefined ? { nonce: options.nonce } : {}),
  });
}
