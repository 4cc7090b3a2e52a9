import { Code, ConnectError } from "@connectrpc/connect";
import { Agent, type Dispatcher } from "undici";
import { AppError, type AppErrorCode } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type { ProviderConfig, ProviderKind } from "../secrets/types.js";
import { UpstreamFailure } from "./failure.js";
import { createUpstreamHttp, type HttpPost } from "./http.js";
import { createKeyPools } from "./key-pool.js";
import { adapterRegistry, type AdapterDeps } from "./providers/index.js";
import { embeddingRegistry } from "./embeddings/registry.js";
import type { EmbeddingAdapter } from "./embeddings/types.js";
import type { SseEvent } from "./sse.js";
import type {
  Clock,
  JsonObject,
  PassthroughRequest,
  TokenUsage,
  ProviderAdapter,
  UpstreamCall,
  UpstreamObserver,
  UpstreamOutcome,
  UpstreamResult,
} from "./types.js";

export interface ForwarderOptions {
  /**
   * Upstream timeout per call (API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS × 1000): a unary call's whole time,
   * a stream's time to its first chunk.
   */
  readonly timeoutMs: number;
  /**
   * The longest gap between two chunks of a stream after the first (API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS
   * × 1000). Default 60 s. A stream still producing is never cut by `timeoutMs`; only the caller's own
   * deadline bounds its total time.
   */
  readonly streamIdleTimeoutMs?: number;
  /** Largest provider answer (or single stream event) accepted; larger is a 502. Default 10 MiB. */
  readonly maxResponseBytes?: number;
  /**
   * Largest embeddings answer accepted; larger is a 502. Default 64 MiB: a full batch (2048 inputs) of
   * 3072-dimension vectors in base64 is about 34 MB.
   */
  readonly maxEmbeddingResponseBytes?: number;
  /**
   * The HTTP dispatcher for every provider call. Default: one keep-alive undici `Agent` created here
   * (pipelining 1, up to 2048 connections per origin) and closed by `close()`. An injected one is not closed.
   */
  readonly dispatcher?: Dispatcher;
  readonly logger: Logger;
  /** Wall clock for deadlines, latencies and resting keys. Default `Date`. */
  readonly clock?: Clock;
  /** Told about every call once it settles (the metrics of docs/runbook.ja.md §5); default none. */
  readonly observer?: UpstreamObserver | undefined;
}

/** Per-call options; all optional so both the RPC layer and scripts can call it. */
export interface ForwardOptions {
  /** Aborted when the caller cancels or disconnects; the upstream request is then aborted too. */
  readonly signal?: AbortSignal | undefined;
  /** The caller's absolute deadline (ms since the epoch); the sooner of it and `timeoutMs` applies. */
  readonly deadlineMs?: number | undefined;
  /** Sent in the provider's own max-tokens field when the body sets no limit. */
  readonly maxTokensCap?: number | undefined;
  /** The id of the request the call serves (src/edge/request-id.ts), on every line the call logs. */
  readonly requestId?: string | undefined;
  /** Told the provider's usage of a stream, even when the caller did not ask for it (UpstreamCall.onUsage). */
  readonly onUsage?: ((usage: TokenUsage) => void) | undefined;
}

/** Forwards OpenAI-shaped chat requests to the provider adapter of `provider.kind`. */
export interface Forwarder {
  /**
   * One unary call. Fails with AppError codes `upstream_error` (502), `upstream_rejected` (400, provider's
   * scrubbed message), `rate_limited` (429 with `retryAfterMs`), `upstream_timeout` (504), or with
   * `ConnectError(Code.Canceled)` when the caller went away. Failures are logged here, never with a key.
   */
  complete(provider: ProviderConfig, body: JsonObject, options?: ForwardOptions): Promise<UpstreamResult>;
  /** A streaming call yielding `chat.completion.chunk` objects; fails like `complete`, also mid-stream. */
  stream(provider: ProviderConfig, body: JsonObject, options?: ForwardOptions): AsyncIterable<JsonObject>;
  /** Whether the provider's kind has embeddings (src/upstream/embeddings/registry.ts). */
  embeds(provider: ProviderConfig): boolean;
  /**
   * One embeddings call (an OpenAI embeddings body, answered in OpenAI's list shape); the key pool, the
   * retry on another key, timeouts, error mapping and logging are those of `complete`. A kind without
   * embeddings fails with `model_not_supported`.
   */
  embed(provider: ProviderConfig, body: JsonObject, options?: ForwardOptions): Promise<UpstreamResult>;
  /**
   * One unary call of a provider's own API, natively (the Anthropic Messages surface): the caller's body
   * bytes and protocol headers with the product's key, through the same key pool, retry, timeouts, logging
   * and error mapping as `complete`. The answer is the provider's JSON object as it sent it.
   */
  passthrough(
    provider: ProviderConfig,
    request: PassthroughRequest,
    options?: ForwardOptions,
  ): Promise<UpstreamResult>;
  /** The streaming form of `passthrough`: the provider's server-sent events, one by one, as they arrive. */
  passthroughStream(
    provider: ProviderConfig,
    request: PassthroughRequest,
    options?: ForwardOptions,
  ): AsyncIterable<SseEvent>;
  /** Closes the pooled connections this forwarder created (waits for calls in flight). */
  close(): Promise<void>;
}

