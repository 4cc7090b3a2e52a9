import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createAuth,
  createMemoryNonceStore,
  defaultPublicServices,
  type AuthMethodTried,
} from "../../src/auth/index.js";
import type { Secrets } from "../../src/secrets/types.js";
import { captureLog } from "../support/log-capture.js";
import {
  base64url,
  hmacKey,
  hs256WithPublicKey,
  makeTestKey,
  mintJwt,
  testSecrets,
  unsignedJwt,
  type MintOptions,
  type TestKey,
} from "../support/auth-keys.js";
import {
  connectClient,
  connectFetchClient,
  grpcClient,
  restClient,
  startAuthTestServer,
  type AuthTestServer,
  type Credentials,
  credentialHeaders,
  type Outcome,
  type ProtocolClient,
} from "../support/auth-server.js";

const issuer = "https://issuer.test";
const audience = "api-key-server";
const log = captureLog();
const hmacA = hmacKey("svc-a", "secret-a-0123456789", ["product-dev"]);
const hmacAll = hmacKey("svc-all", "secret-all-0123456789", "*");

let rsa: TestKey; // in the set
let ec: TestKey; // in the set
let ed: TestKey; // in the set
let rotated: TestKey; // the new key of the rotation test
let impostor: TestKey; // same kid as `rsa`, different key
let stranger: TestKey; // kid not in the set
let current: Secrets | undefined;
let server: AuthTestServer;
/** What the interceptor's onFailure hook (metrics) was told, in order. */
const reported: { method: AuthMethodTried; reason: string }[] = [];
const clients = new Map<string, ProtocolClient>();

/**
 * Protocol dimension of every table. The flag says whether the protocol runs over HTTP/2 (its header
 * limits differ, see the 100 KB token case). REST goes through the real transcoder (src/http).
 */
const protocols = [
  ["connect-h1", connectFetchClient, false],
  ["connect-h2", connectClient, true],
  ["grpc", grpcClient, true],
  ["rest", restClient, false],
] as const satisfies readonly (readonly [string, (s: AuthTestServer) => ProtocolClient, boolean])[];

beforeAll(async () => {
  [rsa, ec, ed, rotated, impostor, stranger] = await Promise.all([
    makeTestKey("rsa-1", "RS256"),
    makeTestKey("ec-1", "ES256"),
    makeTestKey("ed-1", "EdDSA"),
    makeTestKey("ps-2", "PS256"),
    makeTestKey("rsa-1", "RS256"),
    makeTestKey("stranger", "RS256"),
  ]);
  current = testSecrets([rsa, ec, ed], [hmacA, hmacAll]);
  const auth = createAuth({
    secrets: () => current,
    jwt: { issuer, audience, clockToleranceSeconds: 30, maxTokenAgeSeconds: 86_400 },
    hmac: { windowSeconds: 300, nonceStore: createMemoryNonceStore({ maxEntries: 1000 }) },
    publicServices: defaultPublicServices,
    logger: log.logger,
    onFailure: (method, reason) => reported.push({ method, reason }),
  });
  server = await startAuthTestServer(auth, () => current);
  for (const [name, make] of protocols) clients.set(name, make(server));
});

afterAll(async () => {
  for (const client of clients.values()) client.close();
  await server.close();
});

beforeEach(() => {
  log.lines.length = 0;
  reported.length = 0;
});

const now = (): number => Math.floor(Date.now() / 1000);
const bearer = (token: string): Credentials => ({
  kind: "headers",
  headers: { authorization: `Bearer ${token}` },
});
/** A token with the configured issuer and audience unless the test overrides them. */
const jwt = (key: TestKey, options: MintOptions = {}): Promise<string> =>
  mintJwt(key, { ...options, claims: { iss: issuer, aud: audience, ...options.claims } });
const nonce = (): string => base64url(randomBytes(16));
/** HMAC credentials with a fresh nonce (required by default) unless `extra` says otherwise. */
const hmac = (
  key: typeof hmacA,
  extra: Partial<Extract<Credentials, { kind: "hmac" }>> = {},
): Credentials => ({
  kind: "hmac",
  keyId: key.keyId,
  secret: new TextDecoder().decode(key.secret),
  nonce: nonce(),
  ...extra,
});

