import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { createCircuitBreaker, type BreakerState } from "../../src/lib/circuit-breaker.js";
import { createRedisClient } from "../../src/lib/redis.js";
import { createMemoryNonceStore } from "../../src/auth/index.js";
import {
  createCallGate,
  createMemorySpendStore,
  createRedisNonceStore,
  createRedisSpendStore,
  type RateLimitSource,
} from "../../src/limits/index.js";
import { parseProducts } from "../../src/secrets/index.js";
import { captureLog } from "../support/log-capture.js";
import { freePort, killRedisServer, requireRedisServerBinary, startRedisServer } from "./redis-support.js";

const redisServerBinary = requireRedisServerBinary();

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
}

async function ready(client: Redis): Promise<void> {
  if (client.status !== "ready") await new Promise((resolve) => client.once("ready", resolve));
}

/**
 * Issue 18, item 5: a hung Redis (its own redis-server, SIGSTOPped: the shared one on 6379 is never
 * touched) costs the command timeout only until the breaker opens; from then on calls go to the local
 * fallback without waiting, one background probe at a time checks recovery, and calls return to Redis.
 */
describe.skipIf(!redisServerBinary)("Redis circuit breaker on a hung redis-server", () => {
  it("stops waiting for a hung Redis after a few timeouts and returns to it once it answers", async () => {
    const commandTimeoutMs = 1_000;
    const port = await freePort();
    const server = await startRedisServer(port);
    const log = captureLog();
    const client = createRedisClient({
      url: `redis://127.0.0.1:${port}`,
      logger: log.logger,
      commandTimeoutMs,
    });
    const changes: string[] = [];
    const breaker = createCircuitBreaker({
      name: "Redis",
      failureThreshold: 3,
      coolDownMs: 300,
      probe: () => client.ping(),
      logger: log.logger,
      onStateChange: (state: BreakerState, previous: BreakerState) => changes.push(`${previous}->${state}`),
    });
    // The call gate on the Redis store, as createApp (src/app.ts) builds it; onDecision says where each
    // call was decided.
    let source: RateLimitSource | undefined;
    const gate = createCallGate({
      store: createRedisSpendStore({
        client,
        fallback: createMemorySpendStore({ source: "fallback" }),
        logger: log.logger,
        keyPrefix: `breaker-test-${port}:`,
        breaker,
      }),
      defaults: { requestsPerMinute: 1_000, tokensPerMinute: undefined },
      logger: log.logger,
      onDecision: (_dimension, result) => void (source = result.source),
    });
    const product = parseProducts(JSON.stringify({ p: { providers: { echo: { models: ["echo-1"] } } } })).get(
      "p",
    );
    if (product === undefined) throw new Error("no product");
    const admit = async (id: string) => {
      source = undefined;
      await gate.admit({
        product,
        caller: { kind: "hmac", id },
        model: "echo-1",
        promptTokens: () => 1,
        maxOutputTokens: 1,
      });
      return source;
    };
    const nonces = createRedisNonceStore({
      client,
      fallback: createMemoryNonceStore({}),
      logger: log.logger,
      keyPrefix: `breaker-test-${port}:`,
      breaker,
    });
    /** One admission and one nonce call, as an HMAC request makes: where decided and how long it took. */
    const call = async (i: number) => {
      const started = performance.now();
      const decided = await admit("svc");
      await nonces.remember("svc", `nonce-${i}-0123`, 60_000);
      return { source: decided, ms: performance.now() - started };
    };
    try {
      await ready(client);
      expect((await call(0)).source).toBe("redis");

      server.kill("SIGSTOP");
      const hung = [];
      for (let i = 1; i <= 12; i++) hung.push(await call(i));
      expect(hung.every((c) => c.source === "fallback")).toBe(true);
      expect(breaker.state).not.toBe("closed");
      // The first calls wait for the command timeout until 3 consecutive failures open the breaker; the
      // calls after that never wait for it (asserted against the timeout, not against a speed).
      const waited = hung.filter((c) => c.ms >= commandTimeoutMs);
      expect(waited.length).toBeGreaterThan(0);
      expect(waited.length).toBeLessThanOrEqual(3);
      const afterOpening = hung.slice(3);
      expect(afterOpening.every((c) => c.ms < commandTimeoutMs / 2)).toBe(true);
      console.info(
        `hung Redis: ${hung.map((c) => c.ms.toFixed(1)).join(", ")} ms per call (rate limit + nonce)`,
      );

      // Recovery: the probe (one at a time, in the background) closes the breaker; calls use Redis again.
      server.kill("SIGCONT");
      await until(() => {
        void admit("poke");
        return breaker.state === "closed";
      }, "the breaker to close");
      expect((await call(100)).source).toBe("redis");

      expect(changes[0]).toBe("closed->open");
      expect(changes.at(-1)).toBe("half-open->closed");
      // Every probe was alone: each half-open is followed by an open or a close before the next one.
      expect(changes.join(" ")).not.toMatch(/->half-open (?!half-open->)/);
      const lines = log.records().filter((r) => r["breaker"] === "Redis");
      expect(lines[0]).toMatchObject({ severity: "WARNING", state: "open", consecutiveFailures: 3 });
      expect(lines.at(-1)).toMatchObject({
        severity: "INFO",
        state: "closed",
        message: "Redis circuit breaker closed",
      });
    } finally {
      client.disconnect();
      await killRedisServer(server);
    }
  }, 30_000);
});
