import type { BudgetWindow } from "./budget-windows.js";
import { createMemoryLimiter } from "./memory-limiter.js";
import { overBudget, type AdmitPlan, type SpendStore, type WindowSpend } from "./spend-store.js";
import type { RateLimiter } from "./types.js";

export interface MemorySpendStoreOptions {
  /** Clock in ms since the epoch (expiry of budget counters); `Date.now` by default. */
  readonly now?: () => number;
  /** Reported in rate-limit results: "memory", or "fallback" behind the Redis store. */
  readonly source?: "memory" | "fallback";
}

/** A spend store for one process, also the Redis store's fallback. Budget counters are a Map by key. */
export function createMemorySpendStore(options: MemorySpendStoreOptions = {}): SpendStore {
  const now = options.now ?? Date.now;
  const source = options.source ?? "memory";
  const limiter: RateLimiter = createMemoryLimiter({ now, source });
  const counters = new Map<string, { tokens: number; nanoUsd: number; expiresAtMs: number }>();

  function spent(w: BudgetWindow): WindowSpend {
    const c = counters.get(w.key);
    if (c === undefined) return { tokens: 0, nanoUsd: 0 };
    if (c.expiresAtMs <= now()) {
      counters.delete(w.key);
      return { tokens: 0, nanoUsd: 0 };
    }
    return c;
  }

  /** Drops the counters of past windows now and then, so callers of earlier days do not pile up. */
  function sweep(): void {
    const at = now();
    for (const [key, c] of counters) if (c.expiresAtMs <= at) counters.delete(key);
  }

  function add(windows: readonly BudgetWindow[], tokens: number, nanoUsd: number): void {
    for (const w of windows) {
      if (!counters.has(w.key) && counters.size > 0 && counters.size % 4096 === 0) sweep();
      const c = spent(w);
      counters.set(w.key, {
        tokens: c.tokens + tokens,
        nanoUsd: c.nanoUsd + nanoUsd,
        expiresAtMs: w.expiresAtMs,
      });
    }
  }

  const check = (plan: AdmitPlan) => overBudget(plan, plan.windows.map(spent));

  return {
    async admit(plan) {
      if (plan.tokensRate !== undefined) {
        const result = await limiter.consume(plan.tokensRate.key, plan.tokensRate.policy, 0);
        if (!result.allowed) return { kind: "rate_limited", dimension: "tokens", result };
      }
      // Budgets before the request count, so a call refused for its budget does not use up a request.
      const before = check(plan);
      if (before.length > 0) return { kind: "over_budget", windows: before, source };
      if (plan.requestsRate !== undefined) {
        const result = await limiter.consume(plan.requestsRate.key, plan.requestsRate.policy, 1);
        if (!result.allowed) return { kind: "rate_limited", dimension: "requests", result };
      }
      // Checked again with the reservation in the same synchronous step: another call may have reserved
      // while the request count was awaited.
      const over = check(plan);
      if (over.length > 0) return { kind: "over_budget", windows: over, source };
      add(plan.windows, plan.reserveTokens, plan.reserveNanoUsd);
      return { kind: "admitted", source };
    },
    async settle(plan) {
      add(plan.windows, plan.deltaTokens, plan.deltaNanoUsd);
      if (plan.tokensRate !== undefined && plan.tokens > 0) {
        await limiter.charge(plan.tokensRate.key, plan.tokensRate.policy, plan.tokens);
      }
    },
    read(windows) {
      return Promise.resolve(windows.map(spent));
    },
  };
}
