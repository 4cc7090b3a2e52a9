import { AppError } from "../errors/index.js";
import type { RateLimitPolicy, RateLimitResult } from "./types.js";

/** Every header `rateLimitHeaders` may set, for the CORS `Access-Control-Expose-Headers` list (README, Rate limits). */
export const rateLimitHeaderNames = [
  "RateLimit-Limit",
  "RateLimit-Remaining",
  "RateLimit-Reset",
  "Retry-After",
] as const;

/**
 * The rate-limit response headers: `RateLimit-Limit` (units per window), `RateLimit-Remaining`,
 * `RateLimit-Reset` (seconds until the budget is full again, rounded up), plus `Retry-After`
 * (RFC 9110 delay-seconds, rounded up, at least 1) when the request was refused.
 */
export function rateLimitHeaders(result: RateLimitResult, policy: RateLimitPolicy): Record<string, string> {
  const headers: Record<string, string> = {
    "RateLimit-Limit": String(policy.limit),
    "RateLimit-Remaining": String(result.remaining),
    "RateLimit-Reset": String(Math.ceil(result.resetMs / 1000)),
  };
  if (!result.allowed) headers["Retry-After"] = String(retryAfterSeconds(result.retryAfterMs));
  return headers;
}

/**
 * Which limit refused a call, as the access line says it (`limit`): the caller's requests or tokens per
 * minute (the provider's own rate limit is `provider`, src/upstream/failure.ts).
 */
export type RateLimitName = "requests_per_minute" | "tokens_per_minute";

/**
 * The 429 / RESOURCE_EXHAUSTED `Rate limit exceeded` error for a refused result: `retryAfterMs` becomes
 * google.rpc.RetryInfo (gRPC, Connect), the headers travel as HTTP headers or metadata, and the access
 * line names the limit (`limit`) and its size per window (`limitMax`).
 */
export function toRateLimitError(
  result: RateLimitResult,
  policy: RateLimitPolicy,
  limit: RateLimitName,
): AppError {
  return new AppError("rate_limited", {
    logFields: { limit, limitMax: policy.limit },
    retryAfterMs: result.retryAfterMs,
    headers: rateLimitHeaders(result, policy),
  });
}

function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
