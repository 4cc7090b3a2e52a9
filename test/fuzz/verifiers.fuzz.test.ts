import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { AuthFailure } from "../../src/auth/auth-failure.js";
import { createHmacVerifier } from "../../src/auth/hmac-verifier.js";
import { createJwtVerifier } from "../../src/auth/jwt-verifier.js";
import { createMemoryNonceStore, hmacHeaders, sha256Hex, signRequest } from "../../src/auth/index.js";
import { hmacKey, makeTestKey, mintJwt, type TestKey } from "../support/auth-keys.js";
import { fuzzOptions } from "./fuzz-options.js";

/**
 * The JWT and HMAC verifiers on mutated tokens and headers (issue 18, fuzzing): a mutation is refused
 * with an AuthFailure (which the interceptor turns into the one 401), never accepted and never another
 * error (which would be a 500); the failure's log detail never quotes the token, secret or signature.
 */

const runs = 400;
let key: TestKey;
let token: string;
const keys = () => ({ keys: [key.publicJwk] });

beforeAll(async () => {
  key = await makeTestKey("fuzz-1", "ES256");
  token = await mintJwt(key, { claims: { sub: "fuzz", products: "*" } });
});

/** One edit of a string: replace, insert or delete a character, or cut it. */
const mutation = fc.oneof(
  fc.record({
    kind: fc.constant("replace" as const),
    at: fc.nat(),
    char: fc.string({ minLength: 1, maxLength: 1 }),
  }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    text: fc.string({ minLength: 1, maxLength: 4 }),
  }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(text: string, edits: readonly Mutation[]): string {
  let out = text;
  for (const edit of edits) {
    const at = edit.at % (out.length + 1);
    switch (edit.kind) {
      case "replace":
        out = out.slice(0, at) + edit.char + out.slice(at + 1);
        break;
      case "insert":
        out = out.slice(0, at) + edit.text + out.slice(at);
        break;
      case "delete":
        out = out.slice(0, at) + out.slice(at + edit.count);
        break;
      case "cut":
        out = out.slice(0, at);
        break;
    }
  }
  return out;
}

function expectAuthFailureWithoutSecrets(err: unknown, secrets: readonly string[]): void {
  expect(err).toBeInstanceOf(AuthFailure);
  const detail = JSON.stringify((err as AuthFailure).detail);
  for (const secret of secrets) if (secret.length >= 8) expect(detail).not.toContain(secret);
}

describe("JWT verifier under fuzzing", () => {
  it("refuses every mutated token with an AuthFailure", async () => {
    const verifier = createJwtVerifier({
      clockToleranceSeconds: 30,
      maxTokenAgeSeconds: 3600,
      cacheEntries: 0,
    });
    await expect(verifier.verify(token, keys())).resolves.toMatchObject({ id: "fuzz" });
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (edits) => {
        const mutated = mutate(token, edits);
        const outcome = await verifier.verify(mutated, keys()).then(
          (principal) => ({ principal }),
          (err: unknown) => ({ err }),
        );
        if ("principal" in outcome) {
          // Only an edit that changed nothing the signature covers can pass (e.g. a replaced character
          // that was the same); anything else accepted would be a forgery.
          expect(mutated).toBe(token);
          return;
        }
        expectAuthFailureWithoutSecrets(outcome.err, [token, mutated]);
      }),
      fuzzOptions(runs),
    );
  });

  it.each([
    ["a space", " "],
    ["a padding character", "="],
    ["a base64 (not base64url) character", "+"],
  ])(
    "refuses a token with %s inside its signature (found by this suite: jose skipped it)",
    async (_what, char) => {
      const verifier = createJwtVerifier({
        clockToleranceSeconds: 30,
        maxTokenAgeSeconds: 3600,
        cacheEntries: 0,
      });
      const at = token.length - 5;
      await expect(
        verifier.verify(token.slice(0, at) + char + token.slice(at), keys()),
      ).rejects.toMatchObject({
        reason: "malformed_token",
      });
    },
  );

  it("refuses arbitrary strings and dotted garbage with an AuthFailure", async () => {
    const verifier = createJwtVerifier({ clockToleranceSeconds: 30, maxTokenAgeSeconds: 3600 });
    const segment = fc.oneof(
      fc.base64String(),
      fc.string(),
      fc.json().map((j) => Buffer.from(j).toString("base64url")),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.tuple(segment, segment, segment).map((parts) => parts.join(".")),
        ),
        async (text) => {
          const err = await verifier.verify(text, keys()).then(
            () => undefined,
            (e: unknown) => e,
          );
          expectAuthFailureWithoutSecrets(err, [text]);
        },
      ),
      fuzzOptions(runs),
    );
  });
});

describe("HMAC verifier under fuzzing", () => {
  const secret = "hmac-fuzz-secret-0123456789-abcdefghij";
  const keyMap = new Map([["svc-fuzz", hmacKey("svc-fuzz", secret, "*")]]);
  const request = { method: "POST", path: "/v1/chat/product-dev", query: "a=1", body: '{"model":"m"}' };
  const parts = { method: "POST", path: request.path, query: "a=1", bodySha256: sha256Hex(request.body) };
  const names = [hmacHeaders.keyId, hmacHeaders.timestamp, hmacHeaders.nonce, hmacHeaders.signature] as const;

  it("refuses every mutated header with an AuthFailure, never quoting the secret or signature", async () => {
    const verifier = createHmacVerifier({ nonceStore: createMemoryNonceStore({}) });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...names),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        async (name, edits, drop) => {
          const signed = signRequest({ keyId: "svc-fuzz", secret, ...request, nonce: randomUUID() });
          const original = signed[name] ?? "";
          const headers = new Headers(signed);
          const mutated = mutate(original, edits);
          if (drop) headers.delete(name);
          else headers.set(name, mutated.replace(/[\r\n\0]/g, ""));
          const value = headers.get(name);
          const err = await verifier.verify(headers, parts, keyMap).then(
            () => undefined,
            (e: unknown) => e,
          );
          if (err === undefined) {
            // Accepted: only when the header still says the same thing (hex case, or an unchanged value).
            expect(value?.toLowerCase()).toBe(original.toLowerCase());
            return;
          }
          expectAuthFailureWithoutSecrets(err, [secret, signed[hmacHeaders.signature] ?? ""]);
        },
      ),
      fuzzOptions(runs),
    );
  });
});
