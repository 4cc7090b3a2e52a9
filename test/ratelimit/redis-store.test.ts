import { randomUUID } from "node:crypto";
import { once } from "node:events";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient } from "../../src/lib/redis.js";
import type { NonceStore } from "../../src/lib/nonce-store.js";
import type { Logger } from "../../src/log/index.js";
import {
  createCallGate,
  createMemorySpendStore,
  createRedisNonceStore,
  createRedisSpendStore,
  rateLimitKey,
  type RateLimitResult,
  type RedisSpendStoreOptions,
} from "../../src/limits/index.js";
import { parseProducts } from "../../src/secrets/index.js";
import { AppError } from "../../src/errors/index.js";
import { captureLog } from "../support/log-capture.js";
import {
  freePort,
  killRedisServer,
  requireRedisServerBinary,
  requireSharedRedis,
  sharedRedisUrl,
  startRedisServer,
} from "./redis-support.js";

const redisUp = await requireSharedRedis();
const redisServerBinary = requireRedisServerBinary();

/**
 * The call gate on the Redis store as createApp (src/app.ts) builds it, with `perMinute` requests per
 * minute for every caller of product "p"; `decide(id)` returns the decision, `sources(id, n)` n decisions as "ok:source" or "no:source".
 */
function gateOn(
  client: Redis,
  logger: Logger,
  perMinute: number,
  options: Partial<Omit<RedisSpendStoreOptions, "client" | "logger" | "fallback">> = {},
) {
  let last: RateLimitResult | undefined;
  const gate = createCallGate({
    store: createRedisSpendStore({
      client,
      fallback: createMemorySpendStore({ source: "fallback" }),
      logger,
      ...options,
    }),
    defaults: { requestsPerMinute: perMinute, tokensPerMinute: undefined },
    logger,
    onDecision: (_dimension, result) => void (last = result),
  });
  const product = parseProducts(JSON.stringify({ p: { providers: { echo: { models: ["echo-1"] } } } })).get(
    "p",
  );
  if (product === undefined) throw new Error("no product");
  const decide = async (id: string): Promise<RateLimitResult> => {
    last = undefined;
    try {
      await gate.admit({
        product,
        caller: { kind: "jwt", id },
        model: "echo-1",
        promptTokens: () => 1,
        maxOutputTokens: 1,
      });
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== "rate_limited") throw err;
    }
    if (last === undefined) throw new Error("no decision");
    return last;
  };
  const sources = async (id: string, n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await decide(id);
      out.push(`${r.allowed ? "ok" : "no"}:${r.source}`);
    }
    return out;
  };
  return { decide, sources, key: (id: string) => rateLimitKey("p", { kind: "jwt", id }, "requests") };
}

/** Resolves on the client's next "ready" (events.once would reject on the "error" events of an outage). */
async function ready(client: Redis): Promise<void> {
  if (client.status !== "ready") await new Promise((resolve) => client.once("ready", resolve));
}

/** A tiny in-memory nonce store standing in for the auth folder's, as the fallback. */
function memoryNonces(): NonceStore {
  const seen = new Set<string>();
  return {
    remember: (keyId, nonce) => {
      const key = `${keyId}\n${nonce}`;
      const fresh = !seen.has(key);
      seen.add(key);
      return Promise.resolve(fresh);
    },
  };
}

