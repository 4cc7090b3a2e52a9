import { Code, ConnectError } from "@connectrpc/connect";
import { Agent, type Dispatcher } from "undici";
import { AppError, type AppErrorCode } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type { ProviderConfig, ProviderKind } from "../secrets/types.js";
import { UpstreamFailure } from "./failure.js";
import { createUpstreamHttp } from "./http.js";
import { adapterRegistry, type AdapterDeps } from "./providers/index.js";
import type { Clock, JsonObject, ProviderAdapter, UpstreamCall, UpstreamResult } from "./types.js";

export interface ForwarderOptions {
  /** Upstream timeout per call (API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS × 1000); for a stream, the whole stream. */
  readonly timeoutMs: number;
  /** Largest provider answer (or single stream event) accepted; larger is a 502. Default 10 MiB. */
  readonly maxResponseBytes?: number;
  /**
   * The HTTP dispatcher for every provider call. Default: one keep-alive undici `Agent` created here
   * (pipelining 1, up to 2048 connections per origin) and closed by `close()`. An injected one is not closed.
   */
  readonly dispatcher?: Dispatcher;
  readonly logger: Logger;
  /** Wall clock for deadlines and latencies. Default `Date`. */
  readonly clock?: Clock;
}

/** Per-call options; all optional so both the RPC layer and scripts can call it. */
export interface ForwardOptions {
  /** Aborted when the caller cancels or disconnects; the upstream request is then aborted too. */
  readonly signal?: AbortSignal | undefined;
  /** The caller's absolute deadline (ms since the epoch); the sooner of it and `timeoutMs` applies. */
  readonly deadlineMs?: number | undefined;
  /** Sent in the provider's own max-tokens field when the body sets no limit. */
  readonly maxTokensCap?: number | undefined;
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
  /** Closes the pooled connections this forwarder created (waits for calls in flight). */
  close(): Promise<void>;
}

const defaultMaxResponseBytes = 10 * 1024 * 1024;

/** The abort reason of our own timer, so a timeout is never mistaken for the caller leaving. */
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
} as const satisfies Partial<Record<AppErrorCode, "error" | "warn">>;

/** The pool used when none is injected: keep-alive, no pipelining (a slow answer must not block others). */
function createDefaultAgent(timeoutMs: number): Agent {
  return new Agent({
    // Enough for many slow LLM calls in flight at once (the benchmark holds 512); still bounded, so a
    // flood cannot exhaust file descriptors.
    connections: 2048,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    // undici's own timers are a safety net only; the per-call timer is always sooner.
    headersTimeout: timeoutMs + 1000,
    bodyTimeout: timeoutMs + 1000,
    connectTimeout: Math.min(timeoutMs, 10_000),
  });
}

/**
 * Builds the forwarder. Options are validated here (an Error naming the option); adapters are built once
 * and share one pooled HTTP client. Each call combines the caller's signal with a timer of
 * min(timeoutMs, deadline - now) into the one signal the upstream request uses.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const { timeoutMs, logger } = options;
  const maxResponseBytes = options.maxResponseBytes ?? defaultMaxResponseBytes;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new Error(`createForwarder: timeoutMs must be a positive number, got ${timeoutMs}`);
  }
  if (!Number.isInteger(maxResponseBytes) || maxResponseBytes <= 0) {
    throw new Error(`createForwarder: maxResponseBytes must be a positive integer, got ${maxResponseBytes}`);
  }
  const clock = options.clock ?? { now: () => Date.now() };
  const ownsDispatcher = options.dispatcher === undefined;
  const dispatcher = options.dispatcher ?? createDefaultAgent(timeoutMs);

  const deps: AdapterDeps = { http: createUpstreamHttp({ dispatcher, maxResponseBytes, clock }), clock };
  const adapters = new Map<ProviderKind, ProviderAdapter>();
  for (const [kind, factory] of Object.entries(adapterRegistry) as [
    ProviderKind,
    (typeof adapterRegistry)[ProviderKind],
  ][]) {
    if (factory !== null) adapters.set(kind, factory(deps));
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

  /** Starts the call's timer; `end()` must run when the call settles. */
  function begin(provider: ProviderConfig, body: JsonObject, opts: ForwardOptions) {
    const budgetMs =
      opts.deadlineMs === undefined ? timeoutMs : Math.min(timeoutMs, opts.deadlineMs - clock.now());
    // One controller per call, fed by the timer and by the caller's signal through a listener removed at
    // the end: AbortSignal.any would leave a dependent signal per call for the collector (the benchmark's
    // profile showed abort bookkeeping among the top costs). Its reason is whichever fired first.
    const controller = new AbortController();
    const handle = setTimeout(
      () => controller.abort(new UpstreamTimeoutReason(`no answer within ${budgetMs} ms`)),
      Math.max(0, budgetMs),
    );
    const callerSignal = opts.signal;
    const onCallerAbort = () => controller.abort(callerSignal?.reason);
    if (callerSignal?.aborted) controller.abort(callerSignal.reason);
    else callerSignal?.addEventListener("abort", onCallerAbort, { once: true });
    if (budgetMs <= 0)
      controller.abort(new UpstreamTimeoutReason("the caller's deadline had already passed"));
    const call: UpstreamCall = { provider, body, maxTokensCap: opts.maxTokensCap, signal: controller.signal };
    return {
      call,
      end: () => {
        clearTimeout(handle);
        callerSignal?.removeEventListener("abort", onCallerAbort);
      },
    };
  }

  /** Turns whatever a call threw into what the caller gets, and logs it once. */
  function settle(provider: ProviderConfig, signal: AbortSignal, err: unknown): Error {
    const error = classify(provider, signal, err);
    if (error instanceof AppError) {
      const level = error.code in logLevels ? logLevels[error.code as keyof typeof logLevels] : "error";
      const cause = error.cause instanceof UpstreamFailure ? error.cause : undefined;
      logger[level](
        {
          provider: provider.name,
          providerKind: provider.kind,
          code: error.code,
          upstreamStatus: cause?.status,
          detail: cause?.message ?? "unexpected failure",
        },
        "Upstream call failed",
      );
    } else {
      logger.info(
        { provider: provider.name, providerKind: provider.kind },
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

  return {
    async complete(provider, body, opts = {}) {
      const { call, end } = begin(provider, body, opts);
      try {
        call.signal.throwIfAborted();
        return await adapterFor(provider).complete(call);
      } catch (err) {
        throw settle(provider, call.signal, err);
      } finally {
        end();
      }
    },

    async *stream(provider, body, opts = {}) {
      const { call, end } = begin(provider, body, opts);
      try {
        call.signal.throwIfAborted();
        yield* adapterFor(provider).stream(call);
      } catch (err) {
        throw settle(provider, call.signal, err);
      } finally {
        end();
      }
    },

    async close() {
      if (ownsDispatcher) await dispatcher.close();
    },
  };
}
