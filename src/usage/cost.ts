import type { ModelPrice } from "../secrets/types.js";
import type { TokenUsage } from "../upstream/types.js";

/**
 * Spend is counted in integer nano-USD (1e-9 USD) wherever it is added up (budgets, Redis counters), so
 * sums are exact and a Redis `HINCRBY` can hold them; a cheap model's few tokens still count.
 */
export const nanoUsdPerUsd = 1_000_000_000;

/** nano-USD per token at a price in USD per million tokens. */
const nanoPerTokenAt = (usdPerMillion: number) => usdPerMillion * 1000;

/**
 * The cost of one call in nano-USD: prompt tokens at `input` except those read from the provider's cache
 * (`cached_input`) and those written to it (`cache_write`) (`promptTokens` includes both, see
 * src/upstream/types.ts), plus completion tokens (reasoning and audio included) at `output`. Rounded up.
 */
export function costNanoUsd(price: ModelPrice, usage: TokenUsage): number {
  const cached = Math.max(0, usage.cachedInputTokens ?? 0);
  const written = Math.max(0, usage.cacheWriteTokens ?? 0);
  const plain = Math.max(0, usage.promptTokens - cached - written);
  return Math.ceil(
    plain * nanoPerTokenAt(price.input) +
      cached * nanoPerTokenAt(price.cachedInput) +
      written * nanoPerTokenAt(price.cacheWrite) +
      Math.max(0, usage.completionTokens) * nanoPerTokenAt(price.output),
  );
}

/** The most a call can cost before it runs: its prompt estimate at `input`, its output cap at `output`. */
export function worstCaseNanoUsd(price: ModelPrice, promptTokens: number, maxOutputTokens: number): number {
  return Math.ceil(
    promptTokens * nanoPerTokenAt(price.input) + maxOutputTokens * nanoPerTokenAt(price.output),
  );
}

/** nano-USD as USD, for the access line, metrics and GetUsage. */
export function toUsd(nanoUsd: number): number {
  return nanoUsd / nanoUsdPerUsd;
}

/** A USD amount (a budget) in nano-USD, rounded down. */
export function toNanoUsd(usd: number): number {
  return Math.floor(usd * nanoUsdPerUsd);
}
