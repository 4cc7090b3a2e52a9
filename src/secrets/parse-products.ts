import {
  childPath,
  expectIdentifier,
  expectKeys,
  expectObject,
  expectPositiveInteger,
  expectString,
  expectStringList,
  fail,
  parseJson,
} from "./format-error.js";
import { parseBudgets, parsePrices } from "./parse-budgets.js";
import { providerKinds, type ProductConfig, type ProviderConfig, type ProviderKind } from "./types.js";

const productKeys = ["providers", "rate_limit", "max_tokens", "prices", "budgets"] as const;
const providerKeys = [
  "kind",
  "api_key",
  "api_keys",
  "models",
  "base_url",
  "api_version",
  "deployments",
  "stream_delay_ms",
] as const;
/** The longest pause `stream_delay_ms` may ask for between two streamed pieces. */
const maxStreamDelayMs = 10_000;

const rateLimitKeys = ["requests_per_minute", "tokens_per_minute"] as const;

/** Kinds that need no key (echo has no network). */
const keyless: ReadonlySet<ProviderKind> = new Set(["echo"]);

/** Kinds that cannot work without a `base_url` (they have no public default host). */
const needsBaseUrl: ReadonlySet<ProviderKind> = new Set(["openai-compatible", "azure-openai"]);

/**
 * Validates the product secret (`openai-api-keys`) and builds the products by name. Throws
 * SecretFormatError naming the JSON path at fault; never returns a partial result.
 */
export function parseProducts(text: string): ReadonlyMap<string, ProductConfig> {
  const root = expectObject(parseJson(text), "$");
  const names = Object.keys(root);
  if (names.length === 0) fail("$", "expected at least one product");
  const products = new Map<string, ProductConfig>();
  for (const name of names) {
    const path = childPath("$", name);
    expectIdentifier(name, path, "a product name");
    products.set(name, parseProduct(name, root[name], path));
  }
  return products;
}

function parseProduct(name: string, value: unknown, path: string): ProductConfig {
  const product = expectObject(value, path);
  expectKeys(product, productKeys, path);
  const providersPath = childPath(path, "providers");
  if (product.providers === undefined) fail(providersPath, "required");
  const providersObject = expectObject(product.providers, providersPath);
  const providerNames = Object.keys(providersObject);
  if (providerNames.length === 0) fail(providersPath, "expected at least one provider");

  const providers: ProviderConfig[] = [];
  const models = new Map<string, ProviderConfig>();
  for (const providerName of providerNames) {
    const providerPath = childPath(providersPath, providerName);
    const provider = parseProvider(providerName, providersObject[providerName], providerPath);
    provider.models.forEach((model, i) => {
      const other = models.get(model);
      if (other !== undefined) {
        fail(
          childPath(childPath(providerPath, "models"), i),
          `model ${JSON.stringify(model)} is already served by provider ${JSON.stringify(other.name)}`,
        );
      }
      models.set(model, provider);
    });
    providers.push(provider);
  }

  let rateLimit: ProductConfig["rateLimit"];
  if (product.rate_limit !== undefined) {
    const rlPath = childPath(path, "rate_limit");
    const rl = expectObject(product.rate_limit, rlPath);
    expectKeys(rl, rateLimitKeys, rlPath);
    rateLimit = Object.freeze({
      requestsPerMinute: optional(rl.requests_per_minute, childPath(rlPath, "requests_per_minute")),
      tokensPerMinute: optional(rl.tokens_per_minute, childPath(rlPath, "tokens_per_minute")),
    });
  }

  const prices =
    product.prices === undefined ? undefined : parsePrices(product.prices, models, childPath(path, "prices"));
  const budgets =
    product.budgets === undefined
      ? undefined
      : parseBudgets(product.budgets, models, prices, childPath(path, "budgets"));
  return Object.freeze({
    name,
    providers: Object.freeze(providers),
    models,
    rateLimit,
    maxTokens: optional(product.max_tokens, childPath(path, "max_tokens")),
    ...(prices === undefined ? {} : { prices }),
    ...(budgets === undefined ? {} : { budgets }),
  });
}

