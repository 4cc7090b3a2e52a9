import { describe, expect, it } from "vitest";
import { parseProducts, SecretFormatError } from "../../src/secrets/index.js";

// `prices` and `budgets` in the product secret (docs/budgets.md): what is read, and every fault named by
// its JSON path, without quoting a key.

const apiKey = "sk-test-DO-NOT-LEAK-0123456789";
const providers = { openai: { api_key: apiKey, models: ["gpt-4o", "gpt-4o-mini"] } };

function product(extra: Record<string, unknown>) {
  return parseProducts(JSON.stringify({ p: { providers, ...extra } })).get("p");
}

function errorOf(extra: Record<string, unknown>): string {
  try {
    product(extra);
  } catch (err) {
    if (err instanceof SecretFormatError) {
      expect(err.message).not.toContain(apiKey);
      return err.message;
    }
    throw err;
  }
  throw new Error("expected a SecretFormatError");
}

const prices = {
  "gpt-4o": { input: 2.5, cached_input: 1.25, output: 10 },
  "gpt-4o-mini": { input: 0.15, output: 0.6, cache_write: 0.3 },
};

describe("prices and budgets in the product secret", () => {
  it("reads the issue's example, with cached_input and cache_write defaulting to input", () => {
    const p = product({
      prices,
      budgets: { product: { daily_usd: 50, monthly_tokens: 20_000_000 }, caller: { daily_usd: 5 } },
    });
    expect(p?.prices?.get("gpt-4o")).toStrictEqual({
      input: 2.5,
      cachedInput: 1.25,
      output: 10,
      cacheWrite: 2.5,
    });
    expect(p?.prices?.get("gpt-4o-mini")).toStrictEqual({
      input: 0.15,
      cachedInput: 0.15,
      output: 0.6,
      cacheWrite: 0.3,
    });
    expect(p?.budgets).toStrictEqual({
      product: { dailyUsd: 50, monthlyTokens: 20_000_000 },
      caller: { dailyUsd: 5 },
    });
  });

  it("a product without them has neither", () => {
    const p = product({});
    expect(p?.prices).toBeUndefined();
    expect(p?.budgets).toBeUndefined();
  });

  it("token budgets need no prices", () => {
    expect(product({ budgets: { caller: { daily_tokens: 1000 } } })?.budgets).toStrictEqual({
      caller: { dailyTokens: 1000 },
    });
  });

  it.each<[string, Record<string, unknown>, string]>([
    [
      "a USD budget with an unpriced model",
      { prices: { "gpt-4o": prices["gpt-4o"] }, budgets: { product: { daily_usd: 50 } } },
      '$.p.budgets.product.daily_usd: a USD budget needs a price for every model of the product; model "gpt-4o-mini" has none (add it under prices)',
    ],
    [
      "a monthly USD budget and no prices at all",
      { budgets: { caller: { monthly_usd: 5 } } },
      '$.p.budgets.caller.monthly_usd: a USD budget needs a price for every model of the product; model "gpt-4o" has none (add it under prices)',
    ],
    [
      "a price for a model the product does not serve",
      { prices: { "gpt-5": { input: 1, output: 2 } } },
      '$.p.prices["gpt-5"]: model "gpt-5" is not one of the product\'s models',
    ],
    [
      "a price without output",
      { prices: { "gpt-4o": { input: 1 } } },
      '$.p.prices["gpt-4o"].output: required',
    ],
    [
      "a negative price",
      { prices: { "gpt-4o": { input: -1, output: 2 } } },
      '$.p.prices["gpt-4o"].input: expected a number >= 0 (USD per million tokens), got -1',
    ],
    [
      "a price given as a string",
      { prices: { "gpt-4o": { input: "2.5", output: 2 } } },
      '$.p.prices["gpt-4o"].input: expected a number >= 0 (USD per million tokens), got a string',
    ],
    [
      "an unknown price key",
      { prices: { "gpt-4o": { input: 1, output: 2, cached: 1 } } },
      '$.p.prices["gpt-4o"].cached: unknown key (expected one of input, cached_input, output, cache_write)',
    ],
    [
      "an unknown budget scope",
      { budgets: { team: { daily_tokens: 1 } } },
      "$.p.budgets.team: unknown key (expected one of product, caller)",
    ],
    [
      "an unknown budget key",
      { budgets: { product: { weekly_tokens: 1 } } },
      "$.p.budgets.product.weekly_tokens: unknown key (expected one of daily_tokens, monthly_tokens, daily_usd, monthly_usd)",
    ],
    [
      "an empty scope",
      { budgets: { product: {} } },
      "$.p.budgets.product: expected at least one of daily_tokens, monthly_tokens, daily_usd, monthly_usd",
    ],
    [
      "a fractional token budget",
      { budgets: { product: { daily_tokens: 1.5 } } },
      "$.p.budgets.product.daily_tokens: expected a positive integer, got 1.5",
    ],
    [
      "a zero USD budget",
      { prices, budgets: { product: { daily_usd: 0 } } },
      "$.p.budgets.product.daily_usd: expected a number > 0 (USD), got 0",
    ],
  ])("rejects %s", (_case, extra, message) => {
    expect(errorOf(extra)).toBe(message);
  });
});
