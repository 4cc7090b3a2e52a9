import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import { AuthFailure } from "./auth-failure.js";
import type { Principal, ProductGrant } from "./principal.js";

/** The only JWS algorithms accepted: asymmetric ones. `none` and HS* are never accepted (key confusion). */
export const allowedJwtAlgorithms = ["RS256", "PS256", "ES256", "EdDSA"] as const;

/** Tokens longer than this are refused before any parsing. */
export const maxJwtLength = 8 * 1024;

/**
 * A compact JWS is three base64url segments (the last empty for `alg: none`, refused later with its own
 * reason). Checked before jose, whose base64 decoding skips characters
 * outside the alphabet: without it, `abc.def.g h` would verify as `abc.def.gh` (found by the fuzz suite).
 */
const compactPattern = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** A `kid` must look like an identifier: no path, URL or control characters. */
const kidPattern = /^[A-Za-z0-9._-]{1,128}$/;

export interface JwtVerifierOptions {
  /** Required `iss` when set; any issuer otherwise. */
  readonly issuer?: string | undefined;
  /** Required `aud` (one of) when set; any audience otherwise. */
  readonly audience?: string | undefined;
  /** Leeway for exp/nbf/iat, in seconds (e.g. 30). */
  readonly clockToleranceSeconds: number;
  /** Oldest accepted token, counted from its `iat`, in seconds. `iat` is therefore required. */
  readonly maxTokenAgeSeconds: number;
  /** Successful verifications remembered by token string (0 disables the cache). Default 1000. */
  readonly cacheEntries?: number;
  /** Clock in ms since the epoch; Date.now by default. */
  readonly now?: () => number;
}

export interface JwtVerifier {
  /**
   * Verifies a compact JWT against the given key set (the current secrets snapshot). Resolves the
   * caller, or rejects with an AuthFailure naming the failed check.
   */
  verify(token: string, keys: JSONWebKeySet | undefined): Promise<Principal & { kind: "jwt" }>;
}

type JwtPrincipal = Principal & { kind: "jwt" };

interface CacheEntry {
  readonly keys: JSONWebKeySet;
  readonly principal: JwtPrincipal;
  readonly validUntilMs: number;
}

/** Creates a JWT verifier. Throws on invalid options, naming the option. */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  const { issuer, audience, clockToleranceSeconds, maxTokenAgeSeconds } = options;
  if (!Number.isFinite(clockToleranceSeconds) || clockToleranceSeconds < 0 || clockToleranceSeconds > 300) {
    throw new Error("jwt.clockToleranceSeconds must be between 0 and 300");
  }
  if (!Number.isInteger(maxTokenAgeSeconds) || maxTokenAgeSeconds <= 0) {
    throw new Error("jwt.maxTokenAgeSeconds must be a positive integer");
  }
  if (issuer === "") throw new Error("jwt.issuer must not be empty when set");
  if (audience === "") throw new Error("jwt.audience must not be empty when set");
  const cacheEntries = options.cacheEntries ?? 1000;
  if (!Number.isInteger(cacheEntries) || cacheEntries < 0) {
    throw new Error("jwt.cacheEntries must be a non-negative integer");
  }
  const now = options.now ?? Date.now;

  // One jose key set per secrets snapshot: building it parses every key, so never per request. Keyed by
  // the snapshot's object identity, so a refresh (a new object) gets a new set and the old one is dropped.
  const keySets = new WeakMap<JSONWebKeySet, JWTVerifyGetKey>();
  const keySetOf = (keys: JSONWebKeySet): JWTVerifyGetKey => {
    let set = keySets.get(keys);
    if (set === undefined) {
      set = createLocalJWKSet(keys);
      keySets.set(keys, set);
    }
    return set;
  };

  // Signature checks dominate the hot path; a token that verified moments ago against the same key set
  // is still good until its exp or max age. A Map in insertion order is the LRU.
  const cache = new Map<string, CacheEntry>();
  const fromCache = (token: string, keys: JSONWebKeySet): JwtPrincipal | undefined => {
    const entry = cache.get(token);
    if (entry === undefined) return undefined;
    if (entry.keys !== keys || now() >= entry.validUntilMs) {
      cache.delete(token);
      return undefined;
    }
    cache.delete(token);
    cache.set(token, entry);
    return entry.principal;
  };
  const remember = (token: string, entry: CacheEntry): void => {
    if (cacheEntries === 0) return;
    cache.set(token, entry);
    if (cache.size > cacheEntries) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
  };

  return {
    async verify(token, keys) {
      if (keys === undefined) throw new AuthFailure("jwt_disabled");
      if (token.length > maxJwtLength) throw new AuthFailure("token_too_large");
      if (!compactPattern.test(token)) throw new AuthFailure("malformed_token");
      const cached = fromCache(token, keys);
      if (cached !== undefined) return cached;

      const header = readHeader(token);
      const kid = header.kid;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keySetOf(keys), {
          algorithms: [...allowedJwtAlgorithms],
          requiredClaims: ["exp", "iat", "sub"],
          clockTolerance: clockToleranceSeconds,
          maxTokenAge: maxTokenAgeSeconds,
          currentDate: new Date(now()),
          ...(issuer !== undefined ? { issuer } : {}),
          ...(audience !== undefined ? { audience } : {}),
        }));
      } catch (err) {
        throw toAuthFailure(err, kid);
      }

      const principal: JwtPrincipal = {
        kind: "jwt",
        id: readSubject(payload, kid),
        keyId: kid,
        products: readProducts(payload, kid),
      };
      // Both claims were required and validated as numbers by jose.
      const exp = payload.exp ?? 0;
      const iat = payload.iat ?? 0;
      remember(token, { keys, principal, validUntilMs: Math.min(exp, iat + maxTokenAgeSeconds) * 1000 });
      return principal;
    },
  };
}

