import type { NonceStore } from "../lib/nonce-store.js";

export interface MemoryNonceStoreOptions {
  /** Most nonces kept at once; the oldest are forgotten first beyond it. Default 100 000. */
  readonly maxEntries?: number;
  /** Clock in ms since the epoch; Date.now by default. */
  readonly now?: () => number;
}

/**
 * A per-process NonceStore (the default without REDIS_URL). Bounded: past `maxEntries` live nonces the
 * oldest is forgotten, so under a flood a very old nonce could be replayed within its window. Size the
 * bound above (requests per second × 2 × window) of signed calls that carry a nonce.
 */
export function createMemoryNonceStore(options: MemoryNonceStoreOptions = {}): NonceStore {
  const maxEntries = options.maxEntries ?? 100_000;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new Error("nonceStore.maxEntries must be a positive integer");
  }
  const now = options.now ?? Date.now;
  // Insertion order ≈ expiry order (one TTL for all callers), so expired entries sit at the front.
  const seen = new Map<string, number>();

  const evict = (at: number): void => {
    for (const [key, expiresAt] of seen) {
      if (expiresAt > at && seen.size <= maxEntries) break;
      seen.delete(key);
    }
  };

  return {
    remember(keyId, nonce, ttlMs) {
      const at = now();
      // The newline cannot occur in a key id, so distinct (keyId, nonce) pairs never collide.
      const key = `${keyId}\n${nonce}`;
      const expiresAt = seen.get(key);
      if (expiresAt !== undefined && expiresAt > at) return Promise.resolve(false);
      seen.delete(key);
      seen.set(key, at + ttlMs);
      if (seen.size > maxEntries) evict(at);
      return Promise.resolve(true);
    },
  };
}
