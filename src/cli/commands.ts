import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  exportJWK,
  exportSPKI,
  generateKeyPair as joseGenerateKeyPair,
  importJWK,
  SignJWT,
  type CryptoKey,
  type JWK,
} from "jose";
import { allowedJwtAlgorithms, signRequest } from "../auth/index.js";

export type JwtAlgorithm = (typeof allowedJwtAlgorithms)[number];

/** File names inside the config directory. The private key file is git-ignored and for development only. */
export const devPrivateKeyFile = "dev_jwt_private_key.json";
export const publicKeysFile = "jwt_public_keys.json";

export interface KeygenOptions {
  readonly configDir: string;
  /** Default "ES256". */
  readonly alg?: JwtAlgorithm;
  /** Default `dev-<yyyymmddhhmmss>`. */
  readonly kid?: string;
  /** Overwrite an existing development private key. */
  readonly force?: boolean;
  readonly now?: () => number;
}

export interface KeygenResult {
  readonly kid: string;
  readonly alg: JwtAlgorithm;
  readonly privateKeyPath: string;
  readonly publicKeysPath: string;
}

export interface GeneratedKeyPair {
  readonly kid: string;
  readonly alg: JwtAlgorithm;
  /** The private JWK (with kid, alg, use). */
  readonly privateJwk: JWK;
  /** A JWKS holding only the public key: a complete `jwt-public-keys` secret. */
  readonly publicJwks: { keys: JWK[] };
}

/** A new signing key pair, in memory only (`keygen --stdout`, e.g. inside the image where nothing is writable). */
export async function generateKeyPair(
  options: Pick<KeygenOptions, "alg" | "kid" | "now"> = {},
): Promise<GeneratedKeyPair & { readonly publicKey: CryptoKey }> {
  const alg = options.alg ?? "ES256";
  const stamp = new Date((options.now ?? Date.now)()).toISOString().replace(/[-:T]/g, "").slice(0, 14);
  const kid = options.kid ?? `dev-${stamp}`;
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(kid))
    throw new Error("--kid must be 1-128 characters of A-Z a-z 0-9 . _ -");
  const { privateKey, publicKey } = await joseGenerateKeyPair(alg, { extractable: true });
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg, use: "sig" };
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateJwk, publicJwks: { keys: [publicJwk] }, publicKey };
}

/**
 * Writes a development key pair: the private JWK to `<configDir>/dev_jwt_private_key.json` (mode 0600;
 * refused if it exists unless `force`) and the public key into `<configDir>/jwt_public_keys.json`. That file
 * keeps its format (a JWKS, or the `[{kid, pem, alg}]` list) and its other keys (one with the same kid is
 * replaced), so rotating is "keygen, then deploy"; a new file is a JWKS.
 */
export async function keygen(options: KeygenOptions): Promise<KeygenResult> {
  const { kid, alg, privateJwk, publicJwks, publicKey } = await generateKeyPair(options);
  const privateKeyPath = path.join(options.configDir, devPrivateKeyFile);
  const publicKeysPath = path.join(options.configDir, publicKeysFile);

  const existing = await readPublicKeys(publicKeysPath);
  const updated = Array.isArray(existing)
    ? [...existing.filter((k) => k.kid !== kid), { kid, pem: (await exportSPKI(publicKey)).trim(), alg }]
    : { keys: [...existing.keys.filter((k) => k.kid !== kid), ...publicJwks.keys] };

  try {
    await mkdir(options.configDir, { recursive: true });
    await writeFile(privateKeyPath, `${JSON.stringify(privateJwk, null, 2)}\n`, {
      mode: 0o600,
      flag: options.force === true ? "w" : "wx",
    });
    // Written whole, then renamed over the old file: a running server watches the folder and must never
    // read a half-written key file (src/secrets/file-source.ts).
    const partial = `${publicKeysPath}.${process.pid}.tmp`;
    await writeFile(partial, `${JSON.stringify(updated, null, 2)}\n`);
    await rename(partial, publicKeysPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      throw new Error(`${privateKeyPath} exists; pass --force to replace it`, { cause: err });
    }
    if (code === "EACCES" || code === "EROFS" || code === "EPERM") {
      // Inside the image the app folder belongs to root: nothing there is writable by the server's user.
      throw new Error(
        `cannot write to ${options.configDir} (${code}); pass --config-dir with a writable folder, or --stdout to print the keys`,
        { cause: err },
      );
    }
    throw err;
  }
  return { kid, alg, privateKeyPath, publicKeysPath };
}

