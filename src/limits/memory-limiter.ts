import { assertValid, gcra, type GcraMode } from "./gcra.js";
import type { RateLimitPolicy, RateLimiter, RateLimitResult, RateLimitSource } from "./types.js";

export interface MemoryLimiterOptions {
  /** Clock in ms since the epoch; `Date.now` by default. Tests inject a fake. */
  readonly now?: () => number;
  /**
   * Most keys kept at once (default 100_000). Beyond it, expired keys are swept and then the least
   * recently used dropped, so a flood of distinct callers cannot grow memory without bound.
   */
  readonly maxKeys?: number;
  /** Reported in results; "memory" by default ("fallback" when the memory spend store stands in for Redis). */
  readonly source?: Extract<RateLimitSource, "memory" | "fallback">;
}

/** A GCRA limiter for one process. Exact at the edges; state is one number per active key. */
export function createMemoryLimiter(options: MemoryLimiterOptions = {}): RateLimiter {
  const now = options.now ?? Date.now;
  const maxKeys = options.maxKeys ?? 100_000;
  const source = options.source ?? "memory";
  if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
    throw new TypeError(`createMemoryLimiter: maxKeys must be a positive integer, got ${String(maxKeys)}`);
  }
  // Insertion order doubles as recency order: every write deletes and re-inserts its key.
  const tats = new Map<string, number>();

  function evict(nowUs: number): void {
    if (tats.size <= maxKeys) return;
    for (const [key, tat] of tats) if (tat <= nowUs) tats.delete(key);
    for (const key of tats.keys()) {
      if (tats.size <= maxKeys) break;
      tats.delete(key);
    }
  }

  function run(key: string, policy: RateLimitPolicy, cost: number, mode: GcraMode): RateLimitResult {
    assertValid(policy, cost);
    const nowUs = Math.round(now() * 1000);
    const stored = tats.get(key);
    const out = gcra(stored, nowUs, policy, cost, mode);
    if (out.newTatUs !== undefined) {
      tats.delete(key);
      tats.set(key, out.newTatUs);
      evict(nowUs);
    } else if (stored !== undefined && stored <= nowUs) {
      tats.delete(key);
    }
    return {
      allowed: out.allowed,
      limit: policy.limit,
      remaining: out.remaining,
      resetMs: out.resetMs,
      retryAfterMs: out.retryAfterMs,
      source,
    };
  }

  return {
    consume: (key, policy, cost = 1) => settle(() => run(key, policy, cost, "consume")),
    charge: (key, policy, cost) => settle(() => run(key, policy, cost, "charge")),
    close: () => {
      tats.clear();
      return Promise.resolve();
    },
  };
}

/** Runs synchronous work behind a promise, so a TypeError becomes a rejection like any other. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}
