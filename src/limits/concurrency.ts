import type { ContextValues, Interceptor, StreamResponse } from "@connectrpc/connect";
import { AppError, toConnectError } from "../errors/index.js";

export interface ConcurrencyInterceptorOptions {
  /** Calls (unary and streams) one caller may have open at once; a positive integer. */
  readonly maxPerCaller: number;
  /** The caller of a call, from its context values (set by the auth interceptor); undefined = not counted. */
  readonly caller: (values: ContextValues) => string | undefined;
}

/**
 * Bounds the calls one authenticated caller has open at once (500 parallel streams from one
 * caller were all admitted). Goes after the auth interceptor, whose caller it counts; calls without a
 * caller (health, reflection) pass. One call more is refused with 429 / RESOURCE_EXHAUSTED
 * `Too many concurrent calls` (the error table's exact message; the limit travels as ErrorInfo metadata
 * `limit: concurrent_calls`, `max: N`). A unary call counts until it answers,
 * a stream until its last message is sent or the call ends otherwise (cancel, deadline, error).
 * Throws a TypeError naming the option when `maxPerCaller` is invalid.
 */
export function createConcurrencyInterceptor(options: ConcurrencyInterceptorOptions): Interceptor {
  const { maxPerCaller, caller: callerOf } = options;
  if (!Number.isSafeInteger(maxPerCaller) || maxPerCaller < 1) {
    throw new TypeError(
      `createConcurrencyInterceptor: maxPerCaller must be a positive integer, got ${maxPerCaller}`,
    );
  }
  const metadata = { limit: "concurrent_calls", max: String(maxPerCaller) };
  const logFields = { limit: "concurrent_calls", limitMax: maxPerCaller };
  /** Open calls per caller; a caller with none has no entry, so the map holds only active callers. */
  const open = new Map<string, number>();

  return (next) => async (req) => {
    const caller = callerOf(req.contextValues);
    if (caller === undefined) return next(req);
    const count = open.get(caller) ?? 0;
    if (count >= maxPerCaller)
      throw toConnectError(new AppError("too_many_concurrent_calls", { metadata, logFields }));
    open.set(caller, count + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (open.get(caller) ?? 1) - 1;
      if (left > 0) open.set(caller, left);
      else open.delete(caller);
    };
    try {
      const res = await next(req);
      if (!res.stream) {
        release();
        return res;
      }
      // The stream ends when its messages are done, or when the call ends without reading them all: the
      // context signal is aborted at the end of every call.
      req.signal.addEventListener("abort", release, { once: true });
      return { ...res, message: releasing(res.message, release) } satisfies StreamResponse;
    } catch (err) {
      release();
      throw err;
    }
  };
}

async function* releasing<T>(messages: AsyncIterable<T>, release: () => void): AsyncGenerator<T> {
  try {
    yield* messages;
  } finally {
    release();
  }
}
