import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../lib/circuit-breaker.js";
import type { Logger } from "../log/index.js";
import { createFailureReporter } from "./failure-reporter.js";
import { assertValid, type GcraMode } from "./gcra.js";
import { gcraLua, gcraLuaSha } from "./redis-script.js";
import type { RateLimitPolicy, RateLimiter, RateLimitResult } from "./types.js";

export interface RedisLimiterOptions {
  /** A fail-fast client (see `createRedisClient`); the limiter does not close it. */
  readonly client: Redis;
  /** Used for a call whenever Redis fails: a memory limiter created with `source: "fallback"`. */
  readonly fallback: RateLimiter;
  readonly logger: Logger;
  /** Prefix of every key, e.g. to separate environments sharing a Redis (default ""). */
  readonly keyPrefix?: string;
  /** At most one ERROR line per this many ms while Redis fails (default 60_000). */
  readonly logIntervalMs?: number;
  /** Called once per call served by the fallback (a metrics counter). */
  readonly onFallback?: () => void;
  /**
   * Guards every Redis command: while it is open, calls go to `fallback` at once instead of each waiting
   * for the command timeout (share one with the nonce store: it is the same Redis). None by default.
   */
  readonly breaker?: CircuitBreaker;
  /** Clock for the log interval only; decisions use Redis server time. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * A GCRA limiter shared by every instance through Redis: one atomic Lua script per call, on Redis server
 * time. A Redis error or timeout never reaches the caller: that call is decided by `fallback` (a local
 * limit), logged at most once per interval and counted; the next call tries Redis again. A refusal by
 * Redis is a result (allowed=false), never confused with a store error.
 */
export function createRedisLimiter(options: RedisLimiterOptions): RateLimiter {
  const { client, fallback, logger, breaker } = options;
  const keyPrefix = options.keyPrefix ?? "";
  const logIntervalMs = options.logIntervalMs ?? 60_000;
  if (!Number.isFinite(logIntervalMs) || logIntervalMs < 0) {
    throw new TypeError(`createRedisLimiter: logIntervalMs must be >= 0, got ${String(logIntervalMs)}`);
  }
  const reporter = createFailureReporter({
    logger,
    what: "Rate limiter",
    intervalMs: logIntervalMs,
    now: options.now ?? Date.now,
    onFallback: options.onFallback,
  });

  async function evalGcra(key: string, args: readonly string[]): Promise<unknown> {
    try {
      return await client.evalsha(gcraLuaSha, 1, key, ...args);
    } catch (err) {
      // First use on this server (or after a restart/SCRIPT FLUSH): send the script itself once.
      if (err instanceof Error && err.message.startsWith("NOSCRIPT"))
        return client.eval(gcraLua, 1, key, ...args);
      throw err;
    }
  }

  async function run(
    key: string,
    policy: RateLimitPolicy,
    cost: number,
    mode: GcraMode,
  ): Promise<RateLimitResult> {
    assertValid(policy, cost);
    try {
      const args = [String(policy.limit), String(policy.windowMs), String(cost), mode];
      const command = () => {
        // Not connected: fail over at once instead of waiting for a command to fail.
        if (client.status !== "ready") throw new Error(`Redis connection is ${client.status}`);
        return evalGcra(keyPrefix + key, args);
      };
      const reply = await (breaker === undefined ? command() : breaker.run(command));
      const result = parseReply(reply, policy);
      reporter.succeeded();
      return result;
    } catch (err) {
      reporter.failed(err);
      return mode === "charge" ? fallback.charge(key, policy, cost) : fallback.consume(key, policy, cost);
    }
  }

  return {
    consume: (key, policy, cost = 1) => run(key, policy, cost, "consume"),
    charge: (key, policy, cost) => run(key, policy, cost, "charge"),
    close: () => fallback.close(),
  };
}

function parseReply(reply: unknown, policy: RateLimitPolicy): RateLimitResult {
  if (!Array.isArray(reply) || reply.length !== 4 || !reply.every((n) => typeof n === "number")) {
    throw new Error("unexpected reply from the rate limit script");
  }
  const [allowed, remaining, resetMs, retryAfterMs] = reply as [number, number, number, number];
  return { allowed: allowed === 1, limit: policy.limit, remaining, resetMs, retryAfterMs, source: "redis" };
}
