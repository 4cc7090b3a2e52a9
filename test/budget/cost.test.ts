import { describe, expect, it } from "vitest";
import { costNanoUsd, toUsd, worstCaseNanoUsd } from "../../src/usage/cost.js";

// The cost of a call from the providers' usage breakdown (src/usage/cost.ts), in nano-USD.

const gpt4o = { input: 2.5, cachedInput: 1.25, output: 10, cacheWrite: 3.75 };

describe("costNanoUsd", () => {
  it.each<[string, Parameters<typeof costNanoUsd>[1], number]>([
    ["plain input and output", { promptTokens: 1000, completionTokens: 100, totalTokens: 1100 }, 0.0035],
    [
      "cached input at cached_input (prompt_tokens includes it)",
      { promptTokens: 1000, completionTokens: 100, totalTokens: 1100, cachedInputTokens: 400 },
      // 600 × 2.5 + 400 × 1.25 + 100 × 10, per million
      0.003,
    ],
    [
      "cache writes at cache_write",
      { promptTokens: 1000, completionTokens: 0, totalTokens: 1000, cacheWriteTokens: 1000 },
      0.00375,
    ],
    [
      "reasoning tokens are output tokens (completion includes them)",
      { promptTokens: 0, completionTokens: 1000, totalTokens: 1000, reasoningTokens: 900 },
      0.01,
    ],
    ["nothing", { promptTokens: 0, completionTokens: 0, totalTokens: 0 }, 0],
  ])("%s", (_case, usage, usd) => {
    expect(toUsd(costNanoUsd(gpt4o, usage))).toBeCloseTo(usd, 12);
  });

  it("a cheap model's single token still counts (nano-USD, rounded up)", () => {
    expect(
      costNanoUsd(
        { input: 0.15, cachedInput: 0.15, output: 0.6, cacheWrite: 0.15 },
        {
          promptTokens: 1,
          completionTokens: 0,
          totalTokens: 1,
        },
      ),
    ).toBe(150);
  });

  it("the worst case prices the prompt estimate at input and the output cap at output", () => {
    expect(toUsd(worstCaseNanoUsd(gpt4o, 1000, 500))).toBeCloseTo(0.0075, 12);
  });
});
