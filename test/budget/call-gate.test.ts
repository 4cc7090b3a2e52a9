import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { createRedisClient } from "../../src/lib/redis.js";
import {
  createCallGate,
  createMemorySpendStore,
  createRedisSpendStore,
  type CallGate,
  type SpendStore,
} from "../../src/limits/index.js";
import { parseProducts } from "../../src/secrets/index.js";
import type { ProductConfig } from "../../src/secrets/types.js";
import { captureLog } from "../support/log-capture.js";
import { requireSharedRedis, sharedRedisUrl } from "../ratelimit/redis-support.js";

// The one admission of rate limits and budgets (src/limits/call-gate.ts) on both stores: the worst case
// reserved, refused when it does not fit, settled to the real spend; windows per UTC day and month.

const redisUp = await requireSharedRedis();
const log = captureLog();
// A fixed clock in the future, so Redis keeps the counters (they expire after their window).
const nowMs = Date.UTC(2030, 2, 15, 12, 0, 0);
const dayResetS = 12 * 3600;
const monthResetS = (Date.UTC(2030, 3, 1) - nowMs) / 1000;

function productOf(budgets: unknown, extra: Record<string, unknown> = {}): ProductConfig {
  const name = `p-${randomUUID().slice(0, 8)}`;
  const products = parseProducts(
    JSON.stringify({
      [name]: {
        providers: { echo: { models: ["echo-1"] } },
        prices: { "echo-1": { input: 1, output: 2 } },
        budgets,
        ...extra,
      },
    }),
  );
  const product = products.get(name);
  if (!product) throw new Error("no product");
  return product;
}

const alice = { kind: "jwt", id: "alice" } as const;
const bob = { kind: "hmac", id: "bob:1" } as const;