const ok = (caller: string) => ({ status: 200, code: 0, message: caller }) as const;
const unauthorized = { status: 401, code: Code.Unauthenticated, message: "Unauthorized" } as const;
const forbidden = { status: 403, code: Code.PermissionDenied, message: "Forbidden" } as const;
const notFound = { status: 404, code: Code.NotFound, message: "Product not found" } as const;

interface Case {
  readonly name: string;
  readonly credentials: () => Promise<Credentials> | Credentials;
  readonly product?: string;
  readonly expected: { readonly status: number; readonly code: Code | 0; readonly message: string };
  /** The reason the log line must give for a 401. */
  readonly reason?: string;
  /**
   * Over HTTP/2 the request never reaches the server's handlers: nghttp2 refuses a header field over
   * 64 KiB with a stream reset (COMPRESSION_ERROR), which clients report as INTERNAL.
   */
  readonly refusedByHttp2?: true;
}

const cases: readonly Case[] = [
  // accepted callers
  { name: "JWT RS256", credentials: async () => bearer(await jwt(rsa)), expected: ok("jwt:svc-test") },
  { name: "JWT ES256", credentials: async () => bearer(await jwt(ec)), expected: ok("jwt:svc-test") },
  { name: "JWT EdDSA", credentials: async () => bearer(await jwt(ed)), expected: ok("jwt:svc-test") },
  {
    name: "JWT with products '*'",
    credentials: async () => bearer(await jwt(rsa, { claims: { products: "*", sub: "all" } })),
    product: "product-other",
    expected: ok("jwt:all"),
  },
  {
    name: "JWT within the clock tolerance of nbf",
    credentials: async () => bearer(await jwt(rsa, { claims: { nbf: now() + 10 } })),
    expected: ok("jwt:svc-test"),
  },
  { name: "HMAC", credentials: () => hmac(hmacA), expected: ok("hmac:svc-a") },
  {
    name: "HMAC key for all products",
    credentials: () => hmac(hmacAll),
    product: "product-other",
    expected: ok("hmac:svc-all"),
  },
  // authenticated, then the product checks of SPEC S7
  {
    name: "JWT whose products lack the product",
    credentials: async () => bearer(await jwt(rsa, { claims: { products: ["product-other"] } })),
    expected: forbidden,
  },
  {
    name: "HMAC key not granted the product",
    credentials: () => hmac(hmacA),
    product: "product-other",
    expected: forbidden,
  },
  {
    name: "unknown product (404 before 403)",
    credentials: () => hmac(hmacA),
    product: "nope",
    expected: notFound,
  },
  // no or unusable credentials
  {
    name: "no credentials",
    credentials: () => ({ kind: "none" }),
    expected: unauthorized,
    reason: "missing_credentials",
  },
  {
    name: "Basic scheme",
    credentials: () => ({ kind: "headers", headers: { authorization: "Basic c3ZjOnB3" } }),
    expected: unauthorized,
    reason: "unsupported_scheme",
  },
  {
    name: "JWT and HMAC together",
    credentials: async () => ({
      kind: "headers",
      headers: { authorization: `Bearer ${await jwt(rsa)}`, "x-api-key-id": "svc-a" },
    }),
    // Not a 401: which credential would count is a guess the server refuses to make (issue 18, item 3).
    expected: {
      status: 400,
      code: Code.InvalidArgument,
      message: "Ambiguous credentials (both an Authorization header and HMAC headers are sent)",
    },
    reason: "ambiguous_credentials",
  },
  // JWT attacks
  {
    name: "alg none",
    credentials: () => bearer(unsignedJwt("rsa-1")),
    expected: unauthorized,
    reason: "alg_not_allowed",
  },
  {
    name: "HS256 signed with the public key as secret",
    credentials: async () => bearer(await hs256WithPublicKey(rsa)),
    expected: unauthorized,
    reason: "alg_not_allowed",
  },
  {
    name: "unknown kid",
    credentials: async () => bearer(await jwt(stranger)),
    expected: unauthorized,
    reason: "unknown_kid",
  },
  {
    name: "kid with path characters",
    credentials: async () => bearer(await jwt(rsa, { header: { kid: "../../etc/passwd" } })),
    expected: unauthorized,
    reason: "bad_kid",
  },
  {
    name: "no kid",
    credentials: async () => bearer(await jwt(rsa, { header: { kid: undefined } })),
    expected: unauthorized,
    reason: "bad_kid",
  },
  {
    name: "expired",
    credentials: async () => bearer(await jwt(rsa, { claims: { iat: now() - 7200, exp: now() - 3600 } })),
    expected: unauthorized,
    reason: "expired",
  },
  {
    name: "not yet valid",
    credentials: async () => bearer(await jwt(rsa, { claims: { nbf: now() + 3600 } })),
    expected: unauthorized,
    reason: "not_yet_valid",
  },
  {
    name: "no exp",
    credentials: async () => bearer(await jwt(rsa, { claims: { exp: undefined } })),
    expected: unauthorized,
    reason: "missing_claim",
  },
  {
    name: "no iat",
    credentials: async () => bearer(await jwt(rsa, { claims: { iat: undefined } })),
    expected: unauthorized,
    reason: "missing_claim",
  },
  {
    name: "older than the maximum token age",
    credentials: async () => bearer(await jwt(rsa, { claims: { iat: now() - 2 * 86_400 } })),
    expected: unauthorized,
    reason: "token_too_old",
  },
  {
    name: "issued in the future",
    credentials: async () => bearer(await jwt(rsa, { claims: { iat: now() + 3600, exp: now() + 7200 } })),
    expected: unauthorized,
    reason: "iat_in_future",
  },
  {
    name: "wrong issuer",
    credentials: async () => bearer(await jwt(rsa, { claims: { iss: "https://evil.test" } })),
    expected: unauthorized,
    reason: "wrong_issuer",
  },
  {
    name: "wrong audience",
    credentials: async () => bearer(await jwt(rsa, { claims: { aud: "someone-else" } })),
    expected: unauthorized,
    reason: "wrong_audience",
  },
  {
    name: "signed by a key not in the set (same kid)",
    credentials: async () => bearer(await jwt(impostor)),
    expected: unauthorized,
    reason: "bad_signature",
  },
  {
    name: "truncated token",
    credentials: async () => bearer((await jwt(rsa)).slice(0, -12)),
    expected: unauthorized,
    reason: "bad_signature",
  },
  {
    name: "token without its signature part",
    credentials: async () => bearer((await jwt(rsa)).split(".").slice(0, 2).join(".")),
    expected: unauthorized,
    reason: "malformed_token",
  },
  {
    name: "20 KB token (over the 8 KiB cap)",
    credentials: async () => bearer(await jwt(rsa, { claims: { pad: "x".repeat(20 * 1024) } })),
    expected: unauthorized,
    reason: "token_too_large",
  },
  {
    name: "100 KB token",
    credentials: async () => bearer(await jwt(rsa, { claims: { pad: "x".repeat(100 * 1024) } })),
    expected: unauthorized,
    reason: "token_too_large",
    refusedByHttp2: true,
  },
  {
    name: "crit header",
    credentials: async () =>
      bearer(
        await jwt(rsa, { header: { crit: ["urn:x-ext"], "urn:x-ext": 1 }, crit: { "urn:x-ext": true } }),
      ),
    expected: unauthorized,
    reason: "crit_header",
  },
  {
    name: "products claim missing",
    credentials: async () => bearer(await jwt(rsa, { claims: { products: undefined } })),
    expected: unauthorized,
    reason: "bad_products_claim",
  },
  {
    name: "products claim not a list",
    credentials: async () => bearer(await jwt(rsa, { claims: { products: "product-dev" } })),
    expected: unauthorized,
    reason: "bad_products_claim",
  },
  {
    name: "no sub",
    credentials: async () => bearer(await jwt(rsa, { claims: { sub: undefined } })),
    expected: unauthorized,
    reason: "missing_claim",
  },
  // HMAC attacks
  {
    name: "HMAC with a wrong secret",
    credentials: () => ({ kind: "hmac", keyId: "svc-a", secret: "not-the-secret", nonce: nonce() }),
    expected: unauthorized,
    reason: "bad_signature",
  },
  {
    name: "HMAC stale timestamp",
    credentials: () => hmac(hmacA, { timestamp: now() - 301 }),
    expected: unauthorized,
    reason: "timestamp_too_old",
  },
  {
    name: "HMAC future timestamp",
    credentials: () => hmac(hmacA, { timestamp: now() + 301 }),
    expected: unauthorized,
    reason: "timestamp_in_future",
  },
  {
    name: "HMAC tampered body",
    credentials: () => hmac(hmacA, { tamper: "body" }),
    expected: unauthorized,
    reason: "bad_signature",
  },
  {
    name: "HMAC tampered path",
    credentials: () => hmac(hmacA, { tamper: "path" }),
    expected: unauthorized,
    reason: "bad_signature",
  },
  {
    name: "HMAC tampered query",
    credentials: () => hmac(hmacA, { tamper: "query" }),
    expected: unauthorized,
    reason: "bad_signature",
  },
  {
    name: "HMAC unknown key id",
    credentials: () => ({
      kind: "hmac",
      keyId: "svc-unknown",
      secret: "secret-a-0123456789",
      nonce: nonce(),
    }),
    expected: unauthorized,
    reason: "unknown_key_id",
  },
  {
    name: "HMAC signature not hex",
    credentials: () => ({
      kind: "headers",
      headers: { "x-api-key-id": "svc-a", "x-api-timestamp": String(now()), "x-api-signature": "zz" },
    }),
    expected: unauthorized,
    reason: "malformed_hmac_headers",
  },
  {
    name: "HMAC nonce with bad characters",
    credentials: () => hmac(hmacA, { nonce: "short" }),
    expected: unauthorized,
    reason: "malformed_hmac_headers",
  },
  {
    // Without a nonce a captured request could be replayed for the whole window (issue 18, item 2).
    name: "HMAC without a nonce",
    credentials: () => ({ kind: "hmac", keyId: hmacA.keyId, secret: new TextDecoder().decode(hmacA.secret) }),
    expected: unauthorized,
    reason: "missing_nonce",
  },
];

