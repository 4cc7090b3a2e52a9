import type { Logger } from "../log/index.js";
import type { ProductConfig } from "../secrets/types.js";
import { toRateLimitError } from "./headers.js";
import { rateLimitKey, type RateLimitDimension } from "./keys.js";
import type { RateLimiter, RateLimitPolicy, RateLimitResult } from "./types.js";

/** The caller as far as limits are concerned (JWT `sub` or HMAC key id). */
export interface RateLimitCaller {
  readonly kind: "jwt" | "hmac";
  readonly id: string;
}

type LimitedProduct = Pick<ProductConfig, "name" | "rateLimit">;

export interface ChatLimiterOptions {
  readonly limiter: RateLimiter;
  /**
   * Limits for products whose secret has no `rate_limit` value (API_KEY_SERVER_RATE_LIMIT_* in main.ts).
   * `undefined` means no limit of that kind unless the product sets one.
   */
  readonly defaults: {
    readonly requestsPerMinute: number | undefined;
    readonly tokensPerMinute: number | undefined;
  };
  /** Token charges that fail are logged here (they never fail the request). */
  readonly logger: Logger;
  /**
   * Sees every admission decision (metrics: refusals by kind, the limiter source in use); default none.
   * Must not throw; runs on the request path.
   */
  readonly onDecision?: ((dimension: RateLimitDimension, result: RateLimitResult) => void) | undefined;
}

/** Per product and caller limits (docs/ratelimit.md), in the shape the chat service calls. */
export interface ChatLimiter {
  /**
   * Throws AppError("rate_limited") (429 `Rate limit exceeded`, RetryInfo, Retry-After and RateLimit-*
   * headers) when the caller's token budget for the product is used up or one more request would exceed
   * its requests per minute; otherwise counts the request. Tokens are checked first, so a request refused
   * for tokens does not use up a request.
   */
  admit(product: LimitedProduct, caller: RateLimitCaller): Promise<void>;
  /**
   * Charges the tokens a provider reported after the response (may go into debt). Never throws; a failure
   * is logged with `requestId`, the request that reported the tokens.
   */
  charge(product: LimitedProduct, caller: RateLimitCaller, tokens: number, requestId?: string): Promise<void>;
}

const minute = 60_000;

/** Builds the ChatLimiter; throws a TypeError naming a default that is not a positive integer. */
export function createChatLimiter(options: ChatLimiterOptions): ChatLimiter {
  const { limiter, defaults, logger, onDecision } = options;
  for (const [name, value] of Object.entries(defaults)) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new TypeError(
        `createChatLimiter: defaults.${name} must be a positive integer, got ${String(value)}`,
      );
    }
  }
  const policy = (perMinute: number | undefined): RateLimitPolicy | undefined =>
    perMinute === undefined ? undefined : { limit: perMinute, windowMs: minute };
  const requestPolicy = (p: LimitedProduct) =>
    policy(p.rateLimit?.requestsPerMinute ?? defaults.requestsPerMinute);
  const tokenPolicy = (p: LimitedProduct) => policy(p.rateLimit?.tokensPerMinute ?? defaults.tokensPerMinute);

  return {
    async admit(product, caller) {
      const tokens = tokenPolicy(product);
      if (tokens !== undefined) {
        const result = await limiter.consume(rateLimitKey(product.name, caller, "tokens"), tokens, 0);
        onDecision?.("tokens", result);
        if (!result.allowed) throw toRateLimitError(result, tokens, "tokens_per_minute");
      }
      const requests = requestPolicy(product);
      if (requests !== undefined) {
        const result = await limiter.consume(rateLimitKey(product.name, caller, "requests"), requests, 1);
        onDecision?.("requests", result);
        if (!result.allowed) throw toRateLimitError(result, requests, "requests_per_minute");
      }
    },
    async charge(product, caller, tokens, requestId) {
      const policy = tokenPolicy(product);
      if (policy === undefined || !(tokens > 0)) return;
      try {
        await limiter.charge(rateLimitKey(product.name, caller, "tokens"), policy, tokens);
      } catch (err) {
        logger.error(
          { requestId, cause: err instanceof Error ? err.message : String(err) },
          "Failed to charge token usage",
        );
      }
    },
  };
}
