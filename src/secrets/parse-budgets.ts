import {
  childPath,
  expectKeys,
  expectObject,
  expectPositiveInteger,
  fail,
  typeName,
} from "./format-error.js";
import type { BudgetLimits, ModelPrice, ProductBudgets, ProviderConfig } from "./types.js";

const priceKeys = ["input", "cached_input", "output", "cache_write"] as const;
const budgetScopes = ["product", "caller"] as const;
const budgetKeys = ["daily_tokens", "monthly_tokens", "daily_usd", "monthly_usd"] as const;

/**
 * `prices`: model → USD per million tokens. Every model named must be one of the product's; `input` and
 * `output` are required, `cached_input` and `cache_write` default to `input`.
 */
export function parsePrices(
  value: unknown,
  models: ReadonlyMap<string, ProviderConfig>,
  path: string,
): ReadonlyMap<string, ModelPrice> {
  const object = expectObject(value, path);
  const prices = new Map<string, ModelPrice>();
  for (const model of Object.keys(object)) {
    const modelPath = childPath(path, model);
    if (!models.has(model))
      fail(modelPath, `model ${JSON.stringify(model)} is not one of the product's models`);
    const price = expectObject(object[model], modelPath);
    expectKeys(price, priceKeys, modelPath);
    const input = expectPrice(price.input, childPath(modelPath, "input"));
    prices.set(
      model,
      Object.freeze({
        input,
        cachedInput:
          price.cached_input === undefined
            ? input
            : expectPrice(price.cached_input, childPath(modelPath, "cached_input")),
        output: expectPrice(price.output, childPath(modelPath, "output")),
        cacheWrite:
          price.cache_write === undefined
            ? input
            : expectPrice(price.cache_write, childPath(modelPath, "cache_write")),
      }),
    );
  }
  return prices;
}

/**
 * `budgets`: `{product: {...}, caller: {...}}` with `daily_tokens`, `monthly_tokens` (positive integers),
 * `daily_usd`, `monthly_usd` (positive numbers). A USD cap needs a price for every model of the product:
 * an unpriced model would spend without being counted, so it is a configuration error naming the model.
 */
export function parseBudgets(
  value: unknown,
  models: ReadonlyMap<string, ProviderConfig>,
  prices: ReadonlyMap<string, ModelPrice> | undefined,
  path: string,
): ProductBudgets {
  const object = expectObject(value, path);
  expectKeys(object, budgetScopes, path);
  const budgets: { product?: BudgetLimits; caller?: BudgetLimits } = {};
  for (const scope of budgetScopes) {
    if (object[scope] === undefined) continue;
    const scopePath = childPath(path, scope);
    const limits = parseLimits(object[scope], scopePath);
    if (limits.dailyUsd !== undefined || limits.monthlyUsd !== undefined) {
      for (const model of models.keys()) {
        if (prices?.get(model) === undefined) {
          fail(
            childPath(scopePath, limits.dailyUsd !== undefined ? "daily_usd" : "monthly_usd"),
            `a USD budget needs a price for every model of the product; model ${JSON.stringify(model)} has none (add it under prices)`,
          );
        }
      }
    }
    budgets[scope] = limits;
  }
  return Object.freeze(budgets);
}

function parseLimits(value: unknown, path: string): BudgetLimits {
  const object = expectObject(value, path);
  expectKeys(object, budgetKeys, path);
  const limits: { -readonly [K in keyof BudgetLimits]: BudgetLimits[K] } = {};
  if (object.daily_tokens !== undefined)
    limits.dailyTokens = expectPositiveInteger(object.daily_tokens, childPath(path, "daily_tokens"));
  if (object.monthly_tokens !== undefined)
    limits.monthlyTokens = expectPositiveInteger(object.monthly_tokens, childPath(path, "monthly_tokens"));
  if (object.daily_usd !== undefined)
    limits.dailyUsd = expectPositiveUsd(object.daily_usd, childPath(path, "daily_usd"));
  if (object.monthly_usd !== undefined)
    limits.monthlyUsd = expectPositiveUsd(object.monthly_usd, childPath(path, "monthly_usd"));
  if (Object.keys(limits).length === 0) fail(path, `expected at least one of ${budgetKeys.join(", ")}`);
  return Object.freeze(limits);
}

function expectPrice(value: unknown, path: string): number {
  if (value === undefined) fail(path, "required");
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    fail(
      path,
      `expected a number >= 0 (USD per million tokens), got ${typeof value === "number" ? String(value) : typeName(value)}`,
    );
  }
  return value;
}

function expectPositiveUsd(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    fail(
      path,
      `expected a number > 0 (USD), got ${typeof value === "number" ? String(value) : typeName(value)}`,
    );
  }
  return value;
}
