import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  createContextValues,
  type StreamRequest,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ChatService,
  ListModelsRequestSchema,
  ListModelsResponseSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  assertCanUseProduct,
  canUseProduct,
  createAuth,
  createAuthInterceptor,
  createMemoryNonceStore,
  defaultPublicServices,
  hmacHeaders,
  principalKey,
  sha256Hex,
  signRequest,
  type Auth,
  type AuthInterceptorOptions,
  type Principal,
} from "../../src/auth/index.js";
import { AuthFailure } from "../../src/auth/auth-failure.js";
import { createHmacVerifier } from "../../src/auth/hmac-verifier.js";
import { createJwtVerifier } from "../../src/auth/jwt-verifier.js";
import { AppError } from "../../src/errors/index.js";
import { exchangeKey, type Exchange } from "../../src/edge/exchange.js";
import { hmacKey, makeTestKey, mintJwt, testSecrets, type TestKey } from "../support/auth-keys.js";
import { captureLog } from "../support/log-capture.js";

let key: TestKey;
beforeAll(async () => {
  key = await makeTestKey("rsa-1", "RS256");
});

describe("JWT verifier", () => {
  it("does not serve a cached verification past the token's exp", async () => {
    let nowMs = 1_800_000_000_000;
    const verifier = createJwtVerifier({
      clockToleranceSeconds: 0,
      maxTokenAgeSeconds: 3600,
      now: () => nowMs,
    });
    const keys = testSecrets([key], undefined).jwtKeys;
    const iat = nowMs / 1000;
    const token = await mintJwt(key, { claims: { iat, exp: iat + 60 } });
    await expect(verifier.verify(token, keys)).resolves.toMatchObject({
      kind: "jwt",
      id: "svc-test",
      keyId: "rsa-1",
    });
    await expect(verifier.verify(token, keys)).resolves.toMatchObject({ kind: "jwt", id: "svc-test" });
    nowMs += 60_000;
    await expect(verifier.verify(token, keys)).rejects.toMatchObject({ reason: "expired" });
  });

  it("does not serve a cached verification past the maximum token age", async () => {
    let nowMs = 1_800_000_000_000;
    const verifier = createJwtVerifier({
      clockToleranceSeconds: 0,
      maxTokenAgeSeconds: 60,
      now: () => nowMs,
    });
    const keys = testSecrets([key], undefined).jwtKeys;
    const iat = nowMs / 1000;
    const token = await mintJwt(key, { claims: { iat, exp: iat + 3600 } });
    await expect(verifier.verify(token, keys)).resolves.toMatchObject({ id: "svc-test" });
    nowMs += 61_000;
    await expect(verifier.verify(token, keys)).rejects.toMatchObject({ reason: "token_too_old" });
  });

  it.each([
    [
      { clockToleranceSeconds: -1, maxTokenAgeSeconds: 60 },
      "jwt.clockToleranceSeconds must be between 0 and 300",
    ],
    [
      { clockToleranceSeconds: 30, maxTokenAgeSeconds: 0 },
      "jwt.maxTokenAgeSeconds must be a positive integer",
    ],
    [
      { clockToleranceSeconds: 30, maxTokenAgeSeconds: 60, issuer: "" },
      "jwt.issuer must not be empty when set",
    ],
    [
      { clockToleranceSeconds: 30, maxTokenAgeSeconds: 60, audience: "" },
      "jwt.audience must not be empty when set",
    ],
    [
      { clockToleranceSeconds: 30, maxTokenAgeSeconds: 60, cacheEntries: -1 },
      "jwt.cacheEntries must be a non-negative integer",
    ],
  ])("rejects options %j", (options, message) => {
    expect(() => createJwtVerifier(options)).toThrow(message);
  });
});

