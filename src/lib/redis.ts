import { Redis } from "ioredis";
import type { Logger } from "pino";

export interface RedisClientOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://...` (REDIS_URL). Never logged: it may hold a password. */
  readonly url: string;
  /** Longest wait for one command before it fails (default 200 ms): a slow Redis must not slow requests. */
  readonly commandTimeoutMs?: number;
  /** Longest wait for a (re)connection (default 2_000 ms). */
  readonly connectTimeoutMs?: number;
  /** Receives connection state changes: one WARNING when the connection is lost (or cannot be made), one INFO when it is back. */
  readonly logger: Logger;
}

/**
 * A Redis client that fails fast instead of queueing: no offline queue (a command while disconnected
 * fails at once), one retry per request, a command timeout, and reconnection in the background with a
 * backoff capped at 2 s, so callers fall back to local state during an outage and return to Redis by
 * themselves. The caller owns the client: `quit()` it on shutdown.
 * Throws a TypeError naming `url` when it is not a redis:// or rediss:// URL.
 */
export function createRedisClient(options: RedisClientOptions): Redis {
  const { url, logger } = options;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError("REDIS_URL: not a valid URL (expected redis://host:port)");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new TypeError(`REDIS_URL: unsupported scheme "${parsed.protocol}" (expected redis: or rediss:)`);
  }
  const commandTimeout = options.commandTimeoutMs ?? 200;
  const connectTimeout = options.connectTimeoutMs ?? 2_000;
  for (const [name, value] of [
    ["commandTimeoutMs", commandTimeout],
    ["connectTimeoutMs", connectTimeout],
  ] as const) {
    if (!Number.isFinite(value) || value <= 0) {
      throw new TypeError(`createRedisClient: ${name} must be a positive number, got ${String(value)}`);
    }
  }
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout,
    connectTimeout,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    lazyConnect: false,
  });
  const where = `${parsed.hostname}:${parsed.port || "6379"}`;
  // One WARNING per outage and one INFO when it ends. Without an "error" listener ioredis would also print
  // every failed reconnection to stderr. A killed server may close the socket without an error first.
  let lost = false;
  const reportLost = (cause: string | undefined) => {
    if (lost) return;
    lost = true;
    logger.warn(
      { redis: where, ...(cause === undefined ? {} : { cause }) },
      "Redis connection lost; reconnecting",
    );
  };
  client.on("error", (err: Error) => reportLost(`${err.name}: ${err.message}`));
  // "reconnecting" rather than "close": a deliberate quit() closes too, and is no outage.
  client.on("reconnecting", () => reportLost(undefined));
  client.on("ready", () => {
    if (!lost) return;
    lost = false;
    logger.info({ redis: where }, "Redis connection restored");
  });
  return client;
}
