export type { RateLimitPolicy, RateLimitResult, RateLimitSource, RateLimiter } from "./types.js";
export { createMemoryLimiter, type MemoryLimiterOptions } from "./memory-limiter.js";
export { createRedisLimiter, type RedisLimiterOptions } from "./redis-limiter.js";
export { createConcurrencyInterceptor, type ConcurrencyInterceptorOptions } from "./concurrency.js";
export { createRedisNonceStore, type RedisNonceStoreOptions } from "./redis-nonce-store.js";
export { rateLimitKey, type RateLimitDimension } from "./keys.js";
export { rateLimitHeaders, rateLimitHeaderNames, toRateLimitError } from "./headers.js";
export {
  createChatLimiter,
  type ChatLimiter,
  type ChatLimiterOptions,
  type RateLimitCaller,
} from "./chat-limiter.js";
