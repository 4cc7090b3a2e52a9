import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  freePort,
  killRedisServer,
  requireRedisServerBinary,
  startRedisServer,
} from "../ratelimit/redis-support.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { createE2eClients, type E2eClients } from "../support/e2e-clients.js";
import { scrape, series } from "../support/metrics-scrape.js";

/**
 * The Redis fallback hook wired in the composed server: with REDIS_URL pointing at a port where nothing
 * listens, every decision falls back to the local limit, and the metrics say so (docs/ratelimit.md).
 */

describe("metrics while Redis is unreachable", () => {
  let app: AppHarness;
  let clients: E2eClients;

  beforeAll(async () => {
    // Port 1 on loopback: connection refused at once, so the fail-fast client is never ready.
    app = await startApp({ metrics: true, waitForRedis: false, env: { REDIS_URL: "redis://127.0.0.1:1" } });
    clients = createE2eClients(app.url);
  });
  afterAll(async () => {
    clients.close();
    await app.close();
  });

  it("counts each fallback decision and reports the fallback as the limiter source", async () => {
    const before = await scrape(app.metricsUrl);
    expect(series(before, "api_key_server_rate_limiter_source")).toEqual([
      "{source=fallback} 0",
      "{source=memory} 0",
      "{source=redis} 1",
    ]);
    expect(series(before, "api_key_server_redis_fallbacks_total")).toEqual([
      // Calls with budgets decided locally: none here (the product has no budgets).
      "{component=budget} 0",
      "{component=nonce_store} 0",
      "{component=rate_limiter} 0",
    ]);
    const auth = `Bearer ${await app.token()}`;
    const body = { model: "echo-1", messages: [{ role: "user", content: "Hello" }] };
    for (let i = 0; i < 3; i++) {
      expect((await clients.chat("rest", "product-dev", body, { authorization: auth })).status).toBe(200);
    }
    const after = await scrape(app.metricsUrl);
    expect(series(after, "api_key_server_redis_fallbacks_total")).toEqual([
      "{component=budget} 0",
      "{component=nonce_store} 0",
      "{component=rate_limiter} 3",
    ]);
    expect(series(after, "api_key_server_rate_limiter_source")).toEqual([
      "{source=fallback} 1",
      "{source=memory} 0",
      "{source=redis} 0",
    ]);
  });
});

const redisServerBinary = requireRedisServerBinary();

/**
 * The Redis circuit breaker's state and transitions (docs/ratelimit.md) on a hung Redis: the test's own
 * redis-server, SIGSTOPped (the shared one is never touched), so commands time out until the breaker opens,
 * then SIGCONTed, so a probe closes it again.
 */
describe.skipIf(!redisServerBinary)("metrics of the Redis circuit breaker on a hung redis-server", () => {
  it("the state gauge follows the breaker and each transition is counted by the state it moved to", async () => {
    const port = await freePort();
    const server = await startRedisServer(port);
    const app = await startApp({
      metrics: true,
      env: { REDIS_URL: `redis://127.0.0.1:${port}` },
      redisCommandTimeoutMs: 300,
    });
    const clients = createE2eClients(app.url);
    try {
      const breaker = async () => {
        const text = await scrape(app.metricsUrl);
        return {
          state: series(text, "api_key_server_redis_breaker_state"),
          transitions: series(text, "api_key_server_redis_breaker_transitions_total"),
        };
      };
      expect(await breaker()).toEqual({
        state: ["{state=closed} 1", "{state=half-open} 0", "{state=open} 0"],
        transitions: ["{state=closed} 0", "{state=half-open} 0", "{state=open} 0"],
      });
      const auth = `Bearer ${await app.token()}`;
      const body = { model: "echo-1", messages: [{ role: "user", content: "Hello" }] };
      const call = async () =>
        expect((await clients.chat("rest", "product-dev", body, { authorization: auth })).status).toBe(200);

      server.kill("SIGSTOP");
      // Each call waits for the command timeout (and is decided by the fallback) until 3 consecutive
      // failures open the breaker; the cool-down (5 s) keeps it open for the scrape right after.
      let opened = await breaker();
      for (let i = 0; i < 10 && opened.state[2] !== "{state=open} 1"; i++) {
        await call();
        opened = await breaker();
      }
      expect(opened).toEqual({
        state: ["{state=closed} 0", "{state=half-open} 0", "{state=open} 1"],
        transitions: ["{state=closed} 0", "{state=half-open} 0", "{state=open} 1"],
      });

      // Back: after the cool-down a call starts the probe, whose PING now answers, and the breaker closes.
      server.kill("SIGCONT");
      let closed = opened;
      for (let i = 0; i < 100 && closed.state[0] !== "{state=closed} 1"; i++) {
        await call();
        await new Promise((resolve) => setTimeout(resolve, 100));
        closed = await breaker();
      }
      expect(closed.state).toEqual(["{state=closed} 1", "{state=half-open} 0", "{state=open} 0"]);
      expect(closed.transitions).toContain("{state=closed} 1");
    } finally {
      clients.close();
      await app.close();
      await killRedisServer(server);
    }
  }, 30_000);
});
