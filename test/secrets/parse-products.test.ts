import { describe, expect, it } from "vitest";
import { parseProducts, SecretFormatError } from "../../src/secrets/index.js";

const apiKey = "sk-test-DO-NOT-LEAK-0123456789";

function errorOf(doc: unknown): SecretFormatError {
  try {
    parseProducts(typeof doc === "string" ? doc : JSON.stringify(doc));
  } catch (err) {
    if (err instanceof SecretFormatError) return err;
    throw err;
  }
  throw new Error("expected a SecretFormatError");
}

describe("parseProducts", () => {
  it("reads the runbook's example", () => {
    const products = parseProducts(
      JSON.stringify({
        "product-dev": { providers: { openai: { api_key: apiKey, models: ["gpt-4o", "gpt-4o-mini"] } } },
      }),
    );
    const product = products.get("product-dev");
    expect(product).toEqual({
      name: "product-dev",
      providers: [
        {
          name: "openai",
          kind: "openai",
          apiKeys: [apiKey],
          baseUrl: undefined,
          models: ["gpt-4o", "gpt-4o-mini"],
        },
      ],
      models: expect.any(Map) as unknown,
      rateLimit: undefined,
      maxTokens: undefined,
    });
    expect(product?.models.get("gpt-4o-mini")).toBe(product?.providers[0]);
    expect(Object.isFrozen(product)).toBe(true);
    expect(Object.isFrozen(product?.providers[0])).toBe(true);
  });

  it("reads several providers, kinds, base URLs, limits and caps", () => {
    const products = parseProducts(
      JSON.stringify({
        "product-a": {
          providers: {
            openai: { api_key: apiKey, models: ["gpt-4o"], base_url: "http://127.0.0.1:9999/v1/" },
            groq: {
              kind: "openai-compatible",
              api_key: "gsk-x",
              base_url: "https://api.groq.com/openai/v1",
              models: ["llama-3"],
            },
            azure: {
              kind: "azure-openai",
              api_key: "az",
              base_url: "https://x.openai.azure.com",
              api_version: "2024-10-21",
              models: ["gpt-4o-azure"],
            },
            echo: { models: ["echo-1"] },
          },
          rate_limit: { requests_per_minute: 60, tokens_per_minute: 100000 },
          max_tokens: 4096,
        },
        b: { providers: { echo: { models: ["gpt-4o"] } } },
      }),
    );
    const a = products.get("product-a");
    expect(a?.rateLimit).toEqual({ requestsPerMinute: 60, tokensPerMinute: 100000 });
    expect(a?.maxTokens).toBe(4096);
    expect(a?.models.get("gpt-4o")?.baseUrl).toBe("http://127.0.0.1:9999/v1");
    expect(a?.models.get("llama-3")).toMatchObject({ name: "groq", kind: "openai-compatible" });
    expect(a?.models.get("gpt-4o-azure")).toMatchObject({ kind: "azure-openai", apiVersion: "2024-10-21" });
    expect(a?.models.get("echo-1")).toMatchObject({ kind: "echo", apiKeys: [] });
    // The same model in two different products is fine.
    expect(products.get("b")?.models.get("gpt-4o")?.kind).toBe("echo");
  });

  it.each([
    ["not JSON", "{", "$: not valid JSON at line 1, column 2"],
    ["not JSON on line 3", '{\n  "a": {\n    "providers": x\n}', "$: not valid JSON at line 3, column 18"],
    ["an array", [], "$: expected an object, got an array"],
    ["no products", {}, "$: expected at least one product"],
    [
      "a bad product name",
      { "a b": { providers: { echo: { models: ["m"] } } } },
      "$[\"a b\"]: a product name must be 1-128 letters, digits, '.', '_' or '-'",
    ],
    ["a product that is not an object", { p: 1 }, "$.p: expected an object, got a number"],
    ["no providers", { p: {} }, "$.p.providers: required"],
    ["empty providers", { p: { providers: {} } }, "$.p.providers: expected at least one provider"],
    [
      "an unknown product key",
      { p: { providers: { echo: { models: ["m"] } }, max_token: 5 } },
      "$.p.max_token: unknown key (expected one of providers, rate_limit, max_tokens, prices, budgets)",
    ],
    [
      "an unknown provider key",
      { "product-dev": { providers: { openai: { api_key: apiKey, models: ["m"], base_ur: "http://x" } } } },
      '$["product-dev"].providers.openai.base_ur: unknown key (expected one of kind, api_key, api_keys, models, base_url, api_version, deployments, stream_delay_ms)',
    ],
    [
      "an unknown provider name without kind",
      { "product-dev": { providers: { foo: { api_key: apiKey, models: ["m"] } } } },
      '$["product-dev"].providers.foo: unknown provider kind "foo" (expected one of openai, azure-openai, anthropic, gemini, openai-compatible, echo)',
    ],
    [
      "an unknown kind",
      { "product-dev": { providers: { foo: { kind: "bar", api_key: apiKey, models: ["m"] } } } },
      '$["product-dev"].providers.foo.kind: unknown provider kind "bar" (expected one of openai, azure-openai, anthropic, gemini, openai-compatible, echo)',
    ],
    [
      "a missing api_key",
      { p: { providers: { openai: { models: ["m"] } } } },
      '$.p.providers.openai.api_key: required for provider kind "openai" (or api_keys)',
    ],
    [
      "an empty api_key",
      { p: { providers: { openai: { api_key: "", models: ["m"] } } } },
      "$.p.providers.openai.api_key: expected a non-empty string, got a string",
    ],
    [
      "a numeric api_key",
      { p: { providers: { openai: { api_key: 12345, models: ["m"] } } } },
      "$.p.providers.openai.api_key: expected a non-empty string, got a number",
    ],
    [
      "openai-compatible without base_url",
      { p: { providers: { groq: { kind: "openai-compatible", api_key: apiKey, models: ["m"] } } } },
      '$.p.providers.groq.base_url: required for provider kind "openai-compatible"',
    ],
    [
      "a non-http base_url",
      { p: { providers: { openai: { api_key: apiKey, models: ["m"], base_url: "ftp://x" } } } },
      "$.p.providers.openai.base_url: expected an http:// or https:// URL",
    ],
    [
      "a base_url that is no URL",
      { p: { providers: { openai: { api_key: apiKey, models: ["m"], base_url: "localhost:8080" } } } },
      "$.p.providers.openai.base_url: expected an http:// or https:// URL",
    ],
    [
      "a base_url with credentials",
      { p: { providers: { openai: { api_key: apiKey, models: ["m"], base_url: "https://u:pw@x" } } } },
      "$.p.providers.openai.base_url: must not contain credentials",
    ],
    ["no models", { p: { providers: { echo: {} } } }, "$.p.providers.echo.models: required"],
    [
      "empty models",
      { p: { providers: { echo: { models: [] } } } },
      "$.p.providers.echo.models: expected a non-empty array of strings, got an empty array",
    ],
    [
      "a non-string model",
      { p: { providers: { echo: { models: ["a", 3] } } } },
      "$.p.providers.echo.models[1]: expected a non-empty string, got a number",
    ],
    [
      "a duplicate model in one provider",
      { p: { providers: { echo: { models: ["a", "a"] } } } },
      '$.p.providers.echo.models[1]: duplicate "a"',
    ],
    [
      "a model under two providers of one product",
      {
        p: {
          providers: { openai: { api_key: apiKey, models: ["x", "gpt-4o"] }, echo: { models: ["gpt-4o"] } },
        },
      },
      '$.p.providers.echo.models[0]: model "gpt-4o" is already served by provider "openai"',
    ],
    [
      "a bad max_tokens",
      { p: { providers: { echo: { models: ["m"] } }, max_tokens: 0 } },
      "$.p.max_tokens: expected a positive integer, got 0",
    ],
    [
      "a string rate limit",
      { p: { providers: { echo: { models: ["m"] } }, rate_limit: { requests_per_minute: "60" } } },
      "$.p.rate_limit.requests_per_minute: expected a positive integer, got a string",
    ],
    [
      "both api_key and api_keys",
      { p: { providers: { openai: { api_key: apiKey, api_keys: [apiKey], models: ["m"] } } } },
      "$.p.providers.openai.api_keys: give either api_key or api_keys, not both",
    ],
    [
      "an empty api_keys",
      { p: { providers: { openai: { api_keys: [], models: ["m"] } } } },
      "$.p.providers.openai.api_keys: expected a non-empty array of strings, got an empty array",
    ],
    [
      "a duplicate key in api_keys (never quoted)",
      { p: { providers: { openai: { api_keys: [apiKey, apiKey], models: ["m"] } } } },
      "$.p.providers.openai.api_keys[1]: duplicate value",
    ],
    [
      "an empty key in api_keys",
      { p: { providers: { openai: { api_keys: [apiKey, ""], models: ["m"] } } } },
      "$.p.providers.openai.api_keys[1]: expected a non-empty string, got a string",
    ],
    [
      "stream_delay_ms on a kind other than echo",
      { p: { providers: { openai: { api_key: apiKey, models: ["m"], stream_delay_ms: 50 } } } },
      '$.p.providers.openai.stream_delay_ms: only for provider kind "echo", not "openai"',
    ],
    [
      "a stream_delay_ms that is not a positive integer",
      { p: { providers: { echo: { models: ["m"], stream_delay_ms: "50" } } } },
      "$.p.providers.echo.stream_delay_ms: expected a positive integer, got a string",
    ],
    [
      "a zero stream_delay_ms",
      { p: { providers: { echo: { models: ["m"], stream_delay_ms: 0 } } } },
      "$.p.providers.echo.stream_delay_ms: expected a positive integer, got 0",
    ],
    [
      "a stream_delay_ms above 10 s",
      { p: { providers: { echo: { models: ["m"], stream_delay_ms: 10_001 } } } },
      "$.p.providers.echo.stream_delay_ms: expected at most 10000 (milliseconds), got 10001",
    ],
    [
      "deployments on a kind other than azure-openai",
      { p: { providers: { openai: { api_key: apiKey, models: ["m"], deployments: { m: "d" } } } } },
      '$.p.providers.openai.deployments: only for provider kind "azure-openai", not "openai"',
    ],
    [
      "a deployment for a model not in models",
      {
        p: {
          providers: {
            az: {
              kind: "azure-openai",
              api_key: apiKey,
              base_url: "https://x",
              models: ["m"],
              deployments: { n: "d" },
            },
          },
        },
      },
      '$.p.providers.az.deployments.n: model "n" is not in models',
    ],
    [
      "a deployment name that cannot go into a URL path",
      {
        p: {
          providers: {
            az: {
              kind: "azure-openai",
              api_key: apiKey,
              base_url: "https://x",
              models: ["m"],
              deployments: { m: "a/b" },
            },
          },
        },
      },
      "$.p.providers.az.deployments.m: must be 1-128 letters, digits, '.', '_' or '-'",
    ],
    [
      "an api_version that cannot go into a query",
      { p: { providers: { anthropic: { api_key: apiKey, models: ["m"], api_version: "2023&x=1" } } } },
      "$.p.providers.anthropic.api_version: must be 1-128 letters, digits, '.', '_' or '-'",
    ],
    [
      "an unknown rate limit key",
      { p: { providers: { echo: { models: ["m"] } }, rate_limit: { rpm: 60 } } },
      "$.p.rate_limit.rpm: unknown key (expected one of requests_per_minute, tokens_per_minute)",
    ],
  ])("rejects %s with the JSON path at fault", (_case, doc, message) => {
    const err = errorOf(doc);
    expect(err.message).toBe(message);
    expect(err.message).not.toContain(apiKey);
  });

  it("reads a key pool (api_keys) and an Azure deployment map", () => {
    const products = parseProducts(
      JSON.stringify({
        p: {
          providers: {
            anthropic: { api_keys: ["k-1", "k-2", "k-3"], models: ["claude-sonnet-4-5"] },
            azure: {
              kind: "azure-openai",
              api_key: "az-key",
              base_url: "https://x.openai.azure.com",
              models: ["gpt-4o", "gpt-4o-mini"],
              deployments: { "gpt-4o": "prod-gpt4o" },
            },
          },
        },
      }),
    );
    const [anthropic, azure] = products.get("p")?.providers ?? [];
    expect(anthropic?.apiKeys).toStrictEqual(["k-1", "k-2", "k-3"]);
    expect(Object.isFrozen(anthropic?.apiKeys)).toBe(true);
    expect(azure?.apiKeys).toStrictEqual(["az-key"]);
    expect(azure?.deployments).toStrictEqual(new Map([["gpt-4o", "prod-gpt4o"]]));
  });

  it("reads echo's stream_delay_ms, absent unless given", () => {
    const products = parseProducts(
      JSON.stringify({
        paced: { providers: { echo: { models: ["echo-1"], stream_delay_ms: 40 } } },
        plain: { providers: { echo: { models: ["echo-1"] } } },
      }),
    );
    expect(products.get("paced")?.providers[0]?.streamDelayMs).toBe(40);
    expect(products.get("plain")?.providers[0]).not.toHaveProperty("streamDelayMs");
  });

  it("rejects a whole document for one bad product (nothing half-applied)", () => {
    expect(() =>
      parseProducts(
        JSON.stringify({
          good: { providers: { echo: { models: ["m"] } } },
          bad: { providers: { nope: {} } },
        }),
      ),
    ).toThrow(SecretFormatError);
  });
});
