import type { AppErrorCode } from "../errors/index.js";
import type { ProviderConfig, ProviderKind } from "../secrets/types.js";

/** A JSON value exactly as exchanged with providers (the OpenAI wire format keeps its nulls and zeros). */
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;
/** A JSON object as exchanged with providers. */
export type JsonObject = { [key: string]: JsonValue };

/**
 * Token usage of one call (OpenAI's `usage`, and the breakdown the providers report). `promptTokens`
 * includes the cached and cache-write tokens; `completionTokens` includes reasoning and audio output.
 */
export interface TokenUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
  /** Input tokens read from the provider's prompt cache (billed at the cached price). */
  readonly cachedInputTokens?: number | undefined;
  /** Input tokens written to the provider's prompt cache (Anthropic's cache_creation_input_tokens). */
  readonly cacheWriteTokens?: number | undefined;
  readonly reasoningTokens?: number | undefined;
  readonly audioInputTokens?: number | undefined;
  readonly audioOutputTokens?: number | undefined;
  /**
   * True when the server estimated this usage, in whole (the provider's did not arrive: the call was cut
   * short) or in part (the provider's input counts arrived, its output count did not).
   */
  readonly estimated?: boolean | undefined;
}

/** One call to a provider, as the forwarder hands it to an adapter. */
export interface UpstreamCall {
  readonly provider: ProviderConfig;
  /** The OpenAI request body, without our `product` field. Adapters never mutate it. */
  readonly body: JsonObject;
  /**
   * The cap to send when the caller gave neither `max_tokens` nor `max_completion_tokens`; the adapter puts it
   * in the field its provider expects. Undefined: send nothing.
   */
  readonly maxTokensCap: number | undefined;
  /**
   * Which key of `provider.apiKeys` this attempt uses (the key pool's choice; 0 when the provider has none).
   * Adapters read the key as `provider.apiKeys[keyIndex]` (through `perKey`, which builds the headers once
   * per provider and key) and never log it.
   */
  readonly keyIndex: number;
  /** Already combines caller cancellation, the caller's deadline and our timeouts. */
  readonly signal: AbortSignal;
  /**
   * Told the provider's usage of a stream as soon as it arrives. Adapters always ask their provider for it
   * (OpenAI's `stream_options.include_usage`, Anthropic's and Gemini's usage events) and yield it as a usage
   * chunk only when the caller asked for one (docs/usage.md). A reading marked `estimated` is partial (the
   * provider's input counts before its final output count); a later call replaces it.
   */
  readonly onUsage?: ((usage: TokenUsage) => void) | undefined;
}

/**
 * A request forwarded to the provider as the caller sent it (the Anthropic Messages surface, native to the
 * `anthropic` kind): the body's bytes unchanged, the caller's protocol headers (never its credential).
 */
export interface PassthroughRequest {
  /** The provider path below its base URL (`/v1/messages`, `/v1/messages/count_tokens`). */
  readonly path: string;
  /** The raw query to append (`beta=true`), "" for none. */
  readonly query: string;
  /** The caller's headers the provider must see (`anthropic-version`, `anthropic-beta`); no credential. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  /** The body's `model`, for logs and metrics. */
  readonly model: string;
}

/** Where a passthrough request goes for one provider and key: origin, path and the provider's own headers. */
export interface PassthroughTarget {
  readonly origin: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** A provider's successful unary answer. */
export interface UpstreamResult {
  /** The provider's JSON, field for field (nulls and zeros kept). */
  readonly body: JsonObject;
  readonly usage?: TokenUsage | undefined;
  /** Wall time of the provider call, from sending the request to the end of the body. */
  readonly upstreamLatencyMs: number;
  /** The provider's HTTP status (200 for providers without a network, like echo). */
  readonly status: number;
}

/**
 * Turns the OpenAI-shaped chat request into one provider's wire format and back. Adapters throw only
 * `AppError` (codes of the error table, src/errors/app-error.ts) for provider failures; the forwarder owns timeouts, cancellation and logging.
 */
export interface ProviderAdapter {
  readonly kind: ProviderKind;
  complete(call: UpstreamCall): Promise<UpstreamResult>;
  /** Yields OpenAI `chat.completion.chunk` objects; ends after the provider's end-of-stream marker. */
  stream(call: UpstreamCall): AsyncIterable<JsonObject>;
  /**
   * Kinds whose own API a surface forwards natively (anthropic): the target of a passthrough request with
   * the key of `call.keyIndex`, built once per provider and key. Absent: the kind takes none.
   */
  passthroughTarget?(call: UpstreamCall, request: PassthroughRequest): PassthroughTarget;
}

/** How an upstream call ended: `ok`, the caller went away (`canceled`), the consumer of a stream stopped
 * reading before its end (`abandoned`), or the AppError code the caller got. */
export type UpstreamOutcome = "ok" | "canceled" | "abandoned" | AppErrorCode;

/** One settled upstream call, as the forwarder reports it (to metrics). */
export interface UpstreamCallReport {
  readonly provider: ProviderConfig;
  /** The `model` of the request body as sent (a caller's string: bound it before using it as a label). */
  readonly model: string;
  readonly outcome: UpstreamOutcome;
  /** From the start of the call to its end (the whole stream for a stream). */
  readonly durationSeconds: number;
  /** Streams only: from the start of the call to the first event; undefined when none arrived. */
  readonly firstEventSeconds: number | undefined;
}

/** Sees every upstream call once it settles. Must not throw; runs on the request path, so keep it cheap. */
export type UpstreamObserver = (report: UpstreamCallReport) => void;

/** A source of wall-clock time, injectable for tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}
