import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SecretFormatError, parseHmacSecrets, parseJwtKeys, parseProducts } from "../../src/secrets/index.js";
import { fuzzOptions } from "./fuzz-options.js";

/**
 * The three secret parsers on arbitrary and near-valid input (issue 18, fuzzing): they either accept or
 * throw a SecretFormatError (which start-up and refresh turn into one log line), never anything else,
 * and the error never quotes a secret value (the canaries below sit where keys and secrets go).
 */

const canaryKey = "sk-fuzz-canary-9QxZ2mL7vB4nT8wK";
const canarySecret = "hmac-fuzz-canary-secret-5hJ3kP9sD2fG7lQ1";
const runs = 400;

/** Valid-looking documents with one random part, so the fuzzer gets past the first checks. */
const products = fc.record({
  name: fc.oneof(fc.constant("product-dev"), fc.string()),
  provider: fc.oneof(
    fc.constant("openai"),
    fc.constantFrom("anthropic", "gemini", "azure", "echo"),
    fc.string(),
  ),
  model: fc.oneof(fc.constant("gpt-4o"), fc.string(), fc.integer()),
  extra: fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 2 }),
  baseUrl: fc.oneof(fc.constant(undefined), fc.webUrl(), fc.string()),
  rateLimit: fc.oneof(fc.constant(undefined), fc.jsonValue()),
});

const anyText = fc.oneof(
  fc.string(),
  fc.json(),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ unit: "binary" }),
);

function expectFormatErrorOnly(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretFormatError);
    expect((err as Error).message).not.toContain(canaryKey);
    expect((err as Error).message).not.toContain(canarySecret);
  }
}

async function expectFormatErrorOnlyAsync(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretFormatError);
  }
}

describe("secret parsers under fuzzing", () => {
  it("parseProducts: arbitrary text", () => {
    fc.assert(
      fc.property(anyText, (text) => expectFormatErrorOnly(() => parseProducts(text))),
      fuzzOptions(runs),
    );
  });

  it("parseProducts: near-valid documents never echo the API key", () => {
    fc.assert(
      fc.property(products, (p) => {
        const provider: Record<string, unknown> = { api_key: canaryKey, models: [p.model], ...p.extra };
        if (p.baseUrl !== undefined) provider["base_url"] = p.baseUrl;
        const product: Record<string, unknown> = { providers: { [p.provider]: provider } };
        if (p.rateLimit !== undefined) product["rate_limit"] = p.rateLimit;
        expectFormatErrorOnly(() => parseProducts(JSON.stringify({ [p.name]: product })));
      }),
      fuzzOptions(runs),
    );
  });

  it("parseHmacSecrets: arbitrary text and near-valid documents", () => {
    fc.assert(
      fc.property(anyText, (text) => expectFormatErrorOnly(() => parseHmacSecrets(text))),
      fuzzOptions(runs),
    );
    fc.assert(
      fc.property(
        fc.string(),
        fc.oneof(fc.constant(canarySecret), fc.constant(canarySecret.slice(0, 20))),
        fc.oneof(fc.constant("*"), fc.array(fc.string()), fc.jsonValue()),
        fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 2 }),
        (keyId, secret, grant, extra) =>
          expectFormatErrorOnly(() =>
            parseHmacSecrets(JSON.stringify({ [keyId]: { secret, products: grant, ...extra } })),
          ),
      ),
      fuzzOptions(runs),
    );
  });

  it("parseJwtKeys: arbitrary text and near-valid key sets", async () => {
    await fc.assert(
      fc.asyncProperty(anyText, (text) => expectFormatErrorOnlyAsync(() => parseJwtKeys(text))),
      fuzzOptions(runs),
    );
    const jwk = fc.record(
      {
        kty: fc.constantFrom("RSA", "EC", "OKP", "oct", "x"),
        crv: fc.constantFrom("P-256", "P-384", "Ed25519", "X25519", ""),
        kid: fc.oneof(fc.string(), fc.integer()),
        alg: fc.constantFrom("RS256", "ES256", "EdDSA", "HS256", "none", ""),
        x: fc.base64String(),
        y: fc.base64String(),
        n: fc.base64String(),
        e: fc.constantFrom("AQAB", ""),
        use: fc.constantFrom("sig", "enc"),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.array(jwk, { maxLength: 3 }).map((keys) => JSON.stringify({ keys })),
          fc
            .array(
              fc.record({ kid: fc.string(), pem: fc.string(), alg: fc.string() }, { requiredKeys: [] }),
              {
                maxLength: 3,
              },
            )
            .map((list) => JSON.stringify(list)),
        ),
        (text) => expectFormatErrorOnlyAsync(() => parseJwtKeys(text)),
      ),
      fuzzOptions(runs),
    );
  });
});
