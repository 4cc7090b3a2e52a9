/** The caller as far as limits are concerned (JWT `sub` or HMAC key id). */
export interface RateLimitCaller {
  readonly kind: "jwt" | "hmac";
  readonly id: string;
}

/** A limit: at most `limit` units per `windowMs`, replenished continuously (GCRA, see docs/ratelimit.md). */
export interface RateLimitPolicy {
  /** Units per window; a positive integer. It is also the largest burst. */
  readonly limit: number;
  /** The window in milliseconds; a positive integer (60_000 for "per minute"). */
  readonly windowMs: number;
}

/** Where a decision was made. */
export type RateLimitSource = "redis" | "memory" | "fallback";

/** The outcome of one `consume` or `charge`. A refusal is a result, never an exception. */
export interface RateLimitResult {
  readonly allowed: boolean;
  readonly limit: number;
  /** Whole units still available after this call (0 when refused or exhausted). */
  readonly remaining: number;
  /** Milliseconds until the budget is fully replenished (0 when untouched). */
  readonly resetMs: number;
  /** Milliseconds until the refused request would fit; 0 when allowed. */
  readonly retryAfterMs: number;
  readonly source: RateLimitSource;
}

/**
 * A rate limiter keyed by strings, in one process: memory-limiter.ts, under memory-spend-store.ts (the
 * Redis store runs the same GCRA in its scripts, spend-script.ts). Keys are built with `rateLimitKey`.
 */
export interface RateLimiter {
  /**
   * Admits the request if `max(cost, 1)` units fit in the budget of `key` and then charges `cost`
   * (default 1); a refused call charges nothing. `cost` 0 is therefore a check that charges nothing:
   * "is at least one unit left?" (used for the tokens-per-minute check before a request).
   * Throws only a TypeError for an invalid policy or cost (a programming error).
   */
  consume(key: string, policy: RateLimitPolicy, cost?: number): Promise<RateLimitResult>;
  /**
   * Charges `cost` units that were already spent (tokens reported by a provider), even past the limit:
   * the debt delays later requests. `allowed` says whether at least one unit is left afterwards.
   */
  charge(key: string, policy: RateLimitPolicy, cost: number): Promise<RateLimitResult>;
  /** Releases what the limiter owns (not an injected Redis client). */
  close(): Promise<void>;
}