/** The outcome as this protocol shows it: gRPC has no HTTP status of its own. */
function expectOutcome(actual: Outcome, expected: Case["expected"]): void {
  expect({ code: actual.code, message: actual.message }).toEqual({
    code: expected.code,
    message: expected.message,
  });
  if (actual.status !== undefined) expect(actual.status).toBe(expected.status);
}

/** The one WARNING line of a 401: the reason is named, and nothing secret is in any line. */
function expectLoggedFailure(reason: string | undefined, secrets: readonly string[]): void {
  const failures = log.records().filter((r) => r["message"] === "Authentication failed");
  if (reason === undefined) {
    expect(failures).toEqual([]);
  } else {
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ severity: "WARNING", auth: { reason } });
  }
  // The metrics hook hears of exactly the failures the log reports.
  expect(reported.map((r) => r.reason)).toEqual(reason === undefined ? [] : [reason]);
  reported.length = 0;
  for (const secret of secrets) if (secret.length >= 8) expect(log.text()).not.toContain(secret);
}

/** Everything in the credentials that must never reach a log line. */
function secretsOf(credentials: Credentials): string[] {
  switch (credentials.kind) {
    case "none":
      return [];
    case "headers":
      return Object.values(credentials.headers).flatMap((v) => [v, v.replace(/^Bearer /, "")]);
    case "hmac":
      return [credentials.secret];
  }
}

