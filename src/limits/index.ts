export type {
  RateLimitCaller,
  RateLimitPolicy,
  RateLimitResult,
  RateLimitSource,
  RateLimiter,
} from "./types.js";
export { createMemoryLimiter, type MemoryLimiterOptions } from "./memory-limiter.js";
export { createConcurrencyInterceptor, type ConcurrencyInterceptorOptions } from "./concurrency.js";
export { createRedisNonceStore, type RedisNonceStoreOptions } from "./redis-nonce-store.js";
export { rateLimitKey, type RateLimitDimension } from "./keys.js";
export { rateLimitHeaders, rateLimitHeaderNames, toRateLimitError } from "./headers.js";
export {
  createCallGate,
  type BudgetUsage,
  type CallGate,
  type CallGateOptions,
  type GateRequest,
  type GateTicket,
} from "./call-gate.js";
export type { BudgetScope, BudgetWindow, BudgetWindowName } from "./budget-windows.js";
export { createMemorySpendStore } from "./memory-spend-store.js";
export { createRedisSpendStore, type RedisSpendStoreOptions } from "./redis-spend-store.js";
export type { SpendStore } from "./spend-store.js";
