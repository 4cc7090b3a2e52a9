export { createForwarder, type Forwarder, type ForwarderOptions, type ForwardOptions } from "./forwarder.js";
export type {
  JsonObject,
  JsonValue,
  TokenUsage,
  UpstreamResult,
  Clock,
  UpstreamCallReport,
  UpstreamObserver,
  UpstreamOutcome,
  PassthroughRequest,
} from "./types.js";
export type { SseEvent } from "./sse.js";
export { UpstreamFailure } from "./failure.js";
/** A JSON value that is an object (not null, not an array). */
export { isObject } from "./providers/shared.js";
