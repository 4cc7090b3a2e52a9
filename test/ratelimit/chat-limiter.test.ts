import { describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { createChatLimiter, createMemoryLimiter, type RateLimiter } from "../../src/limits/index.js";
import { captureLog } from "../support/log-capture.js";

const alice = { kind: "jwt", id: "alice" } as const;
const bob = { kind: "jwt", id: "bob" } as const;
const hmacAlice = { kind: "hmac", id: "alice" } as const;
const limited = { name: "dev", rateLimit: { requestsPerMinute: 2, tokensPerMinute: 100 } };
const other = { name: "other", rateLimit: { requestsPerMinute: 2, tokensPerMinute: undefined } };
const unconfigured = { name: "plain", rateLimit: undefined };

function setup(defaults: { requestsPerMinute: number | undefined; tokensPerMinute: number | undefined }) {
  let t = 1_700_000_000_000;
  const log = captureLog();
  const chat = createChatLimiter({
    limiter: createMemoryLimiter({ now: () => t }),
    defaults,
    logger: log.logger,
  });
  return { chat, log, advance: (ms: number) => void (t += ms) };
}

async function refusal(promise: Promise<void>): Promise<AppError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof AppError)) throw new Error(`expected an AppError, got ${String(err)}`);
  return err;
}

describe("chat limiter", () => {
  it("admits the product's requests per minute, then throws rate_limited with headers and retry delay", async () => {
    const { chat, advance } = setup({ requestsPerMinute: 50, tokensPerMinute: undefined });
    await chat.admit(limited, alice);
    await chat.admit(limited, alice);
    const err = await refusal(chat.admit(limited, alice));
    expect(err.code).toBe("rate_limited");
    expect(err.retryAfterMs).toBe(30_000);
    expect(err.headers).toEqual({
      "RateLimit-Limit": "2",
      "RateLimit-Remaining": "0",
      "RateLimit-Reset": "60",
      "Retry-After": "30",
    });
    advance(30_000);
    await chat.admit(limited, alice);
  });

  it("a caller over its limit does not affect another caller, another caller kind, or another product", async () => {
    const { chat } = setup({ requestsPerMinute: 50, tokensPerMinute: undefined });
    await chat.admit(limited, alice);
    await chat.admit(limited, alice);
    expect((await refusal(chat.admit(limited, alice))).code).toBe("rate_limited");
    await chat.admit(limited, bob);
    await chat.admit(limited, hmacAlice);
    await chat.admit(other, alice);
  });

  it("uses the default for a product without rate_limit, and no limit when there is no default", async () => {
    const withDefault = setup({ requestsPerMinute: 1, tokensPerMinute: undefined });
    await withDefault.chat.admit(unconfigured, alice);
    expect((await refusal(withDefault.chat.admit(unconfigured, alice))).code).toBe("rate_limited");

    const noDefault = setup({ requestsPerMinute: undefined, tokensPerMinute: undefined });
    for (let i = 0; i < 100; i++) await noDefault.chat.admit(unconfigured, alice);
  });

  it("refuses once charged tokens exhaust tokens per minute, without spending a request", async () => {
    const { chat, advance } = setup({ requestsPerMinute: undefined, tokensPerMinute: undefined });
    await chat.charge(limited, alice, 150); // 50 over a budget of 100/min = 30 s, +0.6 s for one token
    for (let i = 0; i < 3; i++) {
      const err = await refusal(chat.admit(limited, alice));
      expect(err.retryAfterMs).toBe(30_600);
      expect(err.headers?.["RateLimit-Limit"]).toBe("100");
    }
    advance(30_600);
    // Both requests of 2/min are still there: had the three refusals spent requests, none would be.
    await chat.admit(limited, alice);
    await chat.admit(limited, alice);
    expect((await refusal(chat.admit(limited, alice))).headers?.["RateLimit-Limit"]).toBe("2");
    await chat.admit(limited, bob); // bob's tokens are his own
  });

  it("ignores a charge of zero tokens or on a product without a token limit", async () => {
    const { chat } = setup({ requestsPerMinute: undefined, tokensPerMinute: undefined });
    await chat.charge(other, alice, 1_000_000);
    await chat.charge(limited, alice, 0);
    await chat.admit(other, alice);
    await chat.admit(limited, alice);
  });

  it("never throws from charge, and logs the failure", async () => {
    const log = captureLog();
    const broken: RateLimiter = {
      consume: () => Promise.reject(new Error("boom")),
      charge: () => Promise.reject(new Error("boom")),
      close: () => Promise.resolve(),
    };
    const chat = createChatLimiter({
      limiter: broken,
      defaults: { requestsPerMinute: undefined, tokensPerMinute: 10 },
      logger: log.logger,
    });
    await expect(chat.charge(unconfigured, alice, 5)).resolves.toBeUndefined();
    expect(log.records()).toMatchObject([
      { severity: "ERROR", message: "Failed to charge token usage", cause: "boom" },
    ]);
  });

  it.each([0, -1, 1.5])("rejects a default of %d when built", (value) => {
    expect(() =>
      createChatLimiter({
        limiter: createMemoryLimiter(),
        defaults: { requestsPerMinute: value, tokensPerMinute: undefined },
        logger: captureLog().logger,
      }),
    ).toThrow(/defaults.requestsPerMinute must be a positive integer/);
  });
});
