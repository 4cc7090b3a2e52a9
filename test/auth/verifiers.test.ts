import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
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
  createAuthInterceptor,
  createMemoryNonceStore,
  defaultPublicServices,
  hmacHeaders,
  principalKey,
  sha256Hex,
  signRequest,
  type AuthInterceptorOptions,
  type Principal,
} from "../../src/auth/index.js";
import { AuthFailure } from "../../src/auth/auth-failure.js";
import { createHmacVerifier } from "../../src/auth/hmac-verifier.js";
import { createJwtVerifier } from "../../src/auth/jwt-verifier.js";
import { AppError } from "../../src/errors/index.js";
import { httpRequestInfoKey, type HttpRequestInfo } from "../../src/lib/request-context.js";
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

describe("auth interceptor in process", () => {
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
  const request = (headers: Record<string, string>, info: HttpRequestInfo | undefined): UnaryRequest => ({
    stream: false,
    service: ChatService,
    method,
    requestMethod: "GET",
    url: "http://127.0.0.1/v1/chat/product-dev/models",
    signal: new AbortController().signal,
    header: new Headers(headers),
    contextValues: createContextValues().set(httpRequestInfoKey, info),
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

  it("verifies REST calls against the original HTTP request from httpRequestInfoKey", async () => {
    const info: HttpRequestInfo = {
      method: "GET",
      path: "/v1/chat/product-dev/models",
      query: "b=1&a=2",
      bodySha256: sha256Hex(""),
    };
    const headers = signRequest({
      keyId: "svc-rest",
      secret,
      method: "GET",
      path: info.path,
      query: "a=2&b=1",
      body: "",
      nonce: "nonce-rest-0123",
    });
    const res = await createAuthInterceptor(options())(next)(request(headers, info));
    expect(res.message).toMatchObject({ object: "svc-rest" });
    // The same headers do not fit the gRPC form of the call (POST /service/method, message bytes).
    await expect(createAuthInterceptor(options())(next)(request(headers, undefined))).rejects.toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: "Unauthorized",
    });
  });

  it("lets a nonce-store failure surface as INTERNAL, without a 401 log line", async () => {
    const log = captureLog();
    const failing = {
      ...options(log),
      hmac: { windowSeconds: 300, nonceStore: { remember: () => Promise.reject(new Error("redis down")) } },
    };
    const headers = signRequest({
      keyId: "svc-rest",
      secret,
      method: "POST",
      path: "/apikeyserver.v1.ChatService/ListModels",
      body: new Uint8Array([0x0a, 0x0b, ...Buffer.from("product-dev")]),
      nonce: "nonce-0123456789",
    });
    const err = await createAuthInterceptor(failing)(next)(request(headers, undefined)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect(err).toMatchObject({ code: Code.Internal, rawMessage: "Internal server error" });
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
