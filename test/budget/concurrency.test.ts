import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { estimatePromptTokens } from "../../src/usage/estimate.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import {
  freePort,
  killRedisServer,
  requireRedisServerBinary,
  startRedisServer,
} from "../ratelimit/redis-support.js";

// Issue item 7: three instances on one Redis of the test's own (redis-server with AOF), 60 parallel calls
// against a budget that fits 10; then a Redis restart in the middle of a run. The spend is read back from
// Redis (GetUsage) and from the access lines of the three instances.

const redisServerBinary = requireRedisServerBinary();

const canary = "sk-canary-budget-DO-NOT-LEAK-4711";
const maxTokens = 100;
const messages = [{ role: "user", content: "Summarise the quarterly spending report in three sentences." }];
const estimate = estimatePromptTokens({ messages });
/** nano-USD per token: input 1 USD and output 2 USD per million tokens. */
const inputNano = 1000;
const outputNano = 2000;
const worstNano = estimate * inputNano + maxTokens * outputNano;

function productsFor(mockUrl: string, dailyUsd: number) {
  return {
    "product-c": {
      providers: { mock: { kind: "openai-compatible", base_url: mockUrl, api_key: canary, models: ["m-1"] } },
      prices: { "m-1": { input: 1, output: 2 } },
      budgets: { product: { daily_usd: dailyUsd } },
    },
  };
}

/** The provider's answer with the usage it reports: `promptExtra` tokens more than our estimate. */
function completion(promptTokens: number, completionTokens: number) {
  return {
    id: "chatcmpl-mock",
    object: "chat.completion",
    created: 1,
    model: "m-1",
    choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}

let mock: MockProvider;
let redisDir: string;
let redisPort: number;
let redis: ChildProcess | undefined;
let apps: AppHarness[] = [];

beforeAll(async () => {
  mock = await startMockProvider();
  redisDir = await mkdtemp(join(tmpdir(), "aks-aof-"));
});

afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
  if (redis) await killRedisServer(redis);
  redis = undefined;
});

afterAll(async () => {
  await mock.close();
  await rm(redisDir, { recursive: true, force: true });
});

async function startAll(dailyUsd: number): Promise<void> {
  // A fresh AOF folder per test: a restart on it reloads this test's writes and nothing older.
  await rm(redisDir, { recursive: true, force: true });
  redisDir = await mkdtemp(join(tmpdir(), "aks-aof-"));
  redisPort = await freePort();
  redis = await startRedisServer(redisPort, { appendOnlyDir: redisDir });
  apps = await Promise.all(
    [0, 1, 2].map(() =>
      startApp({
        products: productsFor(mock.url, dailyUsd),
        env: { REDIS_URL: `redis://127.0.0.1:${redisPort}` },
      }),
    ),
  );
}

async function call(app: AppHarness, sub: string): Promise<number> {
  const res = await fetch(`${app.url}/v1/chat/product-c`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await app.token({ claims: { sub, products: ["product-c"] } })}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ model: "m-1", messages, max_tokens: maxTokens }),
  });
  const text = await res.text();
  expect(text).not.toContain(canary);
  return res.status;
}

async function usage(app: AppHarness): Promise<{ used_tokens: number; used_usd: number; limit_usd: number }> {
  const res = await fetch(`${app.url}/v1/usage/product-c`, {
    headers: { authorization: `Bearer ${await app.token({ claims: { products: ["product-c"] } })}` },
  });
  const body = (await res.json()) as {
    windows: { used_tokens: number; used_usd: number; limit_usd: number }[];
  };
  const window = body.windows[0];
  if (!window) throw new Error("no window");
  return window;
}

