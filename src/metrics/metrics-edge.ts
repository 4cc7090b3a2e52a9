import type { EdgeEntry, Exchange } from "../edge/index.js";
import type { Metrics } from "./metrics.js";

export interface MetricsEdgeOptions {
  readonly metrics: Metrics;
  /** The streaming RPCs (`package.Service/Method`): their calls count as open streams, others as in flight. */
  readonly streamingRpcs: Iterable<string>;
}

/**
 * The edge entry that records every request once, when its response is over: requests by RPC, protocol,
 * product, model and outcome, their duration and token usage (from the call's AccessRecord), and the
 * requests in flight, read at each scrape from the live set here.
 */
export function createMetricsEdge(options: MetricsEdgeOptions): EdgeEntry {
  const { metrics } = options;
  const streaming: ReadonlySet<string> = new Set(options.streamingRpcs);
  const live = new Set<Exchange>();
  metrics.countInFlight(() => {
    let streams = 0;
    for (const exchange of live) if (exchange.rpc !== undefined && streaming.has(exchange.rpc)) streams += 1;
    return { unary: live.size - streams, streams };
  });
  return (next) => (exchange) => {
    live.add(exchange);
    exchange.onEnd((outcome) => {
      live.delete(exchange);
      const { record } = exchange;
      metrics.requestEnded({
        rpc: exchange.rpc ?? "",
        protocol: exchange.protocol,
        product: record.product,
        model: record.model,
        status: outcome.status,
        code: outcome.code,
        durationSeconds: outcome.latencySeconds,
        promptTokens: record.promptTokens,
        completionTokens: record.completionTokens,
      });
    });
    next(exchange);
  };
}
