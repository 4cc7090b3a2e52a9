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
 * requests in flight, read at each scrape from the live list here.
 *
 * The live list is a plain array (swap-remove on end, a scan bounded by the requests in flight), not a
 * `Set`: with a Set of exchanges the server spent 5-20% more CPU per request at 32 connections, nearly all
 * of it in the garbage collector (longer scavenges, less freed per scavenge), which the array does not
 * cost (bench/RESULTS.md, "Metrics: what they cost per request").
 */
export function createMetricsEdge(options: MetricsEdgeOptions): EdgeEntry {
  const { metrics } = options;
  const streaming: ReadonlySet<string> = new Set(options.streamingRpcs);
  const live: Exchange[] = [];
  metrics.countInFlight(() => {
    let streams = 0;
    for (const exchange of live) if (exchange.rpc !== undefined && streaming.has(exchange.rpc)) streams += 1;
    return { unary: live.length - streams, streams };
  });
  // One listener for every request (no closure per request): out of the live list, then recorded.
  const ended = (outcome: Outcome, exchange: Exchange): void => {
    const at = live.lastIndexOf(exchange);
    if (at >= 0) {
      const last = live.pop();
      if (last !== undefined && at < live.length) live[at] = last;
    }
    metrics.exchangeEnded(outcome, exchange);
  };
  return (next) => (exchange) => {
    live.push(exchange);
    exchange.onEnd(ended);
    next(exchange);
  };
}
