import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient } from "../../src/lib/redis.js";
import type { NonceStore } from "../../src/lib/nonce-store.js";
import {
  createMemoryLimiter,
  createRedisLimiter,
  createRedisNonceStore,
  rateLimitKey,
  type RateLimiter,
} from "../../src/limits/index.js";
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
const minute = { limit: 5, windowMs: 60_000 };

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

describe.skipIf(!redisUp)("Redis limiter on the shared Redis", () => {
  const log = captureLog();
  const prefix = `test:rl:${randomUUID()}:`;
  let client: Redis;
  let limiter: RateLimiter;
  let fallbacks = 0;

  beforeAll(async () => {
    client = createRedisClient({ url: sharedRedisUrl, logger: log.logger });
    await ready(client);
    limiter = createRedisLimiter({
      client,
      fallback: createMemoryLimiter({ source: "fallback" }),
      logger: log.logger,
      keyPrefix: prefix,
      onFallback: () => void (fallbacks += 1),
    });
  });

  afterAll(async () => {
    // Remove only this run's keys: other test runs may share the server.
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
    await limiter.close();
    await client.quit();
  });

  it("admits exactly the limit in a concurrent burst and refuses the next with the retry delay", async () => {
    const results = await Promise.all(
      Array.from({ length: minute.limit }, () => limiter.consume("burst", minute)),
    );
    expect(results.every((r) => r.allowed && r.source === "redis")).toBe(true);
    expect(results.map((r) => r.remaining).sort()).toEqual([0, 1, 2, 3, 4]);
    const refused = await limiter.consume("burst", minute);
    expect(refused).toMatchObject({ allowed: false, limit: 5, remaining: 0, source: "redis" });
    // One unit every 12 s; the burst took a few ms of Redis time, so the wait is just under 12 s.
    expect(refused.retryAfterMs).toBeGreaterThan(11_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(12_000);
    expect(refused.resetMs).toBeGreaterThan(59_000);
    expect(refused.resetMs).toBeLessThanOrEqual(60_000);
    // The key expires by itself when the budget is full again.
    const ttl = await client.pttl(`${prefix}burst`);
    expect(ttl).toBeGreaterThan(59_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(fallbacks).toBe(0);
  });

  it("admits one more after the retry delay has passed (Redis server time)", async () => {
    const policy = { limit: 2, windowMs: 400 };
    await limiter.consume("short", policy);
    await limiter.consume("short", policy);
    const refused = await limiter.consume("short", policy);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(200);
    await new Promise((resolve) => setTimeout(resolve, refused.retryAfterMs));
    expect(await limiter.consume("short", policy)).toMatchObject({
      allowed: true,
      remaining: 0,
      source: "redis",
    });
  });

  it("charges tokens into debt exactly as the memory limiter does", async () => {
    const tokens = { limit: 100, windowMs: 60_000 };
    expect(await limiter.consume("tok", tokens, 0)).toMatchObject({
      allowed: true,
      remaining: 100,
      resetMs: 0,
    });
    expect(await client.exists(`${prefix}tok`)).toBe(0); // a check writes nothing
    const charged = await limiter.charge("tok", tokens, 150);
    expect(charged).toEqual({
      allowed: false,
      limit: 100,
      remaining: 0,
      resetMs: 90_000,
      retryAfterMs: 30_600,
      source: "redis",
    });
    const check = await limiter.consume("tok", tokens, 0);
    expect(check.allowed).toBe(false);
    expect(check.retryAfterMs).toBeLessThanOrEqual(30_600);
  });

  it("a caller over its limit does not affect another caller or another product", async () => {
    const one = { limit: 1, windowMs: 60_000 };
    const alice = { kind: "jwt", id: "ali:ce" } as const;
    expect((await limiter.consume(rateLimitKey("p", alice, "requests"), one)).allowed).toBe(true);
    expect((await limiter.consume(rateLimitKey("p", alice, "requests"), one)).allowed).toBe(false);
    expect(
      (await limiter.consume(rateLimitKey("p", { kind: "jwt", id: "bob" }, "requests"), one)).allowed,
    ).toBe(true);
    expect(
      (await limiter.consume(rateLimitKey("p", { kind: "hmac", id: "ali:ce" }, "requests"), one)).allowed,
    ).toBe(true);
    expect((await limiter.consume(rateLimitKey("q", alice, "requests"), one)).allowed).toBe(true);
  });

  it("two processes sharing one Redis admit one limit in total, not two", async () => {
    const worker = fileURLToPath(new URL("./fixtures/limiter-worker.ts", import.meta.url));
    const hooks = new URL("../support/ts-hooks.mjs", import.meta.url).href;
    const env = {
      ...process.env,
      REDIS_URL: sharedRedisUrl,
      KEY: `${prefix}two`,
      LIMIT: "10",
      ATTEMPTS: "15",
    };
    const children = [0, 1].map(() =>
      fork(worker, [], { execArgv: ["--import", hooks, "--no-warnings"], env, stdio: "inherit" }),
    );
    try {
      const message = (child: (typeof children)[number], type: string) =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          child.on("message", (m: Record<string, unknown>) => m.type === type && resolve(m));
          child.once("exit", (code) =>
            reject(new Error(`worker exited with ${String(code)} before "${type}"`)),
          );
        });
      await Promise.all(children.map((c) => message(c, "ready")));
      const done = children.map((c) => message(c, "done"));
      for (const c of children) c.send("go");
      const results = await Promise.all(done);
      expect(results.map((r) => r.sources)).toEqual([["redis"], ["redis"]]);
      const admitted = results.reduce((sum, r) => sum + Number(r.admitted), 0);
      expect(admitted).toBe(10);
    } finally {
      for (const c of children) if (c.exitCode === null) c.kill();
    }
  });

  it("falls back on a Redis error reply (wrong key type) and logs it without throwing", async () => {
    await client.hset(`${prefix}wrongtype`, "x", "1");
    const before = fallbacks;
    const r = await limiter.consume("wrongtype", minute);
    expect(r).toMatchObject({ allowed: true, source: "fallback" });
    expect(fallbacks).toBe(before + 1);
    const errors = log.records().filter((l) => l.severity === "ERROR");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ message: "Rate limiter: Redis unavailable, using the local fallback" });
    expect(String(errors[0]?.cause)).toContain("WRONGTYPE");
    // The next good call is served by Redis again and says so once.
    expect((await limiter.consume("after-wrongtype", minute)).source).toBe("redis");
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
    const make = (client: Redis, logger: typeof logA.logger, onFallback?: () => void) =>
      createRedisLimiter({
        client,
        fallback: createMemoryLimiter({ source: "fallback" }),
        logger,
        ...(onFallback ? { onFallback } : {}),
      });
    const a = make(clientA, logA.logger, () => void (fallbacksA += 1));
    const b = make(clientB, logB.logger);
    const nonces = createRedisNonceStore({ client: clientA, fallback: memoryNonces(), logger: logA.logger });
    const policy = { limit: 3, windowMs: 60_000 };
    const sources = async (limiter: RateLimiter, key: string, n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        const r = await limiter.consume(key, policy);
        out.push(`${r.allowed ? "ok" : "no"}:${r.source}`);
      }
      return out;
    };
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
      const limiter = createRedisLimiter({
        client,
        fallback: createMemoryLimiter({ source: "fallback" }),
        logger: log.logger,
        logIntervalMs: 1_000,
        now: () => t,
      });
      for (let i = 0; i < 3; i++) expect((await limiter.consume("k", minute)).source).toBe("fallback");
      t += 999;
      await limiter.consume("k", minute);
      t += 1;
      await limiter.consume("k", minute);
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
