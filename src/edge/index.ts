export {
  composeEdge,
  exchangeKey,
  shutdownCutError,
  type EdgeEntry,
  type EdgeHandler,
  type EdgeOptions,
  type EndListener,
  type Exchange,
  type NodeListener,
  type NodeServerRequest,
  type NodeServerResponse,
  type Outcome,
  type Protocol,
} from "./exchange.js";
export { createAccessLogEdge, type AccessLogEdgeOptions } from "./access-log.js";
export { createDrainCount, type DrainCount, type DrainReport } from "./drain-count.js";
export { createHeaderLimitEdge, type HeaderLimitEdgeOptions } from "./header-limit.js";
export { createCors, createCorsEdge, type Cors, type CorsDecision, type CorsOptions } from "./cors.js";