describe("HMAC verifier with the REST request of the transcoder", () => {
  const secret = "rest-secret-0123456789";
  const keys = new Map([["svc-rest", hmacKey("svc-rest", secret, ["product-dev"])]]);
  const verifier = createHmacVerifier({ nonceStore: createMemoryNonceStore() });
  const sent = { method: "GET", path: "/v1/chat/product-dev/models", query: "limit=2&after=x", body: "" };
  const signed = (overrides: Partial<typeof sent> = {}) =>
    signRequest({ keyId: "svc-rest", secret, ...sent, nonce: randomUUID(), ...overrides });
  const parts = { method: "GET", path: sent.path, query: "after=x&limit=2", bodySha256: sha256Hex("") };

  it("accepts the request as signed, whatever the order of the query", async () => {
    await expect(verifier.verify(new Headers(signed()), parts, keys)).resolves.toEqual({
      kind: "hmac",
      id: "svc-rest",
      products: ["product-dev"],
    });
  });

  it.each([
    ["method", { method: "POST" }],
    ["path", { path: "/v1/chat/product-other/models" }],
    ["query", { query: "limit=3&after=x" }],
    ["body", { body: "{}" }],
  ])("refuses a request whose %s differs from the signed one", async (_name, overrides) => {
    await expect(verifier.verify(new Headers(signed(overrides)), parts, keys)).rejects.toMatchObject({
      reason: "bad_signature",
    });
  });

  it("refuses a request without a nonce by default, and accepts (and lets it replay) when relaxed", async () => {
    const withoutNonce = signRequest({ keyId: "svc-rest", secret, ...sent });
    expect(withoutNonce).not.toHaveProperty(hmacHeaders.nonce);
    await expect(verifier.verify(new Headers(withoutNonce), parts, keys)).rejects.toMatchObject({
      reason: "missing_nonce",
    });
    // The documented weaker setting: accepted, and the same request again is accepted too.
    const relaxed = createHmacVerifier({ nonceStore: createMemoryNonceStore(), requireNonce: false });
    for (let i = 0; i < 2; i++) {
      await expect(relaxed.verify(new Headers(withoutNonce), parts, keys)).resolves.toMatchObject({
        id: "svc-rest",
      });
    }
  });

  it("refuses a replay of a request with its nonce", async () => {
    const headers = new Headers(signed());
    await expect(verifier.verify(headers, parts, keys)).resolves.toMatchObject({ id: "svc-rest" });
    await expect(verifier.verify(headers, parts, keys)).rejects.toMatchObject({ reason: "replayed_nonce" });
  });

  it("refuses a query that is not valid percent-encoding", async () => {
    await expect(
      verifier.verify(new Headers(signed()), { ...parts, query: "a=%zz" }, keys),
    ).rejects.toMatchObject({
      reason: "bad_query",
    });
  });

  it.each([0, 3601, 1.5])("rejects windowSeconds %s", (windowSeconds) => {
    expect(() => createHmacVerifier({ windowSeconds, nonceStore: createMemoryNonceStore() })).toThrow(
      "hmac.windowSeconds must be an integer between 1 and 3600",
    );
  });
});

