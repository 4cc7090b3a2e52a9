import type { BudgetLimits, ProductConfig } from "../secrets/types.js";
import { toNanoUsd } from "../usage/cost.js";

export type BudgetScope = "product" | "caller";
export type BudgetWindowName = "day" | "month";

/** One budget counter a call is checked against: a scope's spend in the current UTC day or month. */
export interface BudgetWindow {
  readonly scope: BudgetScope;
  readonly window: BudgetWindowName;
  /** The counter's key (without the Redis prefix); it names the period, so a new period starts at zero. */
  readonly key: string;
  readonly limitTokens: number | undefined;
  readonly limitNanoUsd: number | undefined;
  /** When the period ends (ms since the epoch, UTC midnight). */
  readonly resetsAtMs: number;
  /** When the counter may be dropped: an hour after its period, so instances with a skewed clock still find it. */
  readonly expiresAtMs: number;
}

const hourMs = 3_600_000;

/**
 * The windows that apply to a call of `caller` on `product` at `nowMs`: the product's and the caller's,
 * per day and per month, each only when it has a cap. Keys: `bg:<product>:product:<period>` and
 * `bg:<product>:<kind>:<id>:<period>`, parts percent-encoded like src/limits/keys.ts; `<period>` is
 * `d2026-12-07` or `m2026-12`.
 */
export function budgetWindows(
  product: Pick<ProductConfig, "name" | "budgets">,
  caller: { readonly kind: "jwt" | "hmac"; readonly id: string },
  nowMs: number,
): BudgetWindow[] {
  const budgets = product.budgets;
  if (budgets === undefined) return [];
  const now = new Date(nowMs);
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  const periods = {
    day: { id: `d${now.toISOString().slice(0, 10)}`, resetsAtMs: Date.UTC(y, m, d + 1) },
    month: { id: `m${now.toISOString().slice(0, 7)}`, resetsAtMs: Date.UTC(y, m + 1, 1) },
  };
  const base = `bg:${encodeURIComponent(product.name)}`;
  const owners = {
    product: `${base}:product`,
    caller: `${base}:${caller.kind}:${encodeURIComponent(caller.id)}`,
  };
  const windows: BudgetWindow[] = [];
  for (const scope of ["product", "caller"] as const) {
    const limits: BudgetLimits | undefined = budgets[scope];
    if (limits === undefined) continue;
    for (const window of ["day", "month"] as const) {
      const tokens = window === "day" ? limits.dailyTokens : limits.monthlyTokens;
      const usd = window === "day" ? limits.dailyUsd : limits.monthlyUsd;
      if (tokens === undefined && usd === undefined) continue;
      const period = periods[window];
      windows.push({
        scope,
        window,
        key: `${owners[scope]}:${period.id}`,
        limitTokens: tokens,
        limitNanoUsd: usd === undefined ? undefined : toNanoUsd(usd),
        resetsAtMs: period.resetsAtMs,
        expiresAtMs: period.resetsAtMs + hourMs,
      });
    }
  }
  return windows;
}
