import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Message } from "@bufbuild/protobuf";

/** Where the capture interceptor leaves a unary REST call's response message for the transcoder. */
export interface RestResponseSlot {
  message: Message | undefined;
}

/** Set by the REST transcoder on each unary call it makes; undefined for gRPC and Connect calls. */
export const restResponseSlotKey = createContextKey<RestResponseSlot | undefined>(undefined, {
  description: "response slot of a REST call",
});

/**
 * Hands a unary REST call's response message straight to the transcoder, which then skips decoding the
 * serialized answer. Optional: without it the transcoder decodes the response bytes instead. Place it first
 * (outermost) in the router's interceptors so that it sees the message every other interceptor has seen;
 * it does not change the call in any way and does nothing for gRPC and Connect calls.
 */
export const restCaptureInterceptor: Interceptor = (next) => async (req) => {
  const res = await next(req);
  if (!res.stream) {
    const slot = req.contextValues.get(restResponseSlotKey);
    if (slot !== undefined) slot.message = res.message;
  }
  return res;
};
