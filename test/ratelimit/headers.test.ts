import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AppError, httpStatusOf, toConnectError } from "../../src/errors/index.js";
import {
  createMemoryLimiter,
  rateLimitHeaders,
  rateLimitHeaderNames,
  rateLimitKey,
  toRateLimitError,
} from "../../src/limits/index.js";

const policy = { limit: 10, windowMs: 60_000 };

describe("rateLimitHeaders", () => {
  it("sends RateLimit-Limit/-Remaining/-Reset on an admitted request and no Retry-After", () => {
    const headers = rateLimitHeaders(
      { allowed: true, limit: 10, remaining: 9, resetMs: 6_000, retryAfterMs: 0, source: "memory" },
      policy,
    );
    expect(headers).toEqual({ "RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "6" });
  });

  it.each([
    [6_000, "6"],
    [8_572, "9"],
    [1, "1"],
    [0, "1"],
  ])("rounds a retry delay of %i ms up to Retry-After %s seconds", (retryAfterMs, seconds) => {
    const headers = rateLimitHeaders(
      { allowed: false, limit: 10, remaining: 0, resetMs: 60_001, retryAfterMs, source: "redis" },
      policy,
    );
    expect(headers).toEqual({
      "RateLimit-Limit": "10",
      "RateLimit-Remaining": "0",
      "RateLimit-Reset": "61",
      "Retry-After": seconds,
    });
  });
});

describe("toRateLimitError", () => {
  it("becomes 429 / RESOURCE_EXHAUSTED `Rate limit exceeded` with RetryInfo and the headers as metadata", async () => {
    const limiter = createMemoryLimiter({ now: () => 0 });
    const p = { limit: 1, windowMs: 1_500 };
    await limiter.consume("k", p);
    const refused = await limiter.consume("k", p);
    const err = toRateLimitError(refused, p, "requests_per_minute");
    expect(err).toBeInstanceOf(AppError);
    expect(err.code).toBe("rate_limited");
    expect(httpStatusOf(err.code)).toBe(429);

    const wire = toConnectError(err);
    expect(wire.code).toBe(Code.ResourceExhausted);
    expect(wire.rawMessage).toBe("Rate limit exceeded");
    const [retry] = wire.findDetails(RetryInfoSchema);
    expect(retry?.retryDelay).toMatchObject({ seconds: 1n, nanos: 500_000_000 });
    expect(wire.metadata.get("retry-after")).toBe("2");
    expect(wire.metadata.get("ratelimit-limit")).toBe("1");
    expect(wire.metadata.get("ratelimit-remaining")).toBe("0");
  });
});

describe("rateLimitKey", () => {
  it("encodes each part so ':' in ids cannot make two callers share a key", () => {
    const a = rateLimitKey("p", { kind: "jwt", id: "a:b" }, "requests");
    const b = rateLimitKey("p:a", { kind: "jwt", id: "b" }, "requests");
    expect(a).toBe("rl:p:jwt:a%3Ab:requests");
    expect(b).toBe("rl:p%3Aa:jwt:b:requests");
    expect(rateLimitKey("p", { kind: "hmac", id: "a:b" }, "tokens")).toBe("rl:p:hmac:a%3Ab:tokens");
  });
});

describe("rateLimitHeaderNames", () => {
  it("lists every header rateLimitHeaders can set (for CORS expose)", () => {
    const refused = rateLimitHeaders(
      { allowed: false, limit: 1, remaining: 0, resetMs: 1, retryAfterMs: 1, source: "memory" },
      policy,
    );
    expect(Object.keys(refused).sort()).toEqual([...rateLimitHeaderNames].sort());
  });
});
