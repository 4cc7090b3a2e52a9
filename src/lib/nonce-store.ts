/**
 * Remembers HMAC nonces for replay protection. In memory by default; shared through Redis when REDIS_URL
 * is set, so a nonce used on one instance is refused on every other.
 */
export interface NonceStore {
  /**
   * Records `nonce` for `keyId` for `ttlMs`. Resolves true if it was new, false if it was already seen
   * within its lifetime (a replay).
   */
  remember(keyId: string, nonce: string, ttlMs: number): Promise<boolean>;
}