describe.each(protocols.map(([name, , h2]) => [name, h2] as const))("auth over %s", (protocol, h2) => {
  const client = (): ProtocolClient => clients.get(protocol) as ProtocolClient;

  it.each(cases)("$name", async ({ credentials, product, expected, reason, refusedByHttp2 }) => {
    const creds = await credentials();
    const outcome = await client().call("ListModels", product ?? "product-dev", creds);
    if (h2 && refusedByHttp2 === true) {
      expect(outcome.code).toBe(Code.Internal);
      expect(log.lines).toEqual([]);
      return;
    }
    expectOutcome(outcome, expected);
    expectLoggedFailure(reason, secretsOf(creds));
  });

  it.each([
    ["no credentials", "none", () => ({ kind: "none" }) as const],
    [
      "an expired JWT",
      "jwt",
      async () => bearer(await jwt(rsa, { claims: { iat: now() - 7200, exp: now() - 3600 } })),
    ],
    [
      "an unknown HMAC key id",
      "hmac",
      () => ({ kind: "hmac", keyId: "svc-unknown", secret: "secret-a-0123456789" }) as const,
    ],
    [
      "a JWT and HMAC headers together",
      "none",
      async () =>
        ({
          kind: "headers",
          headers: { authorization: `Bearer ${await jwt(rsa)}`, "x-api-key-id": "svc-a" },
        }) as const,
    ],
  ] as const)("reports %s to the metrics hook as method %s", async (_name, method, credentials) => {
    await client().call("ListModels", "product-dev", await credentials());
    expect(reported.map((r) => r.method)).toEqual([method]);
  });

  it("refuses a replayed HMAC nonce", async () => {
    const creds = hmac(hmacA, { nonce: nonce(), timestamp: now() });
    expectOutcome(await client().call("ListModels", "product-dev", creds), ok("hmac:svc-a"));
    expectOutcome(await client().call("ListModels", "product-dev", creds), unauthorized);
    expectLoggedFailure("replayed_nonce", secretsOf(creds));
  });

  it("does not burn a nonce on a request with a bad signature", async () => {
    const n = nonce();
    expectOutcome(
      await client().call("ListModels", "product-dev", hmac(hmacA, { nonce: n, tamper: "body" })),
      unauthorized,
    );
    expectOutcome(
      await client().call("ListModels", "product-dev", hmac(hmacA, { nonce: n })),
      ok("hmac:svc-a"),
    );
  });
});

