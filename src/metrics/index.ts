export {
  createMetrics,
  unknownLabel,
  type InFlight,
  type Metrics,
  type MetricsOptions,
  type RequestReport,
} from "./metrics.js";
export { createMetricsServer, type MetricsServer, type MetricsServerOptions } from "./metrics-server.js";
export { createMetricsEdge, type MetricsEdgeOptions } from "./metrics-edge.js";
