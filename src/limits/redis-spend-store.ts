import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../lib/circuit-breaker.js";
import type { Logger } from "../log/index.js";
import type { BudgetWindow } from "./budget-windows.js";
import { createFailureReporter } from "./failure-reporter.js";
import { admitLua, admitLuaSha, settleLua, settleLuaSha } from "./spend-script.js";
import type { AdmitOutcome, AdmitPlan, SettlePlan, SpendStore, WindowSpend } from "./spend-store.js";

export interface RedisSpendStoreOptions {
  /** A fail-fast client (see `createRedisClient`); the store does not close it. */
  readonly client: Redis;
  /** Decides a call whenever Redis fails: a memory store created with `source: "fallback"`. */
  readonly fallback: SpendStore;
  readonly logger: Logger;
  /** Prefix of every key (API_KEY_SERVER_REDIS_KEY_PREFIX). */
  readonly keyPrefix?: string;
  /** Shared with the nonce store: while it is open, calls go to the fallback at once. */
  readonly breaker?: CircuitBreaker | undefined;
  /** At most one ERROR line per this many ms while Redis fails (default 60_000). */
  readonly logIntervalMs?: number;
  /** Once per call the fallback decided (a metrics counter). */
  readonly onFallback?: (() => void) | undefined;
  /** Once per call with budgets the fallback admitted (a metrics counter: calls whose spend was checked locally). */
  readonly onBudgetFallback?: (() => void) | undefined;
  /** Clock for the log interval only. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * Rate limits and budgets shared by every instance through Redis: admission is one script (rate checks
 * and the reservation), settlement a second; nothing else per call. A Redis error never reaches the caller:
 * the call is decided by the local fallback (each instance then holds a budget of its own, so an outage
 * can overspend by at most one full budget per instance and window, docs/budgets.md), and the spend the
 * fallback settled is added to Redis once Redis answers again, so no settled spend is lost. A call
 * admitted by Redis whose settlement fails keeps its reservation (the worst case stays counted).
 */
export function createRedisSpendStore(options: RedisSpendStoreOptions): SpendStore {
  const { client, fallback, logger, breaker } = options;
  const prefix = options.keyPrefix ?? "";
  const reporter = createFailureReporter({
    logger,
    what: "Rate limiter",
    intervalMs: options.logIntervalMs ?? 60_000,
    now: options.now ?? Date.now,
    onFallback: options.onFallback,
  });
  /** Spend settled by the fallback during an outage, to add to Redis when it is back (by window key). */
  const pending = new Map<string, { window: BudgetWindow; tokens: number; nanoUsd: number }>();
  let flushing = false;

  async function evalScript(sha: string, lua: string, keys: string[], args: string[]): Promise<unknown> {
    const command = async () => {
      if (client.status !== "ready") throw new Error(`Redis connection is ${client.status}`);
      try {
        return await client.evalsha(sha, keys.length, ...keys, ...args);
      } catch (err) {
        // First use on this server (or after a restart/SCRIPT FLUSH): send the script itself once.
        if (err instanceof Error && err.message.startsWith("NOSCRIPT"))
          return client.eval(lua, keys.length, ...keys, ...args);
        throw err;
      }
    };
    return breaker === undefined ? command() : breaker.run(command);
  }

  function succeeded(): void {
    reporter.succeeded();
    if (pending.size > 0 && !flushing) void flush();
  }

  /** Adds the fallback's settled spend to Redis (one pipeline); kept for the next try if it fails. */
  async function flush(): Promise<void> {
    flushing = true;
    const entries = [...pending.values()];
    pending.clear();
    try {
      const pipeline = client.multi();
      for (const e of entries) {
        const key = prefix + e.window.key;
        pipeline.hincrby(key, "t", Math.round(e.tokens));
        pipeline.hincrby(key, "u", Math.round(e.nanoUsd));
        pipeline.pexpireat(key, e.window.expiresAtMs);
      }
      const replies = await pipeline.exec();
      const failed = replies?.find(([err]) => err !== null);
      if (replies === null || failed !== undefined) throw failed?.[0] ?? new Error("transaction discarded");
      logger.warn(
        { windows: entries.length },
        "Budgets: spend counted locally during the outage added to Redis",
      );
    } catch (err) {
      for (const e of entries) addPending([e.window], e.tokens, e.nanoUsd);
      logger.error(
        { cause: err instanceof Error ? err.message : String(err) },
        "Budgets: could not add the spend counted locally to Redis; will retry",
      );
    } finally {
      flushing = false;
    }
  }

  function addPending(windows: readonly BudgetWindow[], tokens: number, nanoUsd: number): void {
    for (const window of windows) {
      const p = pending.get(window.key);
      pending.set(window.key, {
        window,
        tokens: (p?.tokens ?? 0) + tokens,
        nanoUsd: (p?.nanoUsd ?? 0) + nanoUsd,
      });
    }
  }

  return {
    async admit(plan) {
      const keys = [
        prefix + (plan.tokensRate?.key ?? "rl:-"),
        prefix + (plan.requestsRate?.key ?? "rl:-"),
        ...plan.windows.map((w) => prefix + w.key),
      ];
      const args = [
        String(plan.tokensRate?.policy.limit ?? 0),
        String(plan.tokensRate?.policy.windowMs ?? 0),
        String(plan.requestsRate?.policy.limit ?? 0),
        String(plan.requestsRate?.policy.windowMs ?? 0),
        String(Math.ceil(plan.reserveTokens)),
        String(Math.ceil(plan.reserveNanoUsd)),
        ...plan.windows.flatMap((w) => [
          String(w.limitTokens ?? -1),
          String(w.limitNanoUsd ?? -1),
          String(w.expiresAtMs),
        ]),
      ];
      let outcome: AdmitOutcome;
      try {
        outcome = parseAdmit(await evalScript(admitLuaSha, admitLua, keys, args), plan);
      } catch (err) {
        reporter.failed(err);
        if (plan.windows.length > 0) options.onBudgetFallback?.();
        return fallback.admit(plan);
      }
      succeeded();
      return outcome;
    },

    async settle(plan: SettlePlan, source) {
      if (source === "fallback") {
        await fallback.settle(plan, source);
        // The reservation was local and never reached Redis: what reaches Redis is the real spend.
        addPending(plan.windows, plan.tokens, plan.nanoUsd);
        return;
      }
      const keys = [prefix + (plan.tokensRate?.key ?? "rl:-"), ...plan.windows.map((w) => prefix + w.key)];
      const args = [
        String(plan.tokensRate?.policy.limit ?? 0),
        String(plan.tokensRate?.policy.windowMs ?? 0),
        String(Math.max(0, Math.round(plan.tokens))),
        String(Math.round(plan.deltaTokens)),
        String(Math.round(plan.deltaNanoUsd)),
        ...plan.windows.map((w) => String(w.expiresAtMs)),
      ];
      try {
        await evalScript(settleLuaSha, settleLua, keys, args);
        succeeded();
      } catch (err) {
        reporter.failed(err);
        // The worst case stays reserved in Redis (counted, never overspent); the tokens per minute are
        // charged locally.
        await fallback.settle({ ...plan, windows: [], deltaTokens: 0, deltaNanoUsd: 0 }, "fallback");
      }
    },

    async read(windows) {
      if (windows.length === 0) return [];
      try {
        const command = async () => {
          if (client.status !== "ready") throw new Error(`Redis connection is ${client.status}`);
          const pipeline = client.pipeline();
          for (const w of windows) pipeline.hmget(prefix + w.key, "t", "u");
          return pipeline.exec();
        };
        const replies = await (breaker === undefined ? command() : breaker.run(command));
        succeeded();
        return windows.map((w, i): WindowSpend => {
          const [err, value] = replies?.[i] ?? [new Error("no reply"), undefined];
          if (err !== null) throw err;
          const [t, u] = value as [string | null, string | null];
          const local = pending.get(w.key);
          return {
            tokens: Number(t ?? 0) + (local?.tokens ?? 0),
            nanoUsd: Number(u ?? 0) + (local?.nanoUsd ?? 0),
          };
        });
      } catch (err) {
        reporter.failed(err);
        return fallback.read(windows);
      }
    },
  };
}

function parseAdmit(reply: unknown, plan: AdmitPlan): AdmitOutcome {
  if (!Array.isArray(reply) || !reply.every((n) => typeof n === "number")) {
    throw new Error("unexpected reply from the admission script");
  }
  const values = reply;
  if (values[0] === 0) return { kind: "admitted", source: "redis" };
  if (values[0] === 1) {
    const [, dimension, allowed, remaining, resetMs, retryAfterMs] = values as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const check = dimension === 1 ? plan.tokensRate : plan.requestsRate;
    return {
      kind: "rate_limited",
      dimension: dimension === 1 ? "tokens" : "requests",
      result: {
        allowed: allowed === 1,
        limit: check?.policy.limit ?? 0,
        remaining,
        resetMs,
        retryAfterMs,
        source: "redis",
      },
    };
  }
  return { kind: "over_budget", windows: values.slice(1).map((i) => i - 1), source: "redis" };
}