describe.skipIf(!redisUp)("the call gate's Redis store on the shared Redis", () => {
  const log = captureLog();
  const prefix = `test:rl:${randomUUID()}:`;
  let client: Redis;
  let limits: ReturnType<typeof gateOn>;
  let fallbacks = 0;

  beforeAll(async () => {
    client = createRedisClient({ url: sharedRedisUrl, logger: log.logger });
    await ready(client);
    limits = gateOn(client, log.logger, 5, { keyPrefix: prefix, onFallback: () => void (fallbacks += 1) });
  });

  afterAll(async () => {
    // Remove only this run's keys: other test runs may share the server.
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
    await client.quit();
  });

  it("admits exactly the limit in a concurrent burst and refuses the next with the retry delay", async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => limits.decide("burst")));
    expect(results.every((r) => r.allowed && r.source === "redis")).toBe(true);
    const refused = await limits.decide("burst");
    expect(refused).toMatchObject({ allowed: false, limit: 5, remaining: 0, source: "redis" });
    // One unit every 12 s; the burst took a few ms of Redis time, so the wait is just under 12 s.
    expect(refused.retryAfterMs).toBeGreaterThan(11_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(12_000);
    // The key expires by itself when the budget is full again.
    const ttl = await client.pttl(prefix + limits.key("burst"));
    expect(ttl).toBeGreaterThan(59_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(fallbacks).toBe(0);
  });

  it("falls back on a Redis error reply (wrong key type) and logs it without throwing", async () => {
    await client.hset(prefix + limits.key("wrongtype"), "x", "1");
    const before = fallbacks;
    const r = await limits.decide("wrongtype");
    expect(r).toMatchObject({ allowed: true, source: "fallback" });
    expect(fallbacks).toBe(before + 1);
    const errors = log.records().filter((l) => l.severity === "ERROR");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ message: "Rate limiter: Redis unavailable, using the local fallback" });
    expect(String(errors[0]?.cause)).toContain("WRONGTYPE");
    // The next good call is served by Redis again and says so once.
    expect((await limits.decide("after-wrongtype")).source).toBe("redis");
    expect(log.records().filter((l) => l.message === "Rate limiter: Redis is back")).toHaveLength(1);
  });

  it("the client logs nothing when it connects and is closed on purpose", async () => {
    const quiet = captureLog();
    const other = createRedisClient({ url: sharedRedisUrl, logger: quiet.logger });
    await ready(other);
    const ended = new Promise((resolve) => other.once("end", resolve));
    await other.quit();
    await ended;
    expect(quiet.lines).toEqual([]);
  });

  it("nonce store: a nonce is new once per key id, across two clients, and expires by itself", async () => {
    const other = createRedisClient({ url: sharedRedisUrl, logger: log.logger });
    try {
      await ready(other);
      const a = createRedisNonceStore({
        client,
        fallback: memoryNonces(),
        logger: log.logger,
        keyPrefix: prefix,
      });
      const b = createRedisNonceStore({
        client: other,
        fallback: memoryNonces(),
        logger: log.logger,
        keyPrefix: prefix,
      });
      const [x, y] = await Promise.all([a.remember("k1", "n:1", 5_000), b.remember("k1", "n:1", 5_000)]);
      expect([x, y].sort()).toEqual([false, true]);
      expect(await a.remember("k1", "n:1", 5_000)).toBe(false);
      expect(await a.remember("k2", "n:1", 5_000)).toBe(true);
      const ttl = await client.pttl(`${prefix}nonce:k1:n%3A1`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(5_000);
      await expect(a.remember("k1", "n2", 0)).rejects.toThrow(/ttlMs must be a positive integer/);
    } finally {
      await other.quit();
    }
  });
});

