export {
  createMetrics,
  unknownLabel,
  type InFlight,
  type Metrics,
  type MetricsOptions,
  type RequestProtocol,
  type RequestReport,
} from "./metrics.js";
export { createMetricsServer, type MetricsServer, type MetricsServerOptions } from "./metrics-server.js";
