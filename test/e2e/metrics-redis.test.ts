import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
