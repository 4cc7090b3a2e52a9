import { AppError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type { ProductConfig } from "../secrets/types.js";
import { worstCaseNanoUsd } from "../usage/cost.js";
import {
  budgetWindows,
  type BudgetScope,
  type BudgetWindow,
  type BudgetWindowName,
} from "./budget-windows.js";
import { toRateLimitError } from "./headers.js";
import { rateLimitKey, type RateLimitDimension } from "./keys.js";
import type { AdmitPlan, RateCheck, SpendStore, WindowSpend } from "./spend-store.js";
import type { RateLimitCaller, RateLimitResult, RateLimitSource } from "./types.js";

type GatedProduct = Pick<ProductConfig, "name" | "rateLimit" | "budgets" | "prices">;

export interface CallGateOptions {
  readonly store: SpendStore;
  /** Rate limits for products whose secret sets none (API_KEY_SERVER_RATE_LIMIT_*); undefined: no limit. */
  readonly defaults: {
    readonly requestsPerMinute: number | undefined;
    readonly tokensPerMinute: number | undefined;
  };
  readonly logger: Logger;
  /** Sees every rate-limit decision (metrics). Must not throw. */
  readonly onDecision?: ((dimension: RateLimitDimension, result: RateLimitResult) => void) | undefined;
  /** A call refused for a budget: the product and the refusing window (metrics). Must not throw. */
  readonly onBudgetRefused?:
    ((product: string, scope: BudgetScope, window: BudgetWindowName) => void) | undefined;
  /** Wall clock in ms (which UTC day and month a call falls in). Default `Date.now`. */
  readonly now?: () => number;
}

/** One call to admit: who, what, and how to know its worst case. */
export interface GateRequest {
  readonly product: GatedProduct;
  readonly caller: RateLimitCaller;
  readonly model: string;
  /** The prompt's estimated tokens; called only when a budget applies. */
  readonly promptTokens: () => number;
  /** The most output tokens the call may produce (the cap asked for, or the product's/server's cap). */
  readonly maxOutputTokens: number;
}

/** An admitted call's reservation; `settle` replaces it with the real spend. */
export interface GateTicket {
  /** Never throws; a failure is logged with `requestId`. Call exactly once. */
  settle(tokens: number, nanoUsd: number, requestId: string | undefined): Promise<void>;
}

/** One budget window as GetUsage reports it. */
export interface BudgetUsage {
  readonly scope: BudgetScope;
  readonly window: BudgetWindowName;
  readonly usedTokens: number;
  readonly usedNanoUsd: number;
  readonly limitTokens: number | undefined;
  readonly limitNanoUsd: number | undefined;
  readonly resetsAtMs: number;
}

/**
 * The one admission of every call that spends provider tokens (src/chat/chat-core.ts calls it): rate
 * limits and budgets, decided in one store step; the worst case is reserved before the call goes
 * upstream, and settled to the real usage when it ends (docs/budgets.md).
 */
export interface CallGate {
  /**
   * Throws AppError `rate_limited` (429 `Rate limit exceeded`) or `budget_exceeded` (429 `Budget
   * exceeded`, Retry-After = seconds until the refusing window resets).
   */
  admit(request: GateRequest): Promise<GateTicket>;
  /** The budget windows that apply to `caller` on `product`, with their spend so far. */
  usage(product: GatedProduct, caller: RateLimitCaller): Promise<BudgetUsage[]>;
}

const minute = 60_000;

export function createCallGate(options: CallGateOptions): CallGate {
  const { store, defaults, logger, onDecision, onBudgetRefused } = options;
  const now = options.now ?? Date.now;
  for (const [name, value] of Object.entries(defaults)) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new TypeError(
        `createCallGate: defaults.${name} must be a positive integer, got ${String(value)}`,
      );
    }
  }
  const check = (
    product: GatedProduct,
    caller: RateLimitCaller,
    dimension: RateLimitDimension,
  ): RateCheck | undefined => {
    const perMinute =
      dimension === "tokens"
        ? (product.rateLimit?.tokensPerMinute ?? defaults.tokensPerMinute)
        : (product.rateLimit?.requestsPerMinute ?? defaults.requestsPerMinute);
    return perMinute === undefined
      ? undefined
      : {
          key: rateLimitKey(product.name, caller, dimension),
          policy: { limit: perMinute, windowMs: minute },
        };
  };

  function allowed(rate: RateCheck | undefined, dimension: RateLimitDimension, source: RateLimitSource) {
    if (rate === undefined || onDecision === undefined) return;
    onDecision(dimension, {
      allowed: true,
      limit: rate.policy.limit,
      remaining: rate.policy.limit,
      resetMs: 0,
      retryAfterMs: 0,
      source,
    });
  }

  return {
    async admit(request) {
      const { product, caller } = request;
      const tokensRate = check(product, caller, "tokens");
      const requestsRate = check(product, caller, "requests");
      const windows = budgetWindows(product, caller, now());
      if (tokensRate === undefined && requestsRate === undefined && windows.length === 0) {
        return { settle: () => Promise.resolve() };
      }
      let reserveTokens = 0;
      let reserveNanoUsd = 0;
      if (windows.length > 0) {
        let prompt = 0;
        try {
          prompt = request.promptTokens();
        } catch {
          // Best effort: a prompt the estimate cannot read reserves only the output cap.
        }
        reserveTokens = prompt + request.maxOutputTokens;
        const price = product.prices?.get(request.model);
        reserveNanoUsd = price === undefined ? 0 : worstCaseNanoUsd(price, prompt, request.maxOutputTokens);
      }
      const plan: AdmitPlan = { tokensRate, requestsRate, windows, reserveTokens, reserveNanoUsd };
      const outcome = await store.admit(plan);
      switch (outcome.kind) {
        case "rate_limited": {
          onDecision?.(outcome.dimension, outcome.result);
          if (outcome.dimension === "requests") allowed(tokensRate, "tokens", outcome.result.source);
          const policy = (outcome.dimension === "tokens" ? tokensRate : requestsRate)?.policy ?? {
            limit: outcome.result.limit,
            windowMs: minute,
          };
          throw toRateLimitError(
            outcome.result,
            policy,
            outcome.dimension === "tokens" ? "tokens_per_minute" : "requests_per_minute",
          );
        }
        case "over_budget": {
          allowed(tokensRate, "tokens", outcome.source);
          throw budgetError(product.name, windows, outcome.windows, now(), onBudgetRefused);
        }
        case "admitted": {
          allowed(tokensRate, "tokens", outcome.source);
          allowed(requestsRate, "requests", outcome.source);
          const source = outcome.source;
          let settled = false;
          return {
            async settle(tokens, nanoUsd, requestId) {
              if (settled) return;
              settled = true;
              try {
                await store.settle(
                  {
                    tokensRate,
                    tokens,
                    nanoUsd,
                    windows,
                    deltaTokens: tokens - reserveTokens,
                    deltaNanoUsd: nanoUsd - reserveNanoUsd,
                  },
                  source,
                );
              } catch (err) {
                logger.error(
                  { requestId, cause: err instanceof Error ? err.message : String(err) },
                  "Failed to settle a call's usage",
                );
              }
            },
          };
        }
        default: {
          const _never: never = outcome;
          throw new Error(`unknown admission outcome ${String(_never)}`);
        }
      }
    },

    async usage(product, caller) {
      const windows = budgetWindows(product, caller, now());
      const spent: WindowSpend[] = await store.read(windows);
      return windows.map((w, i) => ({
        scope: w.scope,
        window: w.window,
        usedTokens: Math.max(0, spent[i]?.tokens ?? 0),
        usedNanoUsd: Math.max(0, spent[i]?.nanoUsd ?? 0),
        limitTokens: w.limitTokens,
        limitNanoUsd: w.limitNanoUsd,
        resetsAtMs: w.resetsAtMs,
      }));
    },
  };
}