describe("auth precheck and interceptor in process", () => {
  const secret = "rest-secret-0123456789";
  const secrets = testSecrets(undefined, [hmacKey("svc-rest", secret, "*")]);
  const options = (log = captureLog()): AuthInterceptorOptions => ({
    secrets: () => secrets,
    jwt: { clockToleranceSeconds: 30, maxTokenAgeSeconds: 3600 },
    hmac: { windowSeconds: 300, nonceStore: createMemoryNonceStore() },
    publicServices: defaultPublicServices,
    logger: log.logger,
  });
  const method = ChatService.method.listModels;
  /** Only what auth reads of an exchange: the raw headers (a credential header sent twice). */
  const fakeExchange = (): Exchange => ({ req: { rawHeaders: [] } }) as unknown as Exchange;
  const request = (headers: Record<string, string>, exchange: Exchange | undefined): UnaryRequest => ({
    stream: false,
    service: ChatService,
    method,
    requestMethod: "GET",
    url: "http://127.0.0.1/v1/chat/product-dev/models",
    signal: new AbortController().signal,
    header: new Headers(headers),
    contextValues: createContextValues().set(exchangeKey, exchange),
    message: create(ListModelsRequestSchema, { product: "product-dev" }),
  });
  const next = (req: UnaryRequest | StreamRequest): Promise<UnaryResponse> => {
    const principal = req.contextValues.get(principalKey);
    return Promise.resolve({
      stream: false,
      service: ChatService,
      method,
      header: new Headers(),
      trailer: new Headers(),
      message: create(ListModelsResponseSchema, { object: principal?.id ?? "none" }),
    } as UnaryResponse);
  };
  const rest = { method: "GET", path: "/v1/chat/product-dev/models", query: "b=1&a=2" };
  const precheckOf = (
    auth: Auth,
    headers: Record<string, string>,
    exchange: Exchange,
    body: () => Uint8Array | undefined = () => new Uint8Array(),
  ) =>
    auth.precheck({
      service: ChatService.typeName,
      method: method.name,
      headers: new Headers(headers),
      rawHeaders: [],
      exchange,
      signed: rest,
      body,
    });
  const signed = (nonce: string, body = "") =>
    signRequest({ keyId: "svc-rest", secret, ...rest, query: "a=2&b=1", body, nonce });

  it("verifies the signature over the raw request; the interceptor takes the caller from the precheck", async () => {
    const auth = createAuth(options());
    const headers = signed("nonce-rest-0123");
    const exchange = fakeExchange();
    await precheckOf(auth, headers, exchange);
    const res = await auth.interceptor(next)(request(headers, exchange));
    expect(res.message).toMatchObject({ object: "svc-rest" });
    // The nonce was consumed once, by the precheck: the same request again is a replay.
    await expect(precheckOf(auth, headers, fakeExchange())).rejects.toMatchObject({
      code: "unauthenticated",
    });
  });

  it("refuses a forged signature before the body is decoded and leaves the nonce unused", async () => {
    const log = captureLog();
    const auth = createAuth(options(log));
    const forged = { ...signed("nonce-forged-01"), [hmacHeaders.signature]: "0".repeat(64) };
    await expect(precheckOf(auth, forged, fakeExchange())).rejects.toMatchObject({ code: "unauthenticated" });
    expect(log.records()).toMatchObject([{ auth: { reason: "bad_signature", keyId: "svc-rest" } }]);
    // The owner of the key can still use that nonce: a forgery burns nothing.
    await expect(precheckOf(auth, signed("nonce-forged-01"), fakeExchange())).resolves.toBeUndefined();
  });

  it("signs the raw bytes: a body that differs by one byte is refused", async () => {
    const auth = createAuth(options());
    const headers = signed("nonce-body-0123", '{"a":1}');
    await expect(
      precheckOf(auth, headers, fakeExchange(), () => Buffer.from('{"a":1} ')),
    ).rejects.toMatchObject({ code: "unauthenticated" });
    await expect(
      precheckOf(auth, headers, fakeExchange(), () => Buffer.from('{"a":1}')),
    ).resolves.toBeUndefined();
  });

  it("asks for no body when the headers already fail", async () => {
    const auth = createAuth(options());
    const headers = { ...signed("nonce-unknown-1"), [hmacHeaders.keyId]: "svc-unknown" };
    const body = () => {
      throw new Error("the body was asked for");
    };
    await expect(precheckOf(auth, headers, fakeExchange(), body)).rejects.toMatchObject({
      code: "unauthenticated",
    });
  });

  it("refuses, as a server fault, an HMAC call no precheck verified", async () => {
    const log = captureLog();
    const auth = createAuth(options(log));
    const headers = signed("nonce-nocheck-1");
    // A body that is not one message (the protocol refuses it) leaves the call unverified.
    await precheckOf(auth, headers, fakeExchange(), () => undefined);
    for (const exchange of [fakeExchange(), undefined]) {
      await expect(auth.interceptor(next)(request(headers, exchange))).rejects.toMatchObject({
        code: Code.Internal,
      });
    }
    expect(log.records()).toMatchObject([
      { severity: "ERROR", message: "Authentication could not be completed" },
      { severity: "ERROR", message: "Authentication could not be completed" },
    ]);
  });

  it("lets a nonce-store failure surface as itself, without a 401 log line", async () => {
    const log = captureLog();
    const failing = {
      ...options(log),
      hmac: { windowSeconds: 300, nonceStore: { remember: () => Promise.reject(new Error("redis down")) } },
    };
    const err = await precheckOf(createAuth(failing), signed("nonce-0123456789"), fakeExchange()).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ message: "redis down" });
    expect(log.text()).not.toContain("Authentication failed");
    expect(log.records()).toMatchObject([
      { severity: "ERROR", message: "Authentication could not be completed" },
    ]);
  });

  it("rejects bad options when built", () => {
    expect(() =>
      createAuthInterceptor({ ...options(), jwt: { clockToleranceSeconds: 30, maxTokenAgeSeconds: -5 } }),
    ).toThrow("jwt.maxTokenAgeSeconds must be a positive integer");
  });
});

describe("product grants", () => {
  const jwtCaller: Principal = { kind: "jwt", id: "svc", keyId: "k", products: ["product-dev"] };
  const anyCaller: Principal = { kind: "hmac", id: "svc", products: "*" };

  it.each([
    [jwtCaller, "product-dev", true],
    [jwtCaller, "product-other", false],
    [anyCaller, "product-other", true],
  ] as const)("canUseProduct(%o, %s) is %s", (principal, product, allowed) => {
    expect(canUseProduct(principal, product)).toBe(allowed);
  });

  it.each([
    [jwtCaller, "product-other", "forbidden"],
    [undefined, "product-dev", "unauthenticated"],
  ] as const)("assertCanUseProduct(%o, %s) throws %s", (principal, product, code) => {
    let thrown: unknown;
    try {
      assertCanUseProduct(principal, product);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(AppError);
    expect(thrown).toMatchObject({ code });
  });

  it("keeps AuthFailure messages to the reason code", () => {
    expect(new AuthFailure("bad_signature", { keyId: "k" }).message).toBe("bad_signature");
  });
});