/** The charged calls' usage from the access lines of all instances (written once each answer ended). */
async function accessLines(expected: number): Promise<{ tokens: number; usd: number; calls: number }> {
  let lines: Record<string, unknown>[] = [];
  for (let i = 0; i < 300; i++) {
    lines = apps.flatMap((a) => a.logs.records()).filter((r) => r["costUsd"] !== undefined);
    if (lines.length >= expected) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return {
    calls: lines.length,
    tokens: lines.reduce((s, r) => s + (r["totalTokens"] as number), 0),
    usd: lines.reduce((s, r) => s + (r["costUsd"] as number), 0),
  };
}

describe.skipIf(!redisServerBinary)("budgets shared by three instances on one Redis", () => {
  it.each<[string, (i: number) => [number, number]]>([
    // The provider reports exactly the worst case: the budget fits exactly 10 calls.
    ["usage equal to the reservation", () => [estimate, maxTokens]],
    // The provider counts 3 prompt tokens more than our estimate (the estimate's error), and the answers
    // are shorter than the cap: settlements free what was reserved but not used, so more calls fit.
    ["usage off the estimate by 3 prompt tokens, shorter answers", (i) => [estimate + 3, 20 + (i % 5) * 20]],
    // The worst case for the rule: every answer uses its whole cap and every prompt is 3 tokens over the
    // estimate, so each admitted call overspends its reservation by one estimate error.
    ["usage off the estimate by 3 prompt tokens, full answers", () => [estimate + 3, maxTokens]],
  ])("60 parallel calls against a budget that fits 10: %s", async (_name, usageOf) => {
    // Slightly above 10 worst cases in USD, so float rounding cannot make it fit only 9.
    await startAll((10 * worstNano + 0.5) / 1e9);
    let n = 0;
    mock.setBehavior(
      behaviors.choose(() => {
        const [p, c] = usageOf(n++);
        return behaviors.delay(30, behaviors.json(200, completion(p, c)));
      }),
    );
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) => call(apps[i % 3] as AppHarness, `caller-${i}`)),
    );
    const admitted = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toStrictEqual([]);
    const lines = await accessLines(admitted);
    const spent = await usage(apps[0] as AppHarness);
    const budgetNano = 10 * worstNano;
    const overspendNano = Math.round(spent.used_usd * 1e9) - budgetNano;
    // One call's estimate error: the tokens the provider counted beyond the estimate, priced.
    const oneCallErrorNano = Math.max(0, (usageOf(0)[0] - estimate) * inputNano);
    console.info(
      `budget ${budgetNano} nano-USD (10 × ${worstNano}); admitted ${admitted}/60; spent ${Math.round(spent.used_usd * 1e9)} nano-USD; overspend ${overspendNano} nano-USD (${(overspendNano / worstNano).toFixed(3)} calls); one call's estimate error ${oneCallErrorNano} nano-USD`,
    );
    expect(admitted).toBeGreaterThanOrEqual(10);
    expect(lines.calls).toBe(admitted);
    // Redis holds exactly what the access lines say was spent: every settlement arrived.
    expect(spent.used_tokens).toBe(lines.tokens);
    expect(spent.used_usd).toBeCloseTo(lines.usd, 9);
    // The reservation rule: what is spent beyond the budget is at most the estimate errors of the calls
    // admitted (each reserved its worst case by the estimate); none when the estimate is not under.
    expect(overspendNano).toBeLessThanOrEqual(admitted * oneCallErrorNano);
  });

  it("a Redis restart mid-run (AOF on) loses no settled spend", async () => {
    // A budget that fits every call, so the count is what is tested.
    await startAll(1);
    mock.setBehavior(behaviors.delay(40, behaviors.json(200, completion(estimate, maxTokens))));
    const first = Array.from({ length: 30 }, (_, i) => call(apps[i % 3] as AppHarness, `r-${i}`));
    await Promise.all(first.slice(0, 10));
    await killRedisServer(redis as ChildProcess);
    // While Redis is down, calls are admitted by each instance's local fallback: never an error.
    const during = Array.from({ length: 15 }, (_, i) => call(apps[i % 3] as AppHarness, `d-${i}`));
    expect(await Promise.all(during)).toStrictEqual(Array.from({ length: 15 }, () => 200));
    redis = await startRedisServer(redisPort, { appendOnlyDir: redisDir });
    const after = Array.from({ length: 15 }, (_, i) => call(apps[i % 3] as AppHarness, `a-${i}`));
    const statuses = await Promise.all([...first, ...after]);
    expect(statuses).toStrictEqual(Array.from({ length: 45 }, () => 200));
    const lines = await accessLines(60);
    expect(lines.calls).toBe(60);
    // Each instance adds what its fallback counted once Redis answers again; wait until all three have.
    let spent = await usage(apps[0] as AppHarness);
    for (let i = 0; i < 300 && spent.used_tokens < lines.tokens; i++) {
      await Promise.all(apps.map((a) => usage(a)));
      await new Promise((resolve) => setTimeout(resolve, 10));
      spent = await usage(apps[0] as AppHarness);
    }
    console.info(
      `restart: ${lines.calls} calls, ${lines.tokens} tokens in the access lines, ${spent.used_tokens} in Redis after the restart`,
    );
    expect(spent.used_tokens).toBe(lines.tokens);
    // The calls during the outage were counted locally and added to Redis afterwards.
    const replayed = apps
      .flatMap((a) => a.logs.records())
      .filter((r) =>
        String(r["message"]).startsWith("Budgets: spend counted locally during the outage added to Redis"),
      );
    expect(replayed.length).toBeGreaterThan(0);
  });
});
