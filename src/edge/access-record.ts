import { createContextKey } from "@connectrpc/connect";

/**
 * Facts about one call that only the service learns (product, model, caller, upstream latency, usage),
 * filled in as it goes and written by the access-log edge entry as one line per request
 * (docs/architecture.md). The same object is `exchange.record`.
 */
export interface AccessRecord {
  /**
   * The request id (src/edge/request-id.ts), set when the exchange is created: every line a request causes
   * carries it as `requestId`, and its answer as `x-request-id`.
   */
  requestId?: string;
  /** A refused CORS preflight: the origin it came from (at most 256 characters). */
  origin?: string;
  product?: string;
  model?: string;
  caller?: string;
  upstreamLatencyMs?: number;
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
  /** The call's cost in USD at the product's `prices` (src/usage/cost.ts); absent when its model has no price. */
  costUsd?: number;
}

export const accessRecordKey = createContextKey<AccessRecord | undefined>(undefined, {
  description: "per-call access log facts",
});
