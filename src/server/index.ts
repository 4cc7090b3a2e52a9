export {
  createOnePortServer,
  defaultMaxHeaderBytes,
  type OnePortServer,
  type OnePortServerOptions,
  type NodeHandler,
} from "./one-port.js";
export {
  createConnectOptions,
  defaultBodyLimitBytes,
  defaultMaxTimeoutMs,
  defaultWriteMaxBytes,
  type ConnectOptions,
  type ConnectOptionsInput,
} from "./connect-options.js";
export { registerHealth, type HealthOptions, type Readiness } from "./health.js";
export { registerReflection } from "./reflection.js";
export {
  createConnectDispatch,
  type ConnectDispatch,
  type ConnectDispatchOptions,
} from "./connect-dispatch.js";
export { createDispatch, type DispatchOptions } from "./dispatch.js";
