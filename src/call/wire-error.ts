import type { ConnectError, ContextValues, Interceptor } from "@connectrpc/connect";
import { exchangeKey, shutdownCutError } from "../edge/exchange.js";
import { AppError, toConnectError } from "../errors/index.js";

/**
 * Turns what a call threw into its wire error (through toConnectError, the one converter) and records it
 * on the call's exchange for the access line and metrics. A call whose signal was aborted by the end of
 * the shutdown grace fails with UNAVAILABLE whatever the inner layers made of the abort (the upstream
 * reports a cancel). For code that fails a call outside the interceptor chain (a connect `requestGate`, a
 * dispatcher): throw what this returns.
 */
export function failCall(values: ContextValues, thrown: unknown, signal?: AbortSignal): ConnectError {
  const err = signal?.reason === shutdownCutError ? shutdownCutError : toConnectError(thrown);
  const exchange = values.get(exchangeKey);
  if (exchange !== undefined) exchange.error = err;
  return err;
}

/**
 * The outermost interceptor: the one place where anything thrown inside a call (AppError from the service,
 * the auth interceptor, the limiter, the upstream) becomes the ConnectError that goes on the wire. Streams
 * included: an error between two messages is converted the same way.
 */
export function createWireErrorInterceptor(): Interceptor {
  return (next) => async (req) => {
    let res;
    try {
      res = await next(req);
    } catch (thrown) {
      throw failCall(req.contextValues, thrown, req.signal);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (thrown) {
          throw failCall(req.contextValues, thrown, req.signal);
        }
      })(),
    };
  };
}

/** Whether a wire error is the refusal of a request body over the limit (413 `Request too large`). */
export function isRequestTooLarge(error: ConnectError | undefined): boolean {
  return error?.cause instanceof AppError && error.cause.code === "request_too_large";
}
