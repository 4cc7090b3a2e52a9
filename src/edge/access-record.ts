import { createContextKey } from "@connectrpc/connect";

/**
 * Facts about one call that only the service learns (product, model, caller, upstream latency, usage),
 * filled in as it goes and written by the access-log edge entry as one line per request
 * (docs/architecture.md). The same object is `exchange.record`.
 */
export interface AccessRecord {
  product?: string;
  model?: string;
  caller?: string;
  upstreamLatencyMs?: number;
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
}

export const accessRecordKey = createContextKey<AccessRecord | undefined>(undefined, {
  description: "per-call access log facts",
});