type PublicKeys = { keys: JWK[] } | { kid?: unknown }[];

/** The existing jwt_public_keys.json in either accepted format; an empty JWKS when there is none. */
async function readPublicKeys(file: string): Promise<PublicKeys> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { keys: [] };
    throw err;
  }
  const parsed = JSON.parse(text) as unknown;
  if (Array.isArray(parsed)) return parsed as { kid?: unknown }[];
  if (typeof parsed === "object" && parsed !== null && Array.isArray((parsed as { keys?: unknown }).keys)) {
    return parsed as { keys: JWK[] };
  }
  throw new Error(`${file} is neither a JWKS nor a list of PEM keys; move it aside before running keygen`);
}

export interface TokenOptions {
  readonly configDir: string;
  /** Product names, or ["*"] for all. At least one. */
  readonly products: readonly string[];
  readonly sub: string;
  /** Lifetime in seconds; default 3600. Keep it within the server's maximum token age. */
  readonly ttlSeconds?: number;
  readonly issuer?: string;
  readonly audience?: string;
  readonly now?: () => number;
}

/** A JWT signed with the development private key, with sub, products, iat, exp (and iss/aud when given). */
export async function token(options: TokenOptions): Promise<string> {
  if (options.products.length === 0) throw new Error("--product is required (a product name, or '*')");
  if (options.sub === "") throw new Error("--sub is required");
  const ttl = options.ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error("--ttl must be a positive number of seconds");
  const file = path.join(options.configDir, devPrivateKeyFile);
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(file, "utf8")) as JWK;
  } catch (err) {
    throw new Error(`cannot read ${file} (run keygen first)`, { cause: err });
  }
  if (typeof jwk.kid !== "string" || !(allowedJwtAlgorithms as readonly string[]).includes(jwk.alg ?? "")) {
    throw new Error(`${file} has no kid or an unsupported alg`);
  }
  const alg = jwk.alg as JwtAlgorithm;
  const key = await importJWK(jwk, alg);
  const iat = Math.floor((options.now ?? Date.now)() / 1000);
  const products = options.products.includes("*") ? "*" : [...options.products];
  let jwt = new SignJWT({ products })
    .setProtectedHeader({ alg, kid: jwk.kid, typ: "JWT" })
    .setSubject(options.sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttl);
  if (options.issuer !== undefined) jwt = jwt.setIssuer(options.issuer);
  if (options.audience !== undefined) jwt = jwt.setAudience(options.audience);
  return jwt.sign(key);
}

export interface SignOptions {
  readonly keyId: string;
  readonly secret: string;
  readonly method: string;
  /** Path as it will be sent, optionally with "?query". */
  readonly path: string;
  readonly body: Uint8Array | string;
  /** Unix seconds; default now. */
  readonly timestamp?: number;
  /** Default: 16 random bytes, base64url. "" sends none. */
  readonly nonce?: string;
}

/** The HMAC headers for one request, as curl arguments (`-H 'name: value'`), one per line. */
export function sign(options: SignOptions): string {
  const q = options.path.indexOf("?");
  const nonce = options.nonce ?? randomBytes(16).toString("base64url");
  const headers = signRequest({
    keyId: options.keyId,
    secret: options.secret,
    method: options.method,
    path: q === -1 ? options.path : options.path.slice(0, q),
    query: q === -1 ? "" : options.path.slice(q + 1),
    body: options.body,
    ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
    ...(nonce !== "" ? { nonce } : {}),
  });
  // Every value is from a restricted alphabet (checked by the server's patterns), so single quotes suffice.
  return Object.entries(headers)
    .map(([name, value]) => `-H '${name}: ${value}'`)
    .join("\n");
}