async function refusal(gate: CallGate, request: Parameters<CallGate["admit"]>[0]): Promise<AppError> {
  try {
    await gate.admit(request);
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

let redis: Redis | undefined;

beforeAll(async () => {
  if (!redisUp) return;
  redis = createRedisClient({ url: sharedRedisUrl, logger: log.logger, commandTimeoutMs: 5_000 });
  if (redis.status !== "ready") await new Promise((resolve) => redis?.once("ready", resolve));
});

afterAll(async () => {
  await redis?.quit();
});

const stores: [string, () => SpendStore][] = [
  ["memory", () => createMemorySpendStore({ now: () => nowMs })],
  ...(redisUp
    ? ([
        [
          "redis",
          () =>
            createRedisSpendStore({
              client: redis as Redis,
              fallback: createMemorySpendStore({ source: "fallback", now: () => nowMs }),
              logger: log.logger,
              keyPrefix: `gate-test-${randomUUID()}:`,
            }),
        ],
      ] as [string, () => SpendStore][])
    : []),
];

describe.each(stores)("call gate on the %s store", (_name, makeStore) => {
  const gateOf = (onRefused?: (p: string, s: string, w: string) => void) =>
    createCallGate({
      store: makeStore(),
      defaults: { requestsPerMinute: undefined, tokensPerMinute: undefined },
      logger: log.logger,
      now: () => nowMs,
      ...(onRefused ? { onBudgetRefused: onRefused } : {}),
    });

  it("reserves the worst case, refuses what does not fit, and frees the difference at settlement", async () => {
    const refused: string[] = [];
    const gate = gateOf((p, s, w) => refused.push(`${s}/${w}`));
    const product = productOf({ caller: { daily_tokens: 120 } });
    const call = { product, caller: alice, model: "echo-1", promptTokens: () => 10, maxOutputTokens: 40 };
    const first = await gate.admit(call); // 50 reserved
    const second = await gate.admit(call); // 100 reserved: a third 50 does not fit in 120
    const err = await refusal(gate, call);
    expect(err.code).toBe("budget_exceeded");
    expect(err.message).toBe("Budget exceeded");
    expect(err.headers).toStrictEqual({ "Retry-After": String(dayResetS), "x-should-retry": "false" });
    expect(err.retryAfterMs).toBe(dayResetS * 1000);
    expect(err.metadata).toStrictEqual({ scope: "caller", window: "day" });
    expect(refused).toStrictEqual(["caller/day"]);
    // Another caller has a budget of its own.
    await (await gate.admit({ ...call, caller: bob })).settle(0, 0, undefined);
    // The first call used 15 of its 50: 35 come back (65 counted), and one more call fits.
    await first.settle(15, 0, undefined);
    const third = await gate.admit(call);
    expect((await gate.usage(product, alice)).map((u) => u.usedTokens)).toStrictEqual([115]);
    await second.settle(15, 0, undefined);
    await third.settle(15, 0, undefined);
    expect(await gate.usage(product, alice)).toStrictEqual([
      {
        scope: "caller",
        window: "day",
        usedTokens: 45,
        usedNanoUsd: 0,
        limitTokens: 120,
        limitNanoUsd: undefined,
        resetsAtMs: nowMs + dayResetS * 1000,
      },
    ]);
  });

  it("a product budget is shared by its callers; USD is the worst case priced", async () => {
    const gate = gateOf();
    // echo-1 at 1 USD/M input, 2 USD/M output: 1000 in + 1000 out = 0.003 USD worst case.
    const product = productOf({ product: { monthly_usd: 0.005 } });
    const call = { product, model: "echo-1", promptTokens: () => 1000, maxOutputTokens: 1000 };
    const first = await gate.admit({ ...call, caller: alice });
    const err = await refusal(gate, { ...call, caller: bob });
    expect(err.metadata).toStrictEqual({ scope: "product", window: "month" });
    expect(err.headers?.["Retry-After"]).toBe(String(monthResetS));
    await first.settle(1200, 1_200_000, undefined); // 0.0012 USD
    await (await gate.admit({ ...call, caller: bob })).settle(0, 0, undefined);
    expect(await gate.usage(product, bob)).toStrictEqual([
      {
        scope: "product",
        window: "month",
        usedTokens: 1200,
        usedNanoUsd: 1_200_000,
        limitTokens: undefined,
        limitNanoUsd: 5_000_000,
        resetsAtMs: Date.UTC(2030, 3, 1),
      },
    ]);
  });

  it("when several windows refuse, Retry-After is the latest reset", async () => {
    const gate = gateOf();
    const product = productOf({
      product: { daily_tokens: 10, monthly_tokens: 10 },
      caller: { daily_tokens: 5 },
    });
    const err = await refusal(gate, {
      product,
      caller: alice,
      model: "echo-1",
      promptTokens: () => 1,
      maxOutputTokens: 20,
    });
    expect(err.metadata).toStrictEqual({ scope: "product", window: "month" });
    expect(err.headers?.["Retry-After"]).toBe(String(monthResetS));
    expect((await gate.usage(product, alice)).map((u) => `${u.scope}/${u.window}`)).toStrictEqual([
      "product/day",
      "product/month",
      "caller/day",
    ]);
  });

  it("rate limits are decided in the same step: a call refused for tokens per minute reserves nothing", async () => {
    const gate = gateOf();
    const product = productOf(
      { product: { daily_tokens: 1000 } },
      { rate_limit: { tokens_per_minute: 20, requests_per_minute: 100 } },
    );
    const call = { product, caller: alice, model: "echo-1", promptTokens: () => 5, maxOutputTokens: 5 };
    const ticket = await gate.admit(call);
    await ticket.settle(25, 0, undefined); // more than the minute's 20 tokens
    const err = await refusal(gate, call);
    expect(err.code).toBe("rate_limited");
    expect(err.logFields).toMatchObject({ limit: "tokens_per_minute" });
    expect((await gate.usage(product, alice))[0]?.usedTokens).toBe(25);
  });

  it("a budget refusal does not use up a request of the requests-per-minute limit", async () => {
    const gate = gateOf();
    const product = productOf({ caller: { daily_tokens: 10 } }, { rate_limit: { requests_per_minute: 1 } });
    const big = { product, caller: alice, model: "echo-1", promptTokens: () => 5, maxOutputTokens: 50 };
    expect((await refusal(gate, big)).code).toBe("budget_exceeded");
    await (await gate.admit({ ...big, maxOutputTokens: 1 })).settle(1, 0, undefined);
    expect((await refusal(gate, { ...big, maxOutputTokens: 1 })).code).toBe("rate_limited");
  });

  it("a product without budgets or limits costs no store step", async () => {
    const store: SpendStore = {
      admit: () => Promise.reject(new Error("not called")),
      settle: () => Promise.reject(new Error("not called")),
      read: () => Promise.resolve([]),
    };
    const gate = createCallGate({
      store,
      defaults: { requestsPerMinute: undefined, tokensPerMinute: undefined },
      logger: log.logger,
    });
    const product = productOf(undefined);
    const ticket = await gate.admit({
      product,
      caller: alice,
      model: "echo-1",
      promptTokens: () => {
        throw new Error("not estimated");
      },
      maxOutputTokens: 1,
    });
    await ticket.settle(10, 0, undefined);
    expect(await gate.usage(product, alice)).toStrictEqual([]);
  });
});

// The per-minute rate limits through the gate, on both stores; test/e2e/ratelimit-server.test.ts proves
// them over the wire.
describe.each(stores)("rate limits through the call gate on the %s store", (_name, makeStore) => {
  const limits = (requestsPerMinute: number | undefined, tokensPerMinute: number | undefined) =>
    createCallGate({
      store: makeStore(),
      defaults: { requestsPerMinute, tokensPerMinute },
      logger: log.logger,
      now: () => nowMs,
    });
  const callOf = (product: ProductConfig, caller: typeof alice | typeof bob = alice) => ({
    product,
    caller,
    model: "echo-1",
    promptTokens: () => 1,
    maxOutputTokens: 1,
  });
  const hmacAlice = { kind: "hmac", id: "alice" } as const;

  it("a caller over its requests per minute does not affect another caller, caller kind, or product", async () => {
    const gate = limits(50, undefined);
    const product = productOf(undefined, { rate_limit: { requests_per_minute: 2 } });
    const other = productOf(undefined, { rate_limit: { requests_per_minute: 2 } });
    await gate.admit(callOf(product));
    await gate.admit(callOf(product));
    const err = await refusal(gate, callOf(product));
    expect(err.code).toBe("rate_limited");
    expect(err.headers).toMatchObject({ "RateLimit-Limit": "2", "RateLimit-Remaining": "0" });
    await gate.admit(callOf(product, bob));
    await gate.admit({ ...callOf(product), caller: hmacAlice });
    await gate.admit(callOf(other));
  });

  it("uses the default for a product without rate_limit, and no limit when there is no default", async () => {
    const product = productOf(undefined);
    const withDefault = limits(1, undefined);
    await withDefault.admit(callOf(product));
    expect((await refusal(withDefault, callOf(product))).code).toBe("rate_limited");

    const noDefault = limits(undefined, undefined);
    for (let i = 0; i < 100; i++) await noDefault.admit(callOf(product));
  });

  it("refuses once settled tokens exhaust tokens per minute, with the debt's retry delay", async () => {
    const gate = limits(undefined, undefined);
    const product = productOf(undefined, { rate_limit: { tokens_per_minute: 100 } });
    await (await gate.admit(callOf(product))).settle(150, 0, undefined); // 50 over: 30 s, +0.6 s for one
    for (let i = 0; i < 3; i++) {
      const err = await refusal(gate, callOf(product));
      expect(err.logFields).toMatchObject({ limit: "tokens_per_minute" });
      // Redis decides on its own clock, so a few ms may have passed since the settlement.
      expect(err.retryAfterMs).toBeGreaterThan(30_000);
      expect(err.retryAfterMs).toBeLessThanOrEqual(30_600);
      expect(err.headers?.["RateLimit-Limit"]).toBe("100");
    }
    await gate.admit(callOf(product, bob)); // bob's tokens are his own
  });

  it("a settlement of zero tokens charges nothing", async () => {
    const gate = limits(undefined, undefined);
    const product = productOf(undefined, { rate_limit: { tokens_per_minute: 1 } });
    for (let i = 0; i < 5; i++) await (await gate.admit(callOf(product))).settle(0, 0, undefined);
  });
});

describe("call gate failures and clock", () => {
  it("a call refused for tokens per minute does not spend a request (memory store, moved clock)", async () => {
    let t = nowMs;
    const gate = createCallGate({
      store: createMemorySpendStore({ now: () => t }),
      defaults: { requestsPerMinute: undefined, tokensPerMinute: undefined },
      logger: log.logger,
      now: () => t,
    });
    const product = productOf(undefined, { rate_limit: { requests_per_minute: 2, tokens_per_minute: 100 } });
    const call = { product, caller: alice, model: "echo-1", promptTokens: () => 1, maxOutputTokens: 1 };
    await (await gate.admit(call)).settle(150, 0, undefined);
    for (let i = 0; i < 3; i++) {
      const err = await refusal(gate, call);
      expect(err.logFields).toMatchObject({ limit: "tokens_per_minute" });
      expect(err.retryAfterMs).toBe(30_600);
    }
    t += 30_600;
    // Both requests of 2/min are back (the admitted call's after 30 s): had the refusals spent one, only one
    // would be.
    await gate.admit(call);
    await gate.admit(call);
    expect((await refusal(gate, call)).logFields).toMatchObject({ limit: "requests_per_minute" });
  });

  it("settle never throws, and logs the failure with the request id", async () => {
    const capture = captureLog();
    const store: SpendStore = {
      admit: () => Promise.resolve({ kind: "admitted", source: "memory" }),
      settle: () => Promise.reject(new Error("boom")),
      read: () => Promise.resolve([]),
    };
    const gate = createCallGate({
      store,
      defaults: { requestsPerMinute: undefined, tokensPerMinute: 10 },
      logger: capture.logger,
    });
    const ticket = await gate.admit({
      product: productOf(undefined),
      caller: alice,
      model: "echo-1",
      promptTokens: () => 1,
      maxOutputTokens: 1,
    });
    await expect(ticket.settle(5, 0, "req-1")).resolves.toBeUndefined();
    expect(capture.records()).toMatchObject([
      { severity: "ERROR", message: "Failed to settle a call's usage", cause: "boom", requestId: "req-1" },
    ]);
  });

  it.each([0, -1, 1.5])("rejects a default of %d when built", (value) => {
    expect(() =>
      createCallGate({
        store: createMemorySpendStore(),
        defaults: { requestsPerMinute: value, tokensPerMinute: undefined },
        logger: captureLog().logger,
      }),
    ).toThrow(/defaults.requestsPerMinute must be a positive integer/);
  });
});