const defaultMaxResponseBytes = 10 * 1024 * 1024;
const defaultMaxEmbeddingResponseBytes = 64 * 1024 * 1024;
const defaultStreamIdleTimeoutMs = 60_000;

/** The abort reason of our own timers, so a timeout is never mistaken for the caller leaving. */
class UpstreamTimeoutReason extends Error {
  override readonly name = "UpstreamTimeoutReason";
}

/** How loudly each upstream outcome is logged: provider or transport trouble is an operator's ERROR. */
const logLevels = {
  upstream_error: "error",
  upstream_timeout: "error",
  internal: "error",
  upstream_rejected: "warn",
  rate_limited: "warn",
  // A request the provider's adapter cannot express (a field it lacks): the caller's to fix.
  invalid_argument: "warn",
} as const satisfies Partial<Record<AppErrorCode, "error" | "warn">>;

/** Provider statuses worth one more try on another key: throttled, the provider's trouble, or that key's. */
const retryStatuses: ReadonlySet<number> = new Set([401, 403, 429]);

/** The pool used when none is injected: keep-alive, no pipelining (a slow answer must not block others). */
function createDefaultAgent(timeoutMs: number, streamIdleTimeoutMs: number): Agent {
  return new Agent({
    // Enough for many slow LLM calls in flight at once (the benchmark holds 512); still bounded, so a
    // flood cannot exhaust file descriptors.
    connections: 2048,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    // undici's own timers are a safety net only; the per-call timers are always sooner. Its body timeout
    // is a gap between body chunks, so it must exceed the stream idle timeout too.
    headersTimeout: timeoutMs + 1000,
    bodyTimeout: Math.max(timeoutMs, streamIdleTimeoutMs) + 1000,
    connectTimeout: Math.min(timeoutMs, 10_000),
  });
}

/**
 * The timers of one call behind one AbortController. Until the first chunk: min(timeoutMs, caller deadline).
 * For a stream after its first chunk: the idle timer, restarted by every chunk, plus the caller's deadline
 * if it set one. `started`/`firstChunkAt` are where latency and time to first byte are read.
 */
interface CallClock {
  readonly signal: AbortSignal;
  readonly started: number;
  /** Seconds since the call started, on the monotonic clock (for the observer's durations). */
  elapsedSeconds(): number;
  /** A stream chunk arrived (the first switches from the first-byte budget to the idle timer). */
  chunk(): void;
  end(): void;
}

