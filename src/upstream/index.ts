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
} from "./types.js";
export { UpstreamFailure } from "./failure.js";
