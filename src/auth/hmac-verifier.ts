import { timingSafeEqual } from "node:crypto";
import type { NonceStore } from "../lib/nonce-store.js";
import type { HmacKey } from "../secrets/types.js";
import { AuthFailure } from "./auth-failure.js";
import { computeSignature, hmacHeaders, type SignedParts } from "./hmac-signing.js";
import type { Principal } from "./principal.js";

const keyIdPattern = /^[A-Za-z0-9._-]{1,128}$/;
const timestampPattern = /^[0-9]{1,12}$/;
const signaturePattern = /^[0-9a-f]{64}$/i;
const noncePattern = /^[A-Za-z0-9._~-]{8,128}$/;

export interface HmacVerifierOptions {
  /** Accepted distance between the request's timestamp and the server clock, in seconds. Default 300. */
  readonly windowSeconds?: number;
  /** Where nonces are remembered for replay protection. */
  readonly nonceStore: NonceStore;
  /**
   * Refuse requests without `X-Api-Nonce` (default true). Without a nonce a captured request can be replayed
   * for the whole timestamp window; false accepts them anyway, which is weaker (docs/auth.md).
   */
  readonly requireNonce?: boolean;
  /** Clock in ms since the epoch; Date.now by default. */
  readonly now?: () => number;
}

/** What the verifier knows of the request apart from the HMAC headers. */
export type RequestParts = Pick<SignedParts, "method" | "path" | "query" | "bodySha256">;

export interface HmacVerifier {
  /**
   * Verifies the HMAC headers of a request against the given keys (the current secrets snapshot).
   * Resolves the caller, or rejects with an AuthFailure naming the failed check.
   */
  verify(
    headers: Pick<Headers, "get">,
    request: RequestParts,
    keys: ReadonlyMap<string, HmacKey> | undefined,
  ): Promise<Principal & { kind: "hmac" }>;
  /**
   * The checks that need no body (header formats, the nonce's presence, the timestamp window, a known key
   * id), so a request that fails them is refused before its body is read. Throws the AuthFailure
   * `verify` would throw.
   */
  precheck(headers: Pick<Headers, "get">, keys: ReadonlyMap<string, HmacKey> | undefined): void;
}

/** Creates an HMAC verifier. Throws on invalid options, naming the option. */
export function createHmacVerifier(options: HmacVerifierOptions): HmacVerifier {
  const windowSeconds = options.windowSeconds ?? 300;
  if (!Number.isInteger(windowSeconds) || windowSeconds < 1 || windowSeconds > 3600) {
    throw new Error("hmac.windowSeconds must be an integer between 1 and 3600");
  }
  const { nonceStore } = options;
  const requireNonce = options.requireNonce ?? true;
  const now = options.now ?? Date.now;

  /** The checks that need no body; returns what the signature check needs. */
  const checkHeaders = (headers: Pick<Headers, "get">, keys: ReadonlyMap<string, HmacKey> | undefined) => {
    if (keys === undefined) throw new AuthFailure("hmac_disabled");
    const keyId = headers.get(hmacHeaders.keyId) ?? "";
    const timestamp = headers.get(hmacHeaders.timestamp) ?? "";
    const signature = headers.get(hmacHeaders.signature) ?? "";
    const nonce = headers.get(hmacHeaders.nonce);
    if (!keyIdPattern.test(keyId))
      throw new AuthFailure("malformed_hmac_headers", { header: hmacHeaders.keyId });
    if (!timestampPattern.test(timestamp)) {
      throw new AuthFailure("malformed_hmac_headers", { header: hmacHeaders.timestamp, keyId });
    }
    if (!signaturePattern.test(signature)) {
      throw new AuthFailure("malformed_hmac_headers", { header: hmacHeaders.signature, keyId });
    }
    if (nonce === null && requireNonce) {
      throw new AuthFailure("missing_nonce", { header: hmacHeaders.nonce, keyId });
    }
    if (nonce !== null && !noncePattern.test(nonce)) {
      throw new AuthFailure("malformed_hmac_headers", { header: hmacHeaders.nonce, keyId });
    }

    const skew = Number(timestamp) - Math.floor(now() / 1000);
    if (skew < -windowSeconds)
      throw new AuthFailure("timestamp_too_old", { keyId, skewSeconds: String(skew) });
    if (skew > windowSeconds)
      throw new AuthFailure("timestamp_in_future", { keyId, skewSeconds: String(skew) });

    const key = keys.get(keyId);
    if (key === undefined) throw new AuthFailure("unknown_key_id", { keyId });
    return { keyId, timestamp, signature, nonce, key };
  };

  return {
    precheck(headers, keys) {
      checkHeaders(headers, keys);
    },
    async verify(headers, request, keys) {
      const { keyId, timestamp, signature, nonce, key } = checkHeaders(headers, keys);

      let expected: string;
      try {
        expected = computeSignature(key.secret, { ...request, timestamp, keyId, nonce: nonce ?? "" });
      } catch {
        throw new AuthFailure("bad_query", { keyId });
      }
      // Both are 32 bytes here (the pattern fixed the length), so the compare is constant-time.
      if (!timingSafeEqual(Buffer.from(expected, "hex"), Buffer.from(signature, "hex"))) {
        throw new AuthFailure("bad_signature", { keyId });
      }

      // Only after the signature holds, so nobody can burn another caller's nonces. A nonce must be
      // remembered as long as its timestamp could still be accepted: up to two windows.
      if (nonce !== null && !(await nonceStore.remember(keyId, nonce, 2 * windowSeconds * 1000))) {
        throw new AuthFailure("replayed_nonce", { keyId });
      }
      return { kind: "hmac", id: keyId, products: key.products };
    },
  };
}
