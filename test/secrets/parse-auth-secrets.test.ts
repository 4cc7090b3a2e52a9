import { generateKeyPairSync } from "node:crypto";
import {
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  SignJWT,
  jwtVerify,
  createLocalJWKSet,
} from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { parseHmacSecrets, parseJwtKeys, SecretFormatError } from "../../src/secrets/index.js";

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

async function formatError(promise: Promise<unknown>): Promise<SecretFormatError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof SecretFormatError) return err;
    throw err;
  }
  throw new Error("expected a SecretFormatError");
}

describe("parseJwtKeys", () => {
  let rsaPem: string;
  let ecPem: string;
  let edPem: string;
  let rsaPrivate: PrivateKey;
  let ecPublicJwk: Record<string, unknown>;
  let ecPrivateJwk: Record<string, unknown>;
  let ecPrivate: PrivateKey;

  beforeAll(async () => {
    const rsa = await generateKeyPair("RS256", { extractable: true });
    rsaPem = await exportSPKI(rsa.publicKey);
    rsaPrivate = rsa.privateKey;
    const ec = await generateKeyPair("ES256", { extractable: true });
    ecPem = await exportSPKI(ec.publicKey);
    ecPublicJwk = { ...(await exportJWK(ec.publicKey)) };
    ecPrivateJwk = { ...(await exportJWK(ec.privateKey)) };
    ecPrivate = ec.privateKey;
    const ed = await generateKeyPair("EdDSA", { extractable: true });
    edPem = await exportSPKI(ed.publicKey);
  });

  it("normalises a PEM list to a JWKS with kid and inferred alg, usable by jose", async () => {
    const jwks = await parseJwtKeys(
      JSON.stringify([
        { kid: "rsa-1", pem: rsaPem },
        { kid: "ec-1", pem: ecPem },
        { kid: "ed-1", pem: edPem },
        { kid: "ps-1", pem: rsaPem, alg: "PS256" },
      ]),
    );
    expect(jwks.keys.map((k) => [k.kid, k.alg, k.kty])).toEqual([
      ["rsa-1", "RS256", "RSA"],
      ["ec-1", "ES256", "EC"],
      ["ed-1", "EdDSA", "OKP"],
      ["ps-1", "PS256", "RSA"],
    ]);
    const jwt = await new SignJWT({ products: ["p"] })
      .setProtectedHeader({ alg: "RS256", kid: "rsa-1" })
      .setExpirationTime("1m")
      .sign(rsaPrivate);
    const { payload } = await jwtVerify(jwt, createLocalJWKSet(jwks), { algorithms: ["RS256"] });
    expect(payload.products).toEqual(["p"]);
  });

  it("accepts a JWKS of public keys, inferring alg when absent", async () => {
    const jwks = await parseJwtKeys(JSON.stringify({ keys: [{ ...ecPublicJwk, kid: "ec-2" }] }));
    expect(jwks.keys[0]).toMatchObject({ kid: "ec-2", alg: "ES256", kty: "EC", crv: "P-256" });
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "ec-2" })
      .setExpirationTime("1m")
      .sign(ecPrivate);
    await expect(jwtVerify(jwt, createLocalJWKSet(jwks), { algorithms: ["ES256"] })).resolves.toBeTruthy();
    await expect(importJWK(jwks.keys[0] ?? {}, "ES256")).resolves.toBeTruthy();
  });

  it.each([
    // An empty set would refuse every JWT caller; turning JWT off is deleting the secret (issue 18, item 6).
    ["an empty JWKS", () => '{"keys": []}', "$.keys: no keys (to turn JWT off, delete the secret instead)"],
    ["an empty PEM list", () => "[]", "$: no keys (to turn JWT off, delete the secret instead)"],
    // "n" may start null: the "o" is the first character that cannot.
    ["not JSON", () => "nope", "$: not valid JSON at line 1, column 2"],
    ["a string", () => '"x"', "$: expected an object, got a string"],
    ["a JWKS without keys array", () => '{"keys": {}}', "$.keys: expected an array of JWKs"],
    [
      "an unknown JWKS member",
      () => '{"keys": [], "extra": 1}',
      "$.extra: unknown key (expected one of keys)",
    ],
    [
      "a private JWK",
      () => JSON.stringify({ keys: [{ ...ecPrivateJwk, kid: "k" }] }),
      "$.keys[0].d: private or symmetric key material is not allowed",
    ],
    [
      "a symmetric JWK",
      () => JSON.stringify({ keys: [{ kty: "oct", k: "c2VjcmV0", kid: "h" }] }),
      "$.keys[0].k: private or symmetric key material is not allowed",
    ],
    ["a JWK without kid", () => JSON.stringify({ keys: [{ ...ecPublicJwk }] }), "$.keys[0].kid: required"],
    [
      "a JWK with an HS alg",
      () => JSON.stringify({ keys: [{ ...ecPublicJwk, kid: "k", alg: "HS256" }] }),
      "$.keys[0].alg: expected one of RS256, PS256, ES256, EdDSA",
    ],
    [
      "a JWK whose alg does not fit the key",
      () => JSON.stringify({ keys: [{ ...ecPublicJwk, kid: "k", alg: "RS256" }] }),
      "$.keys[0]: not a valid public key for RS256",
    ],
    [
      "a JWK for encryption",
      () => JSON.stringify({ keys: [{ ...ecPublicJwk, kid: "k", use: "enc" }] }),
      '$.keys[0].use: expected "sig"',
    ],
    ["a PEM entry without kid", () => JSON.stringify([{ pem: rsaPem }]), "$[0].kid: required"],
    [
      "a PEM entry with an unknown member",
      () => JSON.stringify([{ kid: "a", pem: rsaPem, algorithm: "RS256" }]),
      "$[0].algorithm: unknown key (expected one of kid, pem, alg)",
    ],
    [
      "a private key PEM",
      () =>
        JSON.stringify([
          {
            kid: "a",
            pem: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
              type: "pkcs8",
              format: "pem",
            }),
          },
        ]),
      "$[0].pem: expected an SPKI public key (-----BEGIN PUBLIC KEY-----)",
    ],
    [
      "a broken PEM",
      () => JSON.stringify([{ kid: "a", pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }]),
      "$[0].pem: not a valid public key",
    ],
    [
      "a PEM whose alg does not fit the key",
      () => JSON.stringify([{ kid: "a", pem: rsaPem, alg: "ES256" }]),
      "$[0].pem: not a valid public key for ES256",
    ],
    [
      "a duplicate kid",
      () =>
        JSON.stringify([
          { kid: "a", pem: rsaPem },
          { kid: "a", pem: ecPem },
        ]),
      '$[1].kid: duplicate kid "a"',
    ],
    [
      "a duplicate kid in a JWKS",
      () =>
        JSON.stringify({
          keys: [
            { ...ecPublicJwk, kid: "a" },
            { ...ecPublicJwk, kid: "a" },
          ],
        }),
      '$.keys[1].kid: duplicate kid "a"',
    ],
  ])("rejects %s with the JSON path at fault", async (_case, doc, message) => {
    const text = doc();
    const err = await formatError(parseJwtKeys(text));
    expect(err.message).toBe(message);
    // No key material (long base64 runs) ever reaches the message.
    expect(err.message).not.toMatch(/[A-Za-z0-9+/_-]{40,}/);
  });
});