/**
 * 429 `Budget exceeded`: the refusing window that resets last decides Retry-After (the call cannot fit
 * before it resets); its scope and window travel in the ErrorInfo metadata and the access line.
 */
function budgetError(
  product: string,
  windows: readonly BudgetWindow[],
  refused: readonly number[],
  nowMs: number,
  onRefused: CallGateOptions["onBudgetRefused"],
): AppError {
  let last: BudgetWindow | undefined;
  for (const i of refused) {
    const w = windows[i];
    if (w === undefined) continue;
    onRefused?.(product, w.scope, w.window);
    if (last === undefined || w.resetsAtMs > last.resetsAtMs) last = w;
  }
  const retryAfterMs = Math.max(1000, (last?.resetsAtMs ?? nowMs) - nowMs);
  return new AppError("budget_exceeded", {
    retryAfterMs,
    // `x-should-retry: false`: OpenAI's SDKs would otherwise retry a 429 at once, and it cannot succeed
    // before the window resets.
    headers: { "Retry-After": String(Math.ceil(retryAfterMs / 1000)), "x-should-retry": "false" },
    metadata: { scope: last?.scope ?? "product", window: last?.window ?? "day" },
    logFields: { budgetScope: last?.scope ?? "product", budgetWindow: last?.window ?? "day" },
  });
}
