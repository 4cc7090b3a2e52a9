import type { JSONWebKeySet } from "jose";

/** Provider kinds (docs/config.md). A provider entry's kind is its `kind` field, or else its key in `providers`. */
export const providerKinds = [
  "openai",
  "azure-openai",
  "anthropic",
  "gemini",
  "openai-compatible",
  "echo",
] as const;
export type ProviderKind = (typeof providerKinds)[number];

/** One provider of a product, as validated from the product secret. */
export interface ProviderConfig {
  /** The key under `providers` (also the kind unless `kind` is given). */
  readonly name: string;
  readonly kind: ProviderKind;
  /**
   * The provider API keys (`api_keys`, or the single `api_key`), in order; empty only for kinds that need
   * none (echo, keyless openai-compatible hosts). Never log or return them: logs name a key by its index.
   */
  readonly apiKeys: readonly string[];
  /** Base URL override (`base_url`), without a trailing slash. */
  readonly baseUrl: string | undefined;
  readonly models: readonly string[];
  /** `api_version` (Azure OpenAI's `api-version`, Anthropic's version header); absent when not configured. */
  readonly apiVersion?: string;
  /** Azure OpenAI: model → deployment name (`deployments`); a model not listed is its own deployment name. */
  readonly deployments?: ReadonlyMap<string, string>;
  /** Echo only: pause before each streamed piece (`stream_delay_ms`), so a stream visibly streams; absent: none. */
  readonly streamDelayMs?: number;
}

/** Per-product rate limit (`rate_limit` in the product secret). */
export interface ProductRateLimit {
  readonly requestsPerMinute: number | undefined;
  readonly tokensPerMinute: number | undefined;
}

/** One product, as validated from the product secret. */
export interface ProductConfig {
  readonly name: string;
  readonly providers: readonly ProviderConfig[];
  /** Every model of the product to the one provider that serves it. */
  readonly models: ReadonlyMap<string, ProviderConfig>;
  readonly rateLimit: ProductRateLimit | undefined;
  /** A product cap on output tokens, lower than the global one (`max_tokens`). */
  readonly maxTokens: number | undefined;
  /** Prices by model (`prices`), USD per million tokens; absent or empty: calls are not priced. */
  readonly prices?: ReadonlyMap<string, ModelPrice>;
  /** Spend caps (`budgets`, docs/budgets.md); absent: none. */
  readonly budgets?: ProductBudgets;
}

/** One model's price in USD per million tokens (`prices.<model>`). */
export interface ModelPrice {
  readonly input: number;
  /** Input read from the provider's prompt cache (`cached_input`); default: `input`. */
  readonly cachedInput: number;
  readonly output: number;
  /** Input written to the provider's prompt cache (`cache_write`); default: `input`. */
  readonly cacheWrite: number;
}

/** The caps of one scope per UTC calendar day and month; an absent key is no cap. */
export interface BudgetLimits {
  readonly dailyTokens?: number;
  readonly monthlyTokens?: number;
  readonly dailyUsd?: number;
  readonly monthlyUsd?: number;
}

/** `budgets`: `product` caps the product as a whole, `caller` each caller (JWT `sub`, HMAC key id) within it. */
export interface ProductBudgets {
  readonly product?: BudgetLimits;
  readonly caller?: BudgetLimits;
}

/** The `hmac-secrets` entry of one key id. */
export interface HmacKey {
  readonly keyId: string;
  /** The shared secret, as UTF-8 bytes of the configured string. Never log or return it. */
  readonly secret: Uint8Array;
  /** Products this key may use; "*" for all. */
  readonly products: readonly string[] | "*";
}

/**
 * One consistent set of secrets. A refresh builds a whole new `Secrets` and swaps it in at once, so a
 * request that reads `store.current()` once sees either the old or the new set, never a mix.
 */
export interface Secrets {
  readonly products: ReadonlyMap<string, ProductConfig>;
  /**
   * The JWT verification keys normalised to a JWKS (PEM entries converted, each with `kid` and `alg`);
   * undefined when the secret is missing (JWT auth disabled).
   */
  readonly jwtKeys: JSONWebKeySet | undefined;
  /** HMAC keys by key id; undefined when the secret is missing (HMAC auth disabled). */
  readonly hmacKeys: ReadonlyMap<string, HmacKey> | undefined;
  /** When this set was assembled (ms since the epoch). */
  readonly loadedAt: number;
}

/** Holds the current secrets and keeps them fresh. */
export interface SecretStore {
  /** The current set, or undefined before the first successful load (the server is then not ready). */
  current(): Secrets | undefined;
  /** Loads once (throwing a clear error if the product secret cannot be loaded) and starts refreshing. */
  start(): Promise<void>;
  /** Stops refreshing. */
  stop(): Promise<void>;
  /** Subscribes to swaps (a new set became current); returns an unsubscribe function. */
  onChange(listener: (secrets: Secrets) => void): () => void;
}