/**
 * Builds the forwarder. Options are validated here (an Error naming the option); adapters are built once
 * and share one pooled HTTP client. Each call combines the caller's signal with our timers into the one
 * signal the upstream request uses, picks a key from the provider's pool, and retries once on another
 * key when the first attempt failed before anything reached the caller.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const { timeoutMs, logger, observer } = options;
  const maxResponseBytes = options.maxResponseBytes ?? defaultMaxResponseBytes;
  const streamIdleTimeoutMs = options.streamIdleTimeoutMs ?? defaultStreamIdleTimeoutMs;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new Error(`createForwarder: timeoutMs must be a positive number, got ${timeoutMs}`);
  }
  if (!Number.isFinite(streamIdleTimeoutMs) || streamIdleTimeoutMs <= 0) {
    throw new Error(
      `createForwarder: streamIdleTimeoutMs must be a positive number, got ${streamIdleTimeoutMs}`,
    );
  }
  if (!Number.isInteger(maxResponseBytes) || maxResponseBytes <= 0) {
    throw new Error(`createForwarder: maxResponseBytes must be a positive integer, got ${maxResponseBytes}`);
  }
  const clock = options.clock ?? { now: () => Date.now() };
  const ownsDispatcher = options.dispatcher === undefined;
  const dispatcher = options.dispatcher ?? createDefaultAgent(timeoutMs, streamIdleTimeoutMs);
  const pools = createKeyPools({ clock, logger });

  const deps: AdapterDeps = { http: createUpstreamHttp({ dispatcher, maxResponseBytes, clock }), clock };
  const adapters = new Map<ProviderKind, ProviderAdapter>();
  for (const [kind, factory] of Object.entries(adapterRegistry) as [
    ProviderKind,
    (typeof adapterRegistry)[ProviderKind],
  ][]) {
    adapters.set(kind, factory(deps));
  }

  const maxEmbeddingResponseBytes = options.maxEmbeddingResponseBytes ?? defaultMaxEmbeddingResponseBytes;
  if (!Number.isInteger(maxEmbeddingResponseBytes) || maxEmbeddingResponseBytes <= 0) {
    throw new Error(
      `createForwarder: maxEmbeddingResponseBytes must be a positive integer, got ${maxEmbeddingResponseBytes}`,
    );
  }
  // Embeddings answers are larger than chat answers by nature: the same pool, their own size cap.
  const embedDeps: AdapterDeps = {
    http: createUpstreamHttp({ dispatcher, maxResponseBytes: maxEmbeddingResponseBytes, clock }),
    clock,
  };
  const embedders = new Map<ProviderKind, EmbeddingAdapter>();
  for (const [kind, factory] of Object.entries(embeddingRegistry) as [
    ProviderKind,
    (typeof embeddingRegistry)[ProviderKind],
  ][]) {
    if (factory !== null) embedders.set(kind, factory(embedDeps));
  }

  function adapterFor(provider: ProviderConfig): ProviderAdapter {
    const adapter = adapters.get(provider.kind);
    if (adapter === undefined) {
      throw new AppError("upstream_error", {
        cause: new UpstreamFailure(provider, "provider kind not implemented"),
      });
    }
    return adapter;
  }

  function startClock(opts: ForwardOptions): CallClock {
    const started = clock.now();
    const startedMonotonic = performance.now();
    const budgetMs =
      opts.deadlineMs === undefined ? timeoutMs : Math.min(timeoutMs, opts.deadlineMs - started);
    // One controller per call, fed by the timers and by the caller's signal through a listener removed at
    // the end: AbortSignal.any would leave a dependent signal per call for the collector (the benchmark's
    // profile showed abort bookkeeping among the top costs). Its reason is whichever fired first.
    const controller = new AbortController();
    const timeout = (message: string) => () => controller.abort(new UpstreamTimeoutReason(message));
    let handle = setTimeout(timeout(`no answer within ${budgetMs} ms`), Math.max(0, budgetMs));
    let deadline: NodeJS.Timeout | undefined;
    let streaming = false;
    const callerSignal = opts.signal;
    const onCallerAbort = () => controller.abort(callerSignal?.reason);
    if (callerSignal?.aborted) controller.abort(callerSignal.reason);
    else callerSignal?.addEventListener("abort", onCallerAbort, { once: true });
    if (budgetMs <= 0)
      controller.abort(new UpstreamTimeoutReason("the caller's deadline had already passed"));
    return {
      signal: controller.signal,
      started,
      elapsedSeconds: () => (performance.now() - startedMonotonic) / 1000,
      chunk() {
        if (streaming) {
          // Restarting the same timer costs no allocation per chunk.
          handle.refresh();
          return;
        }
        streaming = true;
        clearTimeout(handle);
        handle = setTimeout(timeout(`no stream chunk within ${streamIdleTimeoutMs} ms`), streamIdleTimeoutMs);
        if (opts.deadlineMs !== undefined) {
          deadline = setTimeout(
            timeout("the caller's deadline passed mid-stream"),
            Math.max(0, opts.deadlineMs - clock.now()),
          );
        }
      },
      end() {
        clearTimeout(handle);
        clearTimeout(deadline);
        callerSignal?.removeEventListener("abort", onCallerAbort);
      },
    };
  }

  /**
   * After a failed attempt: records it in the key pool, then returns the key to retry on when the failure
   * is worth a retry (a 429, 401/403, 5xx or connection failure on the first attempt) and another key is
   * usable; otherwise undefined.
   */
  function retryKey(
    provider: ProviderConfig,
    signal: AbortSignal,
    err: unknown,
    keyIndex: number,
    attempt: number,
    requestId: string | undefined,
  ): number | undefined {
    if (signal.aborted || !(err instanceof AppError)) return undefined;
    pools.report(provider, keyIndex, err, requestId);
    const cause = err.cause instanceof UpstreamFailure ? err.cause : undefined;
    if (attempt > 1 || cause === undefined) return undefined;
    const status = cause.status;
    const retryable = status === undefined ? cause.transport : retryStatuses.has(status) || status >= 500;
    if (!retryable) return undefined;
    const next = pools.another(provider, keyIndex);
    if (next !== undefined) {
      logger.warn(
        {
          requestId,
          provider: provider.name,
          providerKind: provider.kind,
          code: err.code,
          upstreamStatus: status,
          keyIndex,
          retryKeyIndex: next,
          detail: cause.message,
        },
        "Upstream call failed; retrying once on another key",
      );
    }
    return next;
  }

  /** Turns whatever a call threw into what the caller gets, and logs it once. */
  function settle(
    provider: ProviderConfig,
    signal: AbortSignal,
    err: unknown,
    keyIndex: number,
    requestId: string | undefined,
  ): Error {
    const error = classify(provider, signal, err);
    if (error instanceof AppError) {
      const level = error.code in logLevels ? logLevels[error.code as keyof typeof logLevels] : "error";
      const cause = error.cause instanceof UpstreamFailure ? error.cause : undefined;
      logger[level](
        {
          requestId,
          provider: provider.name,
          providerKind: provider.kind,
          code: error.code,
          upstreamStatus: cause?.status,
          ...(provider.apiKeys.length > 1 ? { keyIndex } : {}),
          detail: cause?.message ?? "unexpected failure",
        },
        "Upstream call failed",
      );
    } else {
      logger.info(
        { requestId, provider: provider.name, providerKind: provider.kind },
        "Upstream call canceled by the caller",
      );
    }
    return error;
  }

  function classify(provider: ProviderConfig, signal: AbortSignal, err: unknown): Error {
    if (signal.aborted) {
      const reason: unknown = signal.reason;
      if (reason instanceof UpstreamTimeoutReason) {
        return new AppError("upstream_timeout", { cause: new UpstreamFailure(provider, reason.message) });
      }
      if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) {
        return new AppError("upstream_timeout", {
          cause: new UpstreamFailure(provider, "the caller's deadline passed"),
        });
      }
      return new ConnectError("Request canceled", Code.Canceled);
    }
    if (err instanceof AppError) return err;
    return new AppError("internal", { cause: err });
  }

  const outcomeOf = (error: Error): UpstreamOutcome => (error instanceof AppError ? error.code : "canceled");

  /** Tells the observer how a call ended (once per call, retries included). */
  function report(
    provider: ProviderConfig,
    body: JsonObject,
    outcome: UpstreamOutcome,
    timers: CallClock,
    firstEventSeconds: number | undefined,
  ): void {
    observer?.({
      provider,
      model: typeof body["model"] === "string" ? body["model"] : "",
      outcome,
      durationSeconds: timers.elapsedSeconds(),
      firstEventSeconds,
    });
  }

  function callOf(
    provider: ProviderConfig,
    body: JsonObject,
    opts: ForwardOptions,
    signal: AbortSignal,
    keyIndex: number,
  ): UpstreamCall {
    return { provider, body, maxTokensCap: opts.maxTokensCap, keyIndex, signal, onUsage: opts.onUsage };
  }

  /** A unary call through `send` with the timers, the key pool, one retry on another key, and one log line. */
  async function unary(
    provider: ProviderConfig,
    body: JsonObject,
    opts: ForwardOptions,
    send: (call: UpstreamCall) => Promise<UpstreamResult>,
  ): Promise<UpstreamResult> {
    const timers = startClock(opts);
    let outcome: UpstreamOutcome = "ok";
    let keyIndex = 0;
    try {
      timers.signal.throwIfAborted();
      keyIndex = pools.pick(provider);
      for (let attempt = 1; ; attempt++) {
        try {
          return await send(callOf(provider, body, opts, timers.signal, keyIndex));
        } catch (err) {
          const next = retryKey(provider, timers.signal, err, keyIndex, attempt, opts.requestId);
          if (next === undefined) throw err;
          keyIndex = next;
        }
      }
    } catch (err) {
      const error = settle(provider, timers.signal, err, keyIndex, opts.requestId);
      outcome = outcomeOf(error);
      throw error;
    } finally {
      timers.end();
      report(provider, body, outcome, timers, undefined);
    }
  }

  /**
   * One streaming call through the key pool: until the first item nothing has reached the caller, so a
   * failed attempt may be retried on another key; then the items as they come, with the timers, the outcome
   * report and the release of the provider's stream when the consumer stops early.
   */
  async function* streamed<T>(
    provider: ProviderConfig,
    body: JsonObject,
    opts: ForwardOptions,
    open: (call: UpstreamCall) => AsyncIterable<T>,
  ): AsyncGenerator<T> {
    const timers = startClock(opts);
    let keyIndex = 0;
    let iterator: AsyncIterator<T> | undefined;
    // Stays "abandoned" when the consumer stops reading early (the generator is returned, not thrown into).
    let outcome: UpstreamOutcome = "abandoned";
    let firstEventSeconds: number | undefined;
    try {
      timers.signal.throwIfAborted();
      keyIndex = pools.pick(provider);
      let first: IteratorResult<T>;
      for (let attempt = 1; ; attempt++) {
        try {
          iterator = open(callOf(provider, body, opts, timers.signal, keyIndex))[Symbol.asyncIterator]();
          first = await iterator.next();
          break;
        } catch (err) {
          iterator = undefined;
          const next = retryKey(provider, timers.signal, err, keyIndex, attempt, opts.requestId);
          if (next === undefined) throw err;
          keyIndex = next;
        }
      }
      for (let result = first; result.done !== true; result = await iterator.next()) {
        timers.chunk();
        firstEventSeconds ??= timers.elapsedSeconds();
        yield result.value;
      }
      iterator = undefined;
      outcome = "ok";
    } catch (err) {
      iterator = undefined;
      const error = settle(provider, timers.signal, err, keyIndex, opts.requestId);
      outcome = outcomeOf(error);
      throw error;
    } finally {
      timers.end();
      // A consumer that stopped because its caller went away is a cancel, like an abort seen mid-read.
      if (outcome === "abandoned" && opts.signal?.aborted === true) outcome = "canceled";
      report(provider, body, outcome, timers, firstEventSeconds);
      // The consumer stopped early: let the adapter release the provider's stream.
      await iterator?.return?.();
    }
  }

  return {
    embeds: (provider) => embedders.has(provider.kind),

    embed(provider, body, opts = {}) {
      const embedder = embedders.get(provider.kind);
      if (embedder === undefined) {
        return Promise.reject(new AppError("model_not_supported", { param: "model" }));
      }
      return unary(provider, body, opts, (call) => embedder.embed(call));
    },

    complete(provider, body, opts = {}) {
      return unary(provider, body, opts, (call) => adapterFor(provider).complete(call));
    },

    stream(provider, body, opts = {}) {
      return streamed(provider, body, opts, (call) => adapterFor(provider).stream(call));
    },

    passthrough(provider, request, opts = {}) {
      return unary(provider, { model: request.model }, opts, async (call) => {
        const post = passthroughPost(provider, request, call);
        const started = clock.now();
        const answer = await deps.http.postJson(post);
        return { ...answer, upstreamLatencyMs: clock.now() - started };
      });
    },

    passthroughStream(provider, request, opts = {}) {
      return streamed(provider, { model: request.model }, opts, (call) =>
        deps.http.postEventStream(passthroughPost(provider, request, call)),
      );
    },

    async close() {
      if (ownsDispatcher) await dispatcher.close();
    },
  };

  /** The HTTP post of a passthrough request: the adapter's target (origin, path, key) and the raw bytes. */
  function passthroughPost(
    provider: ProviderConfig,
    request: PassthroughRequest,
    call: UpstreamCall,
  ): HttpPost {
    const adapter = adapterFor(provider);
    if (adapter.passthroughTarget === undefined) {
      throw new AppError("upstream_error", {
        cause: new UpstreamFailure(provider, "provider kind takes no passthrough requests"),
      });
    }
    const target = adapter.passthroughTarget(call, request);
    return {
      provider,
      origin: target.origin,
      path: target.path,
      headers: target.headers,
      body: request.body,
      signal: call.signal,
    };
  }
}