describe.skipIf(!redisServerBinary)("Redis outage on a dedicated redis-server", () => {
  it("keeps admitting under the local limit while Redis is down or hung, then shares the limit again", async () => {
    const port = await freePort();
    let server = await startRedisServer(port);
    const url = `redis://127.0.0.1:${port}`;
    const logA = captureLog();
    const logB = captureLog();
    const clientA = createRedisClient({ url, logger: logA.logger, commandTimeoutMs: 200 });
    const clientB = createRedisClient({ url, logger: logB.logger, commandTimeoutMs: 200 });
    let fallbacksA = 0;
    // Two instances: each its own client and gate, sharing only the Redis.
    const a = gateOn(clientA, logA.logger, 3, { onFallback: () => void (fallbacksA += 1) });
    const b = gateOn(clientB, logB.logger, 3);
    const nonces = createRedisNonceStore({ client: clientA, fallback: memoryNonces(), logger: logA.logger });
    const sources = (instance: ReturnType<typeof gateOn>, id: string, n: number) => instance.sources(id, n);
    try {
      await Promise.all([ready(clientA), ready(clientB)]);
      // Shared: A uses the whole limit, B is refused.
      expect(await sources(a, "k", 3)).toEqual(["ok:redis", "ok:redis", "ok:redis"]);
      expect(await sources(b, "k", 1)).toEqual(["no:redis"]);

      // Hung Redis: commands time out after commandTimeoutMs and the fallback answers.
      server.kill("SIGSTOP");
      expect(await sources(a, "hung", 1)).toEqual(["ok:fallback"]);
      server.kill("SIGCONT");

      // Redis gone: every call keeps succeeding under each instance's local limit.
      const closed = new Promise((resolve) => clientA.once("close", resolve));
      await killRedisServer(server);
      await closed;
      expect(await sources(a, "k", 4)).toEqual(["ok:fallback", "ok:fallback", "ok:fallback", "no:fallback"]);
      expect(await sources(b, "k", 4)).toEqual(["ok:fallback", "ok:fallback", "ok:fallback", "no:fallback"]);
      expect(fallbacksA).toBe(5);
      expect(await nonces.remember("key", "n1", 60_000)).toBe(true);
      expect(await nonces.remember("key", "n1", 60_000)).toBe(false);

      // One ERROR line per component per interval, not one per request.
      const errorsA = logA.records().filter((l) => l.severity === "ERROR");
      expect(errorsA.map((l) => l.message)).toEqual([
        "Rate limiter: Redis unavailable, using the local fallback",
        "Nonce store: Redis unavailable, using the local fallback",
      ]);
      expect(logA.records().filter((l) => l.message === "Redis connection lost; reconnecting")).toHaveLength(
        1,
      );

      // Redis back (empty, as after a failover): the limit is shared again.
      server = await startRedisServer(port);
      await Promise.all([ready(clientA), ready(clientB)]);
      expect(await sources(a, "k", 3)).toEqual(["ok:redis", "ok:redis", "ok:redis"]);
      expect(await sources(b, "k", 1)).toEqual(["no:redis"]);
      expect(await nonces.remember("key", "n2", 60_000)).toBe(true);
      expect(logA.records().map((l) => l.message)).toEqual(
        expect.arrayContaining([
          "Rate limiter: Redis is back",
          "Nonce store: Redis is back",
          "Redis connection restored",
        ]),
      );
      expect(fallbacksA).toBe(5);
    } finally {
      clientA.disconnect();
      clientB.disconnect();
      await killRedisServer(server);
    }
  });

  it("logs a Redis that never comes up once per interval, with the count of fallbacks", async () => {
    const port = await freePort(); // nothing listens there
    const log = captureLog();
    let t = 0;
    const client = createRedisClient({ url: `redis://127.0.0.1:${port}`, logger: log.logger });
    try {
      const limits = gateOn(client, log.logger, 5, { logIntervalMs: 1_000, now: () => t });
      for (let i = 0; i < 3; i++) expect((await limits.decide("k")).source).toBe("fallback");
      t += 999;
      await limits.decide("k");
      t += 1;
      await limits.decide("k");
      const errors = log.records().filter((l) => l.severity === "ERROR");
      expect(errors).toMatchObject([{ fallbacks: 1 }, { fallbacks: 4 }]);
      expect(String(errors[0]?.cause)).toMatch(/Redis connection is (?!ready)\w+/);
    } finally {
      client.disconnect();
    }
  });
});

describe("createRedisClient", () => {
  const { logger } = captureLog();
  it.each([
    ["not a url", /REDIS_URL: not a valid URL/],
    ["http://127.0.0.1:6379", /REDIS_URL: unsupported scheme "http:"/],
  ])("rejects %s with a line naming REDIS_URL", (url, message) => {
    expect(() => createRedisClient({ url, logger })).toThrow(message);
  });

  it("rejects a non-positive command timeout", () => {
    expect(() => createRedisClient({ url: "redis://127.0.0.1:1", logger, commandTimeoutMs: 0 })).toThrow(
      /commandTimeoutMs must be a positive number/,
    );
  });

  it("never logs the password of the URL", async () => {
    const log = captureLog();
    const port = await freePort();
    const client = createRedisClient({ url: `redis://user:s3cret-pw@127.0.0.1:${port}`, logger: log.logger });
    try {
      await once(client, "error");
      expect(log.records()).toMatchObject([{ severity: "WARNING", redis: `127.0.0.1:${port}` }]);
      expect(log.text()).not.toContain("s3cret-pw");
    } finally {
      client.disconnect();
    }
  });
});
