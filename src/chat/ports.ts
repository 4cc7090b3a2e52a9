import type { ProviderConfig, Secrets } from "../secrets/types.js";

import type { JsonObject, TokenUsage } from "../upstream/index.js";

export type { JsonObject, TokenUsage };

/** Per-call options for the upstream. */
export interface UpstreamCallOptions {
  /** Aborted when the caller cancels, disconnects or its deadline passes. */
  readonly signal: AbortSignal;
  /** The caller's absolute deadline (ms since the epoch), if it sent one. */
  readonly deadlineMs: number | undefined;
  /** When the caller set no max tokens: the cap the provider adapter must send in its own field. */
  readonly maxTokensCap: number | undefined;
  /** Told the provider's usage of a stream, also when the caller's stream does not carry it (docs/usage.md). */
  readonly onUsage?: ((usage: TokenUsage) => void) | undefined;
}

/** What the chat service needs from the upstream forwarder. */
export interface ChatUpstream {
  complete(
    provider: ProviderConfig,
    body: JsonObject,
    options: UpstreamCallOptions,
  ): Promise<{
    readonly body: JsonObject;
    readonly usage?: TokenUsage | undefined;
    readonly upstreamLatencyMs: number;
  }>;
  stream(provider: ProviderConfig, body: JsonObject, options: UpstreamCallOptions): AsyncIterable<JsonObject>;
}

/** Where the chat service reads the current secrets. */
export type SecretsView = () => Secrets | undefined;
