import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";

// Copies of connect-es 2.3.0 internals the call pipeline needs (src/call/in-process-call.ts) that connect
// does not export, and connect-node's mapping of HTTP/2 reset codes. The differential tests
// (test/server/grpc-unary.test.ts, connect-unary.test.ts, stream-codecs.test.ts) pin them. Re-check on
// upgrade.

export type UnaryFn = (req: UnaryRequest) => Promise<UnaryResponse>;
export type StreamingFn = (req: StreamRequest) => Promise<StreamResponse>;

/** connect's applyInterceptors (interceptor.js, not exported): the first interceptor is the outermost. */
export function intercept<F extends UnaryFn | StreamingFn>(next: F, interceptors: readonly Interceptor[]): F {
  let fn = next as unknown as Parameters<Interceptor>[0];
  for (let i = interceptors.length - 1; i >= 0; i--) fn = (interceptors[i] as Interceptor)(fn);
  return fn as unknown as F;
}

/** connect's copyHeaders (invoke-implementation.js): `to` becomes a copy of `from`. */
export function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}

/** Why a call's signal aborts when its client went away: connect-node's mapping of HTTP/2 reset codes. */
export function cancelReason(rstCode: number | undefined): ConnectError {
  const text =
    rstCode === undefined
      ? "the client went away"
      : `http/2 stream closed with error code 0x${rstCode.toString(16)}`;
  switch (rstCode) {
    case 0x7: // REFUSED_STREAM
      return new ConnectError(text, Code.Unavailable);
    case 0xb: // ENHANCE_YOUR_CALM
      return new ConnectError(text, Code.ResourceExhausted);
    case 0xc: // INADEQUATE_SECURITY
    case 0xd: // HTTP_1_1_REQUIRED
      return new ConnectError(text, Code.PermissionDenied);
    case 0x1:
    case 0x2:
    case 0x3:
    case 0x4:
    case 0x6:
    case 0x9:
    case 0xa:
      return new ConnectError(text, Code.Internal);
    default: // CANCEL (0x8), no reset (a closed HTTP/1.1 connection), anything else
      return new ConnectError(text, Code.Canceled);
  }
}
