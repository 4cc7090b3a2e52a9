import { describe, expect, it } from "vitest";
import { createMemoryLimiter } from "../../src/limits/index.js";

function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

describe("memory limiter (GCRA)", () => {
  it.each([
    // limit, retry delay = emission interval, full reset; 60 s / 7 rounds up to 8_571_429 µs per unit.
    [10, 6_000, 60_000],
    [7, 8_572, 60_001],
    [1, 60_000, 60_000],
  ])(
    "admits a burst of exactly %i per minute, then refuses with a retry delay of %i ms",
    async (limit, retry, reset) => {
      const clock = fakeClock();
      const limiter = createMemoryLimiter({ now: clock.now });
      const policy = { limit, windowMs: 60_000 };
      for (let i = 0; i < limit; i++) {
        const r = await limiter.consume("k", policy);
        expect(r).toMatchObject({
          allowed: true,
          remaining: limit - 1 - i,
          retryAfterMs: 0,
          source: "memory",
        });
      }
      const refused = await limiter.consume("k", policy);
      expect(refused).toEqual({
        allowed: false,
        limit,
        remaining: 0,
        resetMs: reset,
        retryAfterMs: retry,
        source: "memory",
      });
      clock.advance(retry - 1);
      expect((await limiter.consume("k", policy)).allowed).toBe(false);
      clock.advance(1);
      expect(await limiter.consume("k", policy)).toMatchObject({ allowed: true, remaining: 0 });
      expect((await limiter.consume("k", policy)).allowed).toBe(false);
    },
  );

  it("replenishes fully after the window and a refusal charges nothing", async () => {
    const clock = fakeClock();
    const limiter = createMemoryLimiter({ now: clock.now });
    const policy = { limit: 4, windowMs: 1_000 };
    for (let i = 0; i < 4; i++) await limiter.consume("k", policy);
    for (let i = 0; i < 5; i++) expect((await limiter.consume("k", policy)).allowed).toBe(false);
    clock.advance(1_000);
    const r = await limiter.consume("k", policy);
    expect(r).toMatchObject({ allowed: true, remaining: 3 });
  });

  it("keeps keys independent", async () => {
    const limiter = createMemoryLimiter({ now: fakeClock().now });
    const policy = { limit: 1, windowMs: 60_000 };
    expect((await limiter.consume("a", policy)).allowed).toBe(true);
    expect((await limiter.consume("a", policy)).allowed).toBe(false);
    expect((await limiter.consume("b", policy)).allowed).toBe(true);
  });

  it("checks with cost 0 without charging, and charge() runs into debt that delays later requests", async () => {
    const clock = fakeClock();
    const limiter = createMemoryLimiter({ now: clock.now });
    const tokens = { limit: 1_000, windowMs: 60_000 };
    expect(await limiter.consume("t", tokens, 0)).toMatchObject({
      allowed: true,
      remaining: 1_000,
      resetMs: 0,
    });
    expect(await limiter.consume("t", tokens, 0)).toMatchObject({ allowed: true, remaining: 1_000 });
    // 1 token = 60 ms; 1500 tokens spent is 500 over budget = 30 s of debt, plus 60 ms for the next token.
    const charged = await limiter.charge("t", tokens, 1_500);
    expect(charged).toMatchObject({ allowed: false, remaining: 0, resetMs: 90_000, retryAfterMs: 30_060 });
    expect(await limiter.consume("t", tokens, 0)).toMatchObject({ allowed: false, retryAfterMs: 30_060 });
    clock.advance(30_059);
    expect((await limiter.consume("t", tokens, 0)).allowed).toBe(false);
    clock.advance(1);
    expect(await limiter.consume("t", tokens, 0)).toMatchObject({ allowed: true, remaining: 1 });
  });

  it("refuses a cost larger than what is left, without charging it", async () => {
    const limiter = createMemoryLimiter({ now: fakeClock().now });
    const policy = { limit: 10, windowMs: 10_000 };
    await limiter.consume("k", policy, 8);
    expect(await limiter.consume("k", policy, 3)).toMatchObject({
      allowed: false,
      remaining: 2,
      retryAfterMs: 1_000,
    });
    expect(await limiter.consume("k", policy, 2)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("drops the least recently used key beyond maxKeys", async () => {
    const limiter = createMemoryLimiter({ now: fakeClock().now, maxKeys: 2 });
    const policy = { limit: 1, windowMs: 60_000 };
    await limiter.consume("a", policy);
    await limiter.consume("b", policy);
    await limiter.consume("c", policy); // evicts "a"
    expect((await limiter.consume("a", policy)).allowed).toBe(true); // forgotten, so fresh (evicts "b")
    expect((await limiter.consume("c", policy)).allowed).toBe(false);
  });

  it.each([
    [{ limit: 0, windowMs: 1_000 }, 1, /limit must be a positive integer/],
    [{ limit: 1.5, windowMs: 1_000 }, 1, /limit must be a positive integer/],
    [{ limit: 1, windowMs: 0 }, 1, /windowMs must be a positive integer/],
    [{ limit: 1, windowMs: 1_000 }, -1, /cost must be a finite number >= 0/],
    [{ limit: 1, windowMs: 1_000 }, Number.NaN, /cost must be a finite number >= 0/],
  ])("rejects an invalid policy or cost %o / %d with a TypeError", async (policy, cost, message) => {
    const limiter = createMemoryLimiter();
    await expect(limiter.consume("k", policy, cost)).rejects.toThrow(message);
    await expect(limiter.charge("k", policy, cost)).rejects.toThrow(TypeError);
  });

  it("rejects a bad maxKeys when built", () => {
    expect(() => createMemoryLimiter({ maxKeys: 0 })).toThrow(/maxKeys must be a positive integer/);
  });
});
