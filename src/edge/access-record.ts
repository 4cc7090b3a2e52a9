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
  /**
   * The API surface of a call that is not a chat completion (`embeddings`, `responses`, …); left out for
   * chat. Its protocol is `exchange.protocol`.
   */
  surface?: string;
  product?: string;
  model?: string;
  caller?: string;
  upstreamLatencyMs?: number;
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
  /** The usage breakdown, when the provider reported it (src/upstream/types.ts, TokenUsage). */
  cachedInputTokens?: number;
  cacheWriteTokens?: number;
  reasoningTokens?: number;
  audioInputTokens?: number;
  audioOutputTokens?: number;
  /** True when the tokens are the server's estimate (the call was cut short before the provider's usage). */
  usageEstimated?: boolean;
  /** The call's cost in USD at the product's `prices` (src/usage/cost.ts); absent when its model has no price. */
  costUsd?: number;
}

export const accessRecordKey = createContextKey<AccessRecord | undefined>(undefined, {
  description: "per-call access log facts",
});

/**
 * Calls still settling their usage, per record: a call admitted upstream holds its record until it has
 * recorded its usage, so the access line and the metrics of a call cut short (client cancel, shutdown)
 * carry what it was charged even when the response closed before the call's own `finally` ran.
 */
const holds = new WeakMap<AccessRecord, { count: number; release: Array<() => void> }>();

/** Holds `record` until the returned function is called (idempotent). */
export function holdAccessRecord(record: AccessRecord): () => void {
  let entry = holds.get(record);
  if (entry === undefined) {
    entry = { count: 0, release: [] };
    holds.set(record, entry);
  }
  entry.count++;
  const held = entry;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    held.count--;
    if (held.count > 0) return;
    holds.delete(record);
    for (const release of held.release.splice(0)) release();
  };
}

/**
 * Resolves once every hold on `record` is released, or after `maxWaitMs` (a call that never settles must
 * not keep its access line back forever); undefined when nothing holds it.
 */
export function whenRecordSettled(record: AccessRecord, maxWaitMs: number): Promise<void> | undefined {
  const entry = holds.get(record);
  if (entry === undefined) return undefined;
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, maxWaitMs);
    timer.unref();
    entry.release.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
