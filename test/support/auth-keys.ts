import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK } from "jose";
import type { HmacKey, Secrets } from "../../src/secrets/types.js";

/** A signing key pair made for one test run (no private key is ever committed). */
export interface TestKey {
  readonly kid: string;
  readonly alg: "RS256" | "PS256" | "ES256" | "EdDSA";
  readonly privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  /** The public JWK as jwt-public-keys holds it after normalisation (kid + alg). */
  readonly publicJwk: JWK;
  readonly publicPem: string;
}

export async function makeTestKey(kid: string, alg: TestKey["alg"]): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return {
    kid,
    alg,
    privateKey,
    publicJwk: { ...jwk, kid, alg, use: "sig" },
    publicPem: await exportSPKI(publicKey),
  };
}

export interface MintOptions {
  /** Claims; `sub`, `products`, `iat` and `exp` (1 h) are filled in unless given (undefined removes). */
  readonly claims?: Readonly<Record<string, unknown>>;
  /** Extra protected header fields (crit, a different kid, ...). */
  readonly header?: Record<string, unknown>;
  /** Clock in seconds; default now. */
  readonly nowSeconds?: number;
  /** Recognised crit extensions for signing a token that uses them. */
  readonly crit?: Record<string, boolean>;
}

/** Signs a JWT with the test key. Claims set to undefined in `claims` are left out. */
export async function mintJwt(key: TestKey, options: MintOptions = {}): Promise<string> {
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    sub: "svc-test",
    products: ["product-dev"],
    iat: now,
    exp: now + 3600,
    ...options.claims,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...options.header })
    .sign(key.privateKey, options.crit !== undefined ? { crit: options.crit } : {});
}

export function base64url(value: string | Uint8Array): string {
  return Buffer.from(value).toString("base64url");
}

/** An unsigned token (`alg: none`) with the given kid and default claims. */
export function unsignedJwt(kid: string): string {
  const now = Math.floor(Date.now() / 1000);
  const header = base64url(JSON.stringify({ alg: "none", kid, typ: "JWT" }));
  const payload = base64url(
    JSON.stringify({ sub: "svc-test", products: ["product-dev"], iat: now, exp: now + 3600 }),
  );
  return `${header}.${payload}.`;
}

/** The classic key-confusion token: HS256 with the verifier's public key (PEM text) as the HMAC secret. */
export async function hs256WithPublicKey(key: TestKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: "svc-test", products: ["product-dev"] })
    .setProtectedHeader({ alg: "HS256", kid: key.kid, typ: "JWT" })
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(new TextEncoder().encode(key.publicPem));
}

export function hmacKey(keyId: string, secret: string, products: HmacKey["products"]): HmacKey {
  return { keyId, secret: new TextEncoder().encode(secret), products };
}

/** A Secrets snapshot with the given keys and two products (product-dev, product-other) on echo. */
export function testSecrets(
  jwtKeys: readonly TestKey[] | undefined,
  hmacKeys: readonly HmacKey[] | undefined,
): Secrets {
  const echo = {
    name: "echo",
    kind: "echo",
    apiKeys: [],
    baseUrl: undefined,
    models: ["echo-1"],
  } as const;
  const product = (name: string) =>
    [
      name,
      {
        name,
        providers: [echo],
        models: new Map([["echo-1", echo]]),
        rateLimit: undefined,
        maxTokens: undefined,
      },
    ] as const;
  return {
    products: new Map([product("product-dev"), product("product-other")]),
    jwtKeys: jwtKeys === undefined ? undefined : { keys: jwtKeys.map((k) => k.publicJwk) },
    hmacKeys: hmacKeys === undefined ? undefined : new Map(hmacKeys.map((k) => [k.keyId, k])),
    loadedAt: Date.now(),
  };
}