function parseProvider(name: string, value: unknown, path: string): ProviderConfig {
  const provider = expectObject(value, path);
  expectKeys(provider, providerKeys, path);
  const kindPath = provider.kind === undefined ? path : childPath(path, "kind");
  const kindName = provider.kind === undefined ? name : expectString(provider.kind, kindPath);
  const kind = providerKinds.find((k) => k === kindName);
  if (kind === undefined) {
    fail(
      kindPath,
      `unknown provider kind ${JSON.stringify(kindName)} (expected one of ${providerKinds.join(", ")})`,
    );
  }

  // The keys themselves are never described, only their type and position.
  const keyPath = childPath(path, "api_key");
  const keysPath = childPath(path, "api_keys");
  let apiKeys: readonly string[] = [];
  if (provider.api_key !== undefined && provider.api_keys !== undefined) {
    fail(keysPath, "give either api_key or api_keys, not both");
  } else if (provider.api_key !== undefined) {
    apiKeys = [expectString(provider.api_key, keyPath)];
  } else if (provider.api_keys !== undefined) {
    apiKeys = expectStringList(provider.api_keys, keysPath, true);
  } else if (!keyless.has(kind)) {
    fail(keyPath, `required for provider kind ${JSON.stringify(kind)} (or api_keys)`);
  }

  const urlPath = childPath(path, "base_url");
  let baseUrl: string | undefined;
  if (provider.base_url !== undefined) {
    baseUrl = parseBaseUrl(expectString(provider.base_url, urlPath), urlPath);
  } else if (needsBaseUrl.has(kind)) {
    fail(urlPath, `required for provider kind ${JSON.stringify(kind)}`);
  }

  const models = expectStringList(provider.models, childPath(path, "models"));
  const versionPath = childPath(path, "api_version");
  const config: ProviderConfig = {
    name,
    kind,
    apiKeys: Object.freeze(apiKeys),
    baseUrl,
    models: Object.freeze(models),
    ...(provider.api_version === undefined
      ? {}
      : { apiVersion: expectUrlSafe(expectString(provider.api_version, versionPath), versionPath) }),
    ...(provider.deployments === undefined
      ? {}
      : {
          deployments: parseDeployments(provider.deployments, kind, models, childPath(path, "deployments")),
        }),
    ...(provider.stream_delay_ms === undefined
      ? {}
      : {
          streamDelayMs: parseStreamDelay(provider.stream_delay_ms, kind, childPath(path, "stream_delay_ms")),
        }),
  };
  return Object.freeze(config);
}

/** Azure's model → deployment map: every model named must be one of the provider's models. */
function parseDeployments(
  value: unknown,
  kind: ProviderKind,
  models: readonly string[],
  path: string,
): ReadonlyMap<string, string> {
  if (kind !== "azure-openai")
    fail(path, `only for provider kind "azure-openai", not ${JSON.stringify(kind)}`);
  const object = expectObject(value, path);
  const deployments = new Map<string, string>();
  for (const model of Object.keys(object)) {
    const modelPath = childPath(path, model);
    if (!models.includes(model)) fail(modelPath, `model ${JSON.stringify(model)} is not in models`);
    deployments.set(model, expectUrlSafe(expectString(object[model], modelPath), modelPath));
  }
  return deployments;
}

/** Echo's pause between streamed pieces, so a demo visibly streams; a real provider sets its own pace. */
function parseStreamDelay(value: unknown, kind: ProviderKind, path: string): number {
  if (kind !== "echo") fail(path, `only for provider kind "echo", not ${JSON.stringify(kind)}`);
  const ms = expectPositiveInteger(value, path);
  if (ms > maxStreamDelayMs) fail(path, `expected at most ${maxStreamDelayMs} (milliseconds), got ${ms}`);
  return ms;
}

/** Values that go into a URL path or query as they are (deployment names, API versions). */
function expectUrlSafe(value: string, path: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(value)) fail(path, "must be 1-128 letters, digits, '.', '_' or '-'");
  return value;
}

function parseBaseUrl(raw: string, path: string): string {
  const url = URL.parse(raw);
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
    fail(path, "expected an http:// or https:// URL");
  }
  // Credentials in the URL would end up in logs of the request line; keys belong in api_key.
  if (url.username !== "" || url.password !== "") fail(path, "must not contain credentials");
  if (url.search !== "" || url.hash !== "") fail(path, "must not contain a query or fragment");
  return url.href.replace(/\/+$/, "");
}

function optional(value: unknown, path: string): number | undefined {
  return value === undefined ? undefined : expectPositiveInteger(value, path);
}
