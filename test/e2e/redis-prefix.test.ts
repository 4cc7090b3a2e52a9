import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { requireSharedRedis, sharedRedisUrl as redisUrl } from "../ratelimit/redis-support.js";
import { startApp, type AppHarness } from "../support/app-harness.js";

const redisUp = await requireSharedRedis();

/** Two server instances on one Redis; their limits are shared exactly when their key prefixes are equal. */
describe.runIf(redisUp)("API_KEY_SERVER_REDIS_KEY_PREFIX separates environments sharing one Redis", () => {
  const apps: AppHarness[] = [];
  afterEach(async () => {
    const logs = apps.map((app) => app.logs.text());
    await Promise.all(apps.splice(0).map((app) => app.close()));
    // Every decision came from Redis, none from the local fallback (which counts per instance).
    for (const text of logs) expect(text).not.toContain("using the local fallback");
  });

  async function instance(prefix: string): Promise<AppHarness> {
    const app = await startApp({
      products: {
        "product-dev": {
          providers: { echo: { models: ["echo-1"] } },
          rate_limit: { requests_per_minute: 2 },
        },
      },
      env: { REDIS_URL: redisUrl, API_KEY_SERVER_REDIS_KEY_PREFIX: prefix },
    });
    apps.push(app);
    return app;
  }

  async function statuses(targets: AppHarness[], token: string): Promise<number[]> {
    const out: number[] = [];
    for (const app of targets) {
      const res = await fetch(`${app.url}/v1/chat/product-dev`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hi" }] }),
      });
      out.push(res.status);
    }
    return out;
  }

  it("same prefix: one limit for both instances", async () => {
    const prefix = `t-${randomUUID()}:`;
    const [a, b] = [await instance(prefix), await instance(prefix)];
    const token = await a.token({ claims: { sub: "caller-1" } });
    // b trusts a different key; mint for each with its own key but the same subject.
    const tokenB = await b.token({ claims: { sub: "caller-1" } });
    expect([
      ...(await statuses([a], token)),
      ...(await statuses([b], tokenB)),
      ...(await statuses([a], token)),
    ]).toStrictEqual([200, 200, 429]);
  });

  it("different prefixes: each instance has its own limit", async () => {
    const [a, b] = [await instance(`a-${randomUUID()}:`), await instance(`b-${randomUUID()}:`)];
    const tokenA = await a.token({ claims: { sub: "caller-1" } });
    const tokenB = await b.token({ claims: { sub: "caller-1" } });
    expect([
      ...(await statuses([a, a], tokenA)),
      ...(await statuses([b, b], tokenB)),
      ...(await statuses([a], tokenA)),
    ]).toStrictEqual([200, 200, 200, 200, 429]);
  });
});