describe.each(["connect-h2", "grpc", "rest"])("server streaming over %s", (protocol) => {
  const client = (): ProtocolClient => clients.get(protocol) as ProtocolClient;

  it.each<Case>([
    { name: "JWT", credentials: async () => bearer(await jwt(ec)), expected: ok("jwt:svc-test") },
    { name: "HMAC", credentials: () => hmac(hmacA, { nonce: nonce() }), expected: ok("hmac:svc-a") },
    {
      name: "HMAC tampered body",
      credentials: () => hmac(hmacA, { tamper: "body" }),
      expected: unauthorized,
      reason: "bad_signature",
    },
    {
      name: "no credentials",
      credentials: () => ({ kind: "none" }),
      expected: unauthorized,
      reason: "missing_credentials",
    },
    {
      name: "JWT without the product",
      credentials: async () => bearer(await jwt(ec, { claims: { products: [] } })),
      expected: forbidden,
    },
  ])("$name", async ({ credentials, expected, reason }) => {
    const creds = await credentials();
    expectOutcome(await client().call("StreamChatCompletion", "product-dev", creds), expected);
    expectLoggedFailure(reason, secretsOf(creds));
  });
});

// (A query added after signing cannot reach the interceptor over REST: no route takes query fields, so the
// transcoder answers 400 first; the table's "HMAC tampered query" covers a signed query that differs.)
describe("REST-only attacks on HMAC (the signature covers the real method, path and body)", () => {
  const models = "/v1/chat/product-dev/models";
  const get = (path: string, headers: Record<string, string>) => fetch(`${server.h1Url}${path}`, { headers });
  const key = { keyId: hmacA.keyId, secret: new TextDecoder().decode(hmacA.secret) };

  it.each([
    {
      name: "a signature for the gRPC/Connect path of the same RPC",
      sent: models,
      signed: {
        method: "POST",
        path: "/apikeyserver.v1.ChatService/ListModels",
        query: "",
        body: new Uint8Array([0x0a, 0x0b, ...new TextEncoder().encode("product-dev")]),
      },
    },
    {
      name: "a POST signature sent with GET",
      sent: models,
      signed: { method: "POST", path: models, query: "", body: "" },
    },
    {
      name: "a signature for another product's path",
      sent: models,
      signed: { method: "GET", path: "/v1/chat/product-other/models", query: "", body: "" },
    },
  ])("refuses $name", async ({ sent, signed }) => {
    const headers = credentialHeaders({ kind: "hmac", ...key, nonce: nonce() }, signed);
    const res = await get(sent, headers);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      error: { code: 401, status: "UNAUTHENTICATED", message: "Unauthorized" },
      detail: "Unauthorized",
    });
    expectLoggedFailure("bad_signature", [key.secret, headers["x-api-signature"] ?? ""]);
  });

  it("refuses a nonce first used over Connect when it is replayed over REST", async () => {
    const n = nonce();
    const creds = hmac(hmacA, { nonce: n });
    expectOutcome(
      await clients.get("connect-h1")!.call("ListModels", "product-dev", creds),
      ok("hmac:svc-a"),
    );
    expectOutcome(await clients.get("rest")!.call("ListModels", "product-dev", creds), unauthorized);
    expectLoggedFailure("replayed_nonce", secretsOf(creds));
  });
});

