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
 * The 429 / RESOURCE_EXHAUSTED `Rate limit exceeded` error for a refused result: `retryAfterMs` becomes
 * google.rpc.RetryInfo (gRPC, Connect) and the headers travel as HTTP headers or metadata.
 */
export function toRateLimitError(result: RateLimitResult, policy: RateLimitPolicy): AppError {
  return new AppError("rate_limited", {
    retryAfterMs: result.retryAfterMs,
    headers: rateLimitHeaders(result, policy),
  });
}

/**
 * The same answer for a provider's own 429: reads its `Retry-After` (delay-seconds or an HTTP date) and
 * falls back to `defaultRetryAfterMs` (default 1_000) when absent or unreadable.
 */
export function providerRateLimitError(
  retryAfter: string | null | undefined,
  options: { readonly now?: () => number; readonly defaultRetryAfterMs?: number } = {},
): AppError {
  const ms = parseRetryAfter(retryAfter, options.now ?? Date.now) ?? options.defaultRetryAfterMs ?? 1_000;
  return new AppError("rate_limited", {
    retryAfterMs: ms,
    headers: { "Retry-After": String(retryAfterSeconds(ms)) },
  });
}

function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function parseRetryAfter(value: string | null | undefined, now: () => number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now());
}
