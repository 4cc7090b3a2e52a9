import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../lib/circuit-breaker.js";
import type { NonceStore } from "../lib/nonce-store.js";
import type { Logger } from "../log/index.js";
import { createFailureReporter } from "./failure-reporter.js";

export interface RedisNonceStoreOptions {
  /** A fail-fast client (see `createRedisClient`); the store does not close it. */
  readonly client: Redis;
  /** Answers whenever Redis fails (the in-memory nonce store), so authentication never depends on Redis. */
  readonly fallback: NonceStore;
  readonly logger: Logger;
  /** Prefix of every key (default ""). */
  readonly keyPrefix?: string;
  /** At most one ERROR line per this many ms while Redis fails (default 60_000). */
  readonly logIntervalMs?: number;
  /** Called once per call answered by the fallback (a metrics counter). */
  readonly onFallback?: () => void;
  /** Guards every Redis command, as the limiter's option of the same name (share one breaker). */
  readonly breaker?: CircuitBreaker;
  /** Clock for the log interval (default `Date.now`). */
  readonly now?: () => number;
}

/**
 * HMAC replay protection shared by every instance: `SET nonce:<keyId>:<nonce> 1 NX PX ttl` is atomic, so
 * of two instances seeing the same nonce exactly one gets true. When Redis fails the fallback answers
 * (replays are then caught per instance only), the failure is logged once per interval and counted.
 */
export function createRedisNonceStore(options: RedisNonceStoreOptions): NonceStore {
  const { client, fallback, breaker } = options;
  const keyPrefix = options.keyPrefix ?? "";
  const reporter = createFailureReporter({
    logger: options.logger,
    what: "Nonce store",
    intervalMs: options.logIntervalMs ?? 60_000,
    now: options.now ?? Date.now,
    onFallback: options.onFallback,
  });
  return {
    async remember(keyId, nonce, ttlMs) {
      if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) {
        throw new TypeError(`nonce ttlMs must be a positive integer, got ${String(ttlMs)}`);
      }
      try {
        const key = `${keyPrefix}nonce:${encodeURIComponent(keyId)}:${encodeURIComponent(nonce)}`;
        const command = async () => {
          if (client.status !== "ready") throw new Error(`Redis connection is ${client.status}`);
          return client.set(key, "1", "PX", ttlMs, "NX");
        };
        const reply = await (breaker === undefined ? command() : breaker.run(command));
        reporter.succeeded();
        return reply === "OK";
      } catch (err) {
        reporter.failed(err);
        return fallback.remember(keyId, nonce, ttlMs);
      }
    },
  };
}