describe("parseHmacSecrets", () => {
  const secret = "0123456789abcdef0123456789abcdef-DO-NOT-LEAK";

  it("reads keys with product lists and wildcards", () => {
    const keys = parseHmacSecrets(
      JSON.stringify({ "svc-a": { secret, products: ["product-dev"] }, "svc.b": { secret, products: "*" } }),
    );
    expect(keys.get("svc-a")).toEqual({
      keyId: "svc-a",
      secret: new TextEncoder().encode(secret),
      products: ["product-dev"],
    });
    expect(keys.get("svc.b")?.products).toBe("*");
  });

  it.each([
    // An empty set would refuse every HMAC caller; turning HMAC off is deleting the secret (issue 18, item 6).
    ["no keys", {}, "$: no keys (to turn HMAC off, delete the secret instead)"],
    ["not JSON", "[", "$: not valid JSON at line 1, column 2"],
    ["an array", [], "$: expected an object, got an array"],
    [
      "a bad key id",
      { "a/b": { secret, products: "*" } },
      "$[\"a/b\"]: a key id must be 1-128 letters, digits, '.', '_' or '-'",
    ],
    ["a missing secret", { k: { products: "*" } }, "$.k.secret: required"],
    [
      "a short secret",
      { k: { secret: "short-DO-NOT-LEAK", products: "*" } },
      "$.k.secret: must be at least 32 characters",
    ],
    [
      "a numeric secret",
      { k: { secret: 123, products: "*" } },
      "$.k.secret: expected a non-empty string, got a number",
    ],
    ["missing products", { k: { secret } }, '$.k.products: required (a list of products or "*")'],
    [
      "empty products",
      { k: { secret, products: [] } },
      "$.k.products: expected a non-empty array of strings, got an empty array",
    ],
    [
      "another wildcard",
      { k: { secret, products: "all" } },
      "$.k.products: expected a non-empty array of strings, got a string",
    ],
    [
      "an unknown member",
      { k: { secret, products: "*", product: "x" } },
      "$.k.product: unknown key (expected one of secret, products)",
    ],
  ])("rejects %s with the JSON path at fault, never the secret", (_case, doc, message) => {
    let caught: unknown;
    try {
      parseHmacSecrets(typeof doc === "string" ? doc : JSON.stringify(doc));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SecretFormatError);
    expect((caught as Error).message).toBe(message);
    expect((caught as Error).message).not.toContain("DO-NOT-LEAK");
  });
});
