import type { BudgetWindow } from "./budget-windows.js";
import type { RateLimitDimension } from "./keys.js";
import type { RateLimitPolicy, RateLimitResult, RateLimitSource } from "./types.js";

/** A rate limit a call is checked against: its key (src/limits/keys.ts) and policy. */
export interface RateCheck {
  readonly key: string;
  readonly policy: RateLimitPolicy;
}

/** Everything decided before a call goes upstream, in one atomic step (one Redis round trip). */
export interface AdmitPlan {
  /** Tokens per minute: is at least one token left? (Checked first; charges nothing.) */
  readonly tokensRate: RateCheck | undefined;
  /** Requests per minute: counts this request. */
  readonly requestsRate: RateCheck | undefined;
  /** Budget counters the call's worst case must fit in; reserved in each when admitted. */
  readonly windows: readonly BudgetWindow[];
  /** The worst case reserved: prompt estimate plus the output cap, and that priced (nano-USD). */
  readonly reserveTokens: number;
  readonly reserveNanoUsd: number;
}

export type AdmitOutcome =
  | { readonly kind: "admitted"; readonly source: RateLimitSource }
  | {
      readonly kind: "rate_limited";
      readonly dimension: RateLimitDimension;
      readonly result: RateLimitResult;
    }
  | {
      readonly kind: "over_budget";
      /** Indexes into `plan.windows` of every window the worst case does not fit in. */
      readonly windows: readonly number[];
      readonly source: RateLimitSource;
    };

/** What happens when a call ends, in one atomic step: its real usage replaces its reservation. */
export interface SettlePlan {
  /** Tokens per minute, charged with the call's real tokens. */
  readonly tokensRate: RateCheck | undefined;
  readonly tokens: number;
  /** The call's real cost (nano-USD). */
  readonly nanoUsd: number;
  readonly windows: readonly BudgetWindow[];
  /** Real minus reserved (usually negative: the reservation was the worst case). */
  readonly deltaTokens: number;
  readonly deltaNanoUsd: number;
}

/** Spend counted in a budget window. */
export interface WindowSpend {
  readonly tokens: number;
  readonly nanoUsd: number;
}

/**
 * Where rate limits and budgets are kept: memory (one process) or Redis (shared by every instance, with
 * a memory fallback). A refusal is an outcome, never an exception.
 */
export interface SpendStore {
  admit(plan: AdmitPlan): Promise<AdmitOutcome>;
  /** `source`: where the call was admitted (a call admitted by the fallback is settled there). Never throws. */
  settle(plan: SettlePlan, source: RateLimitSource): Promise<void>;
  /** Spend of each window so far, reservations of calls in flight included. */
  read(windows: readonly BudgetWindow[]): Promise<WindowSpend[]>;
}

/** Which windows the worst case does not fit in, given each window's spend. */
export function overBudget(plan: AdmitPlan, spent: readonly WindowSpend[]): number[] {
  const over: number[] = [];
  plan.windows.forEach((w, i) => {
    const s = spent[i] ?? { tokens: 0, nanoUsd: 0 };
    if (
      (w.limitTokens !== undefined && s.tokens + plan.reserveTokens > w.limitTokens) ||
      (w.limitNanoUsd !== undefined && s.nanoUsd + plan.reserveNanoUsd > w.limitNanoUsd)
    ) {
      over.push(i);
    }
  });
  return over;
}
