import type { Logger } from "../log/index.js";

/**
 * Logs a failing dependency at most once per interval (with the number of fallbacks since the last line)
 * and once when it recovers, so an outage is visible at `severity>=ERROR` without flooding the log.
 */
export interface FailureReporter {
  failed(cause: unknown): void;
  succeeded(): void;
}

export function createFailureReporter(options: {
  readonly logger: Logger;
  readonly what: string;
  readonly intervalMs: number;
  readonly now: () => number;
  readonly onFallback: (() => void) | undefined;
}): FailureReporter {
  const { logger, what, intervalMs, now, onFallback } = options;
  let down = false;
  let lastLogAt = Number.NEGATIVE_INFINITY;
  let unreported = 0;
  return {
    failed(cause) {
      onFallback?.();
      down = true;
      unreported += 1;
      const at = now();
      if (at - lastLogAt < intervalMs) return;
      lastLogAt = at;
      logger.error(
        { cause: describe(cause), fallbacks: unreported },
        `${what}: Redis unavailable, using the local fallback`,
      );
      unreported = 0;
    },
    succeeded() {
      if (!down) return;
      down = false;
      lastLogAt = Number.NEGATIVE_INFINITY;
      logger.warn({ fallbacks: unreported }, `${what}: Redis is back`);
      unreported = 0;
    },
  };
}

// Only the error's class and message: Redis client errors carry host and port, never the URL's password.
function describe(cause: unknown): string {
  if (cause instanceof Error) return `${cause.name}: ${cause.message}`;
  return String(cause);
}