describe.each(["connect-h1", "connect-h2", "rest"])("public services over %s", (protocol) => {
  it("answers health without credentials", async () => {
    const outcome = await clients.get(protocol)?.call("HealthCheck", "", { kind: "none" });
    expect(outcome).toMatchObject({ code: 0, message: "SERVING" });
  });
});

describe("secrets", () => {
  const withSecrets = async (secrets: Secrets | undefined, run: () => Promise<void>): Promise<void> => {
    const saved = current;
    current = secrets;
    try {
      await run();
    } finally {
      current = saved;
    }
  };

  it.each(protocols.map(([name]) => name))("answers 503 before secrets are loaded (%s)", async (protocol) => {
    await withSecrets(undefined, async () => {
      const outcome = await clients.get(protocol)?.call("ListModels", "product-dev", bearer(await jwt(rsa)));
      expect(outcome).toMatchObject({ code: Code.Unavailable, message: "Service not ready" });
      if (outcome?.status !== undefined) expect(outcome.status).toBe(503);
    });
  });

  it.each([
    ["JWT", "jwt_disabled", async () => bearer(await jwt(rsa))],
    ["HMAC", "hmac_disabled", () => Promise.resolve(hmac(hmacA))],
  ] as const)("refuses %s when its secret is missing", async (_name, reason, credentials) => {
    await withSecrets(testSecrets(undefined, undefined), async () => {
      const creds = await credentials();
      expectOutcome(await clients.get("grpc")!.call("ListModels", "product-dev", creds), unauthorized);
      expectLoggedFailure(reason, secretsOf(creds));
    });
  });

  it.each(protocols.map(([name]) => name))(
    "rotates keys without a restart: old and new both valid, then the old removed (%s)",
    async (protocol) => {
      const client = clients.get(protocol)!;
      const oldToken = await jwt(rsa, { claims: { sub: "old" } });
      const newToken = await jwt(rotated, { claims: { sub: "new" } });
      const hmacOld = hmacKey("svc-old", "old-secret-0123456789", ["product-dev"]);
      const hmacNew = hmacKey("svc-new", "new-secret-0123456789", ["product-dev"]);
      const before = current;
      try {
        current = testSecrets([rsa, rotated], [hmacOld, hmacNew]);
        expectOutcome(await client.call("ListModels", "product-dev", bearer(oldToken)), ok("jwt:old"));
        expectOutcome(await client.call("ListModels", "product-dev", bearer(newToken)), ok("jwt:new"));
        expectOutcome(await client.call("ListModels", "product-dev", hmac(hmacOld)), ok("hmac:svc-old"));
        expectOutcome(await client.call("ListModels", "product-dev", hmac(hmacNew)), ok("hmac:svc-new"));

        // A refresh swaps in a new snapshot: the same old token (cached as valid a moment ago) is refused.
        current = testSecrets([rotated], [hmacNew]);
        log.lines.length = 0;
        expectOutcome(await client.call("ListModels", "product-dev", bearer(oldToken)), unauthorized);
        expectLoggedFailure("unknown_kid", [oldToken]);
        log.lines.length = 0;
        expectOutcome(await client.call("ListModels", "product-dev", hmac(hmacOld)), unauthorized);
        expectLoggedFailure("unknown_key_id", ["old-secret-0123456789"]);
        expectOutcome(await client.call("ListModels", "product-dev", bearer(newToken)), ok("jwt:new"));
        expectOutcome(await client.call("ListModels", "product-dev", hmac(hmacNew)), ok("hmac:svc-new"));
      } finally {
        current = before;
      }
    },
  );
});
