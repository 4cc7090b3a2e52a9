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
import { providerKinds, type ProductConfig, type ProviderConfig, type ProviderKind } from "./types.js";

const productKeys = ["providers", "rate_limit", "max_tokens"] as const;
const providerKeys = ["kind", "api_key", "models", "base_url", "api_version"] as const;
const rateLimitKeys = ["requests_per_minute", "tokens_per_minute"] as const;

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

  return Object.freeze({
    name,
    providers: Object.freeze(providers),
    models,
    rateLimit,
    maxTokens: optional(product.max_tokens, childPath(path, "max_tokens")),
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

  const keyPath = childPath(path, "api_key");
  let apiKey: string | undefined;
  if (provider.api_key !== undefined) {
    // The key itself is never described, only its type.
    apiKey = expectString(provider.api_key, keyPath);
  } else if (kind !== "echo") {
    fail(keyPath, `required for provider kind ${JSON.stringify(kind)}`);
  }

  const urlPath = childPath(path, "base_url");
  let baseUrl: string | undefined;
  if (provider.base_url !== undefined) {
    baseUrl = parseBaseUrl(expectString(provider.base_url, urlPath), urlPath);
  } else if (needsBaseUrl.has(kind)) {
    fail(urlPath, `required for provider kind ${JSON.stringify(kind)}`);
  }

  const models = expectStringList(provider.models, childPath(path, "models"));
  const config: ProviderConfig = {
    name,
    kind,
    apiKey,
    baseUrl,
    models: Object.freeze(models),
    ...(provider.api_version === undefined
      ? {}
      : { apiVersion: expectString(provider.api_version, childPath(path, "api_version")) }),
  };
  return Object.freeze(config);
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
