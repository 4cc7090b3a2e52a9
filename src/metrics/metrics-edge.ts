import type { EdgeEntry, Exchange, Outcome } from "../edge/index.js";
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
  // One listener for every request (no closure per request): out of the live set, then recorded.
  const ended = (outcome: Outcome, exchange: Exchange): void => {
    live.delete(exchange);
    metrics.exchangeEnded(outcome, exchange);
  };
  return (next) => (exchange) => {
    live.add(exchange);
    exchange.onEnd(ended);
    next(exchange);
  };
}
