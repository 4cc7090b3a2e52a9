import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient } from "../../src/lib/redis.js";
import { gcra, type GcraMode } from "../../src/limits/gcra.js";
import { gcraFunctionLua } from "../../src/limits/redis-script.js";
import { captureLog } from "../support/log-capture.js";
import { requireSharedRedis, sharedRedisUrl } from "./redis-support.js";

const redisUp = await requireSharedRedis();

/** One GCRA step on KEYS[1] at a fixed "now" in µs (ARGV[5]); ARGV = limit, windowMs, cost, mode. */
const gcraLua = `${gcraFunctionLua}
return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))
`;

/**
 * The Lua script and gcra.ts must make the same decisions. Both run the same operations at the same
 * instants (the script takes a fixed "now" for this test) with steps at and around the emission interval,
 * where an off-by-one shows.
 */
describe.skipIf(!redisUp)("GCRA: Lua script and TypeScript agree", () => {
  const prefix = `test:gcra:${randomUUID()}:`;
  let client: Redis;

  beforeAll(async () => {
    client = createRedisClient({ url: sharedRedisUrl, logger: captureLog().logger });
    if (client.status !== "ready") await new Promise((resolve) => client.once("ready", resolve));
  });

  afterAll(async () => {
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
    await client.quit();
  });

  it.each([
    { limit: 10, windowMs: 60_000 },
    { limit: 7, windowMs: 60_000 },
    { limit: 3, windowMs: 1_000 },
    { limit: 1, windowMs: 60_000 },
    { limit: 1_000, windowMs: 60_000 },
  ])("makes identical decisions for %o", async (policy) => {
    const interval = Math.ceil((policy.windowMs * 1000) / policy.limit);
    const steps = [0, 0, 1, interval - 1, interval, interval + 1, 3 * interval, policy.windowMs * 500];
    const costs = [0, 1, 1, 1, 2, Math.ceil(policy.limit / 2), policy.limit + 1];
    let seed = 42;
    const pick = <T>(items: readonly T[]): T => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return items[(seed >>> 8) % items.length] as T;
    };
    const key = `${prefix}${policy.limit}/${policy.windowMs}`;
    let now = 1_700_000_000_000_000;
    let stored: number | undefined;
    let refusals = 0;
    let admitted = 0;
    for (let i = 0; i < 150; i++) {
      now += pick(steps);
      const mode: GcraMode = pick(["consume", "consume", "consume", "consume", "consume", "charge"] as const);
      const cost = mode === "charge" ? pick([1, 2, Math.ceil(policy.limit / 3)]) : pick(costs);
      const expected = gcra(stored, now, policy, cost, mode);
      if (expected.newTatUs !== undefined) stored = expected.newTatUs;
      if (expected.allowed) admitted += 1;
      else refusals += 1;
      const reply = await client.eval(
        gcraLua,
        1,
        key,
        String(policy.limit),
        String(policy.windowMs),
        String(cost),
        mode,
        String(now),
      );
      expect(reply, `step ${i}: ${mode} ${cost} at +${now}`).toEqual([
        expected.allowed ? 1 : 0,
        expected.remaining,
        expected.resetMs,
        expected.retryAfterMs,
      ]);
    }
    // The walk must have hit both sides of the edge, or it proves little.
    expect(refusals).toBeGreaterThan(10);
    expect(admitted).toBeGreaterThan(10);
  });
});
