import type { EdgeEntry, EndListener } from "./exchange.js";

/** What became of the requests in flight when shutdown began (and of any that arrived during it). */
export interface DrainReport {
  /** Requests that ended during the grace: answered, or ended by their client. */
  readonly completed: number;
  /** Requests the server cut at the end of the grace (`cut: "server"` in their access lines). */
  readonly cut: number;
}

export interface DrainCount {
  /** The edge entry that counts (anywhere in the list: it only observes). */
  readonly entry: EdgeEntry;
  /** Shutdown began: from now on every request that ends is counted. */
  start(): void;
  /** The counts since `start()`. */
  report(): DrainReport;
}

/**
 * Counts how the requests open during the shutdown grace ended, for the one "Server stopped" line
 * (src/main.ts). Per request the cost is one end listener, shared by all requests (no closure).
 */
export function createDrainCount(): DrainCount {
  let draining = false;
  let completed = 0;
  let cut = 0;
  const ended: EndListener = (outcome) => {
    if (!draining) return;
    if (outcome.cut === "server") cut++;
    else completed++;
  };
  return {
    entry: (next) => (exchange) => {
      exchange.onEnd(ended);
      next(exchange);
    },
    start() {
      draining = true;
    },
    report: () => ({ completed, cut }),
  };
}
