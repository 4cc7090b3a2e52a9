import { createPublicKey } from "node:crypto";
import { exportJWK, importJWK, importSPKI, type JSONWebKeySet, type JWK } from "jose";
import {
  childPath,
  expectKeys,
  expectObject,
  expectString,
  fail,
  parseJson,
  type JsonObject,
} from "./format-error.js";

/**
 * Asymmetric signature algorithms accepted for caller JWTs (never `none` or HS*): the verifier's allow-list
 * so that a key which loads is a key whose tokens can verify.
 */
export const jwtAlgorithms = ["RS256", "PS256", "ES256", "EdDSA"] as const;
export type JwtAlgorithm = (typeof jwtAlgorithms)[number];

/** JWK members that only private or symmetric keys have. */
const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;
const pemEntryKeys = ["kid", "pem", "alg"] as const;

/**
 * Validates the JWT key secret (`jwt-public-keys`) and normalises it to a JWKS in which every key has `kid`
 * and `alg`. Accepts a JWKS `{"keys": [...]}` of public keys, or `[{"kid", "pem", "alg"?}]` with SPKI PEM
 * public keys. `alg`, when absent, follows from the key: RSA → RS256, EC P-256 → ES256,
 * Ed25519 → EdDSA. Throws SecretFormatError naming the JSON path at fault.
 */
export async function parseJwtKeys(text: string): Promise<JSONWebKeySet> {
  const root = parseJson(text);
  const entries = Array.isArray(root)
    ? await Promise.all(root.map((entry: unknown, i) => fromPemEntry(entry, childPath("$", i))))
    : await fromJwks(root);
  // An empty set would refuse every JWT caller: one bad push, a full outage. JWT is turned off by deleting
  // the secret (docs/auth.md), so an empty one is a mistake, and the last good version stays.
  if (entries.length === 0) {
    fail(Array.isArray(root) ? "$" : "$.keys", "no keys (to turn JWT off, delete the secret instead)");
  }
  const seen = new Set<string>();
  entries.forEach((jwk, i) => {
    const kid = jwk.kid ?? "";
    if (seen.has(kid)) {
      const path = Array.isArray(root) ? childPath("$", i) : childPath(childPath("$", "keys"), i);
      fail(childPath(path, "kid"), `duplicate kid ${JSON.stringify(kid)}`);
    }
    seen.add(kid);
  });
  return Object.freeze({ keys: Object.freeze(entries.map((k) => Object.freeze(k))) }) as JSONWebKeySet;
}

async function fromJwks(root: unknown): Promise<JWK[]> {
  const jwks = expectObject(root, "$");
  expectKeys(jwks, ["keys"], "$");
  const keysPath = childPath("$", "keys");
  if (!Array.isArray(jwks.keys)) fail(keysPath, "expected an array of JWKs");
  return Promise.all(jwks.keys.map((entry: unknown, i) => fromJwk(entry, childPath(keysPath, i))));
}

async function fromJwk(value: unknown, path: string): Promise<JWK> {
  const jwk = expectObject(value, path);
  for (const member of privateMembers) {
    // Said without the value: a private key pasted by mistake must not reach a log.
    if (member in jwk) fail(childPath(path, member), "private or symmetric key material is not allowed");
  }
  const kid = expectString(jwk.kid, childPath(path, "kid"));
  if (jwk.use !== undefined && jwk.use !== "sig") fail(childPath(path, "use"), 'expected "sig"');
  const alg = jwk.alg === undefined ? inferFromJwk(jwk, path) : expectAlg(jwk.alg, childPath(path, "alg"));
  try {
    await importJWK({ ...jwk, alg }, alg);
  } catch {
    fail(path, `not a valid public key for ${alg}`);
  }
  return { ...(jwk as JWK), kid, alg };
}

async function fromPemEntry(value: unknown, path: string): Promise<JWK> {
  const entry = expectObject(value, path);
  expectKeys(entry, pemEntryKeys, path);
  const kid = expectString(entry.kid, childPath(path, "kid"));
  const pemPath = childPath(path, "pem");
  const pem = expectString(entry.pem, pemPath);
  if (!pem.includes("-----BEGIN PUBLIC KEY-----")) {
    // createPublicKey would quietly derive a public key from a private one; refuse private PEMs outright.
    fail(pemPath, "expected an SPKI public key (-----BEGIN PUBLIC KEY-----)");
  }
  let alg: JwtAlgorithm;
  if (entry.alg === undefined) {
    let jwk: JsonObject;
    try {
      jwk = createPublicKey(pem).export({ format: "jwk" });
    } catch {
      return fail(pemPath, "not a valid public key");
    }
    alg = inferFromJwk(jwk, pemPath);
  } else {
    alg = expectAlg(entry.alg, childPath(path, "alg"));
  }
  try {
    const key = await importSPKI(pem, alg, { extractable: true });
    return { ...(await exportJWK(key)), kid, alg, use: "sig" };
  } catch {
    return fail(pemPath, `not a valid public key for ${alg}`);
  }
}

function expectAlg(value: unknown, path: string): JwtAlgorithm {
  const alg = jwtAlgorithms.find((a) => a === value);
  if (alg === undefined) fail(path, `expected one of ${jwtAlgorithms.join(", ")}`);
  return alg;
}

function inferFromJwk(jwk: JsonObject, path: string): JwtAlgorithm {
  const byCurve: Readonly<Record<string, JwtAlgorithm>> = {
    "P-256": "ES256",
    Ed25519: "EdDSA",
  };
  if (jwk.kty === "RSA") return "RS256";
  const alg =
    (jwk.kty === "EC" || jwk.kty === "OKP") && typeof jwk.crv === "string" ? byCurve[jwk.crv] : undefined;
  if (alg === undefined) fail(path, `unsupported key type; allowed algorithms: ${jwtAlgorithms.join(", ")}`);
  return alg;
}