/** Checks the protected header before any key lookup: algorithm allow-list, no crit, a sane kid. */
function readHeader(token: string): { kid: string } {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new AuthFailure("malformed_token");
  }
  if (token.split(".").length !== 3) throw new AuthFailure("malformed_token");
  const alg = header.alg;
  if (typeof alg !== "string" || !(allowedJwtAlgorithms as readonly string[]).includes(alg)) {
    throw new AuthFailure("alg_not_allowed", { alg: typeof alg === "string" ? alg.slice(0, 16) : "?" });
  }
  // No extension is understood here, so any critical one must be refused (RFC 7515 §4.1.11).
  if (header.crit !== undefined) throw new AuthFailure("crit_header");
  const kid = header.kid;
  if (typeof kid !== "string" || !kidPattern.test(kid)) throw new AuthFailure("bad_kid");
  return { kid };
}

function readSubject(payload: JWTPayload, kid: string): string {
  const sub = payload.sub;
  if (typeof sub !== "string" || sub.length === 0 || sub.length > 256) {
    throw new AuthFailure("invalid_claim", { claim: "sub", kid });
  }
  return sub;
}

function readProducts(payload: JWTPayload, kid: string): ProductGrant {
  const products = payload["products"];
  if (products === "*") return "*";
  if (Array.isArray(products) && products.every((p): p is string => typeof p === "string" && p.length > 0)) {
    return Object.freeze([...products]);
  }
  throw new AuthFailure("bad_products_claim", { kid });
}

/** Maps jose's errors to stable reasons. Anything unexpected is a malformed token, never a 500. */
function toAuthFailure(err: unknown, kid: string): AuthFailure {
  if (err instanceof AuthFailure) return err;
  const detail = { kid };
  // jose reports "older than maxTokenAge" as JWTExpired on the iat claim.
  if (err instanceof errors.JWTExpired) {
    return new AuthFailure(err.claim === "iat" ? "token_too_old" : "expired", detail);
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    const claim = err.claim;
    if (err.reason === "missing") return new AuthFailure("missing_claim", { kid, claim });
    switch (claim) {
      case "nbf":
        return new AuthFailure("not_yet_valid", detail);
      case "iat":
        return new AuthFailure("iat_in_future", detail);
      case "iss":
        return new AuthFailure("wrong_issuer", detail);
      case "aud":
        return new AuthFailure("wrong_audience", detail);
      default:
        return new AuthFailure("invalid_claim", { kid, claim });
    }
  }
  if (err instanceof errors.JWKSNoMatchingKey) return new AuthFailure("unknown_kid", detail);
  if (err instanceof errors.JWKSMultipleMatchingKeys) return new AuthFailure("ambiguous_kid", detail);
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthFailure("bad_signature", detail);
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthFailure("alg_not_allowed", detail);
  return new AuthFailure("malformed_token", detail);
}
