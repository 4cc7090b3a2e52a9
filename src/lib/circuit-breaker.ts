import type { Logger } from "pino";

/** `closed`: calls go through. `open`: calls fail at once. `half-open`: one probe is checking recovery. */
export type BreakerState = "closed" | "open" | "half-open";

export interface CircuitBreakerOptions {
  /** What is guarded, for the log lines ("Redis"). */
  readonly name: string;
  /** Consecutive failures that open the breaker (default 3). */
  readonly failureThreshold?: number;
  /** How long an open breaker fails calls at once before probing (default 5_000 ms). */
  readonly coolDownMs?: number;
  /**
   * Checks recovery once the cool-down is over (e.g. a Redis PING). It runs in the background, one at a
   * time, never on a caller's time: callers keep failing fast until it succeeds.
   */
  readonly probe: () => Promise<unknown>;
  /** Receives every state change as one log line: WARNING when opening, INFO otherwise. */
  readonly logger: Logger;
  /** Called on every state change (a metrics hook: a gauge of the state, a counter of openings). */
  readonly onStateChange?: (state: BreakerState, previous: BreakerState) => void;
  /** Clock in ms (default `Date.now`). */
  readonly now?: () => number;
}

export interface CircuitBreaker {
  /** Runs `call`, or throws {@link BreakerOpenError} at once while the breaker is not closed. */
  run<T>(call: () => Promise<T>): Promise<T>;
  /** The current state. */
  readonly state: BreakerState;
  /**
   * Closes the breaker at once, for outside proof that the dependency is back (a Redis client that has
   * just reconnected), so calls need not wait for the cool-down and a probe.
   */
  reset(reason: string): void;
}

/** Thrown instead of calling a dependency that the breaker considers down. */
export class BreakerOpenError extends Error {
  override readonly name = "BreakerOpenError";
}

/**
 * A circuit breaker for a dependency whose failures are slow (a hung Redis costs every command its full
 * timeout): after `failureThreshold` consecutive failures, calls fail at once for `coolDownMs`, so callers
 * go to their fallback without waiting; then one background probe at a time decides whether calls go
 * through again. Throws a TypeError naming the option when an option is invalid.
 */
export function createCircuitBreaker(options: CircuitBreakerOptions): CircuitBreaker {
  const failureThreshold = options.failureThreshold ?? 3;
  const coolDownMs = options.coolDownMs ?? 5_000;
  if (!Number.isSafeInteger(failureThreshold) || failureThreshold < 1) {
    throw new TypeError(
      `createCircuitBreaker: failureThreshold must be a positive integer, got ${failureThreshold}`,
    );
  }
  if (!Number.isFinite(coolDownMs) || coolDownMs < 0) {
    throw new TypeError(`createCircuitBreaker: coolDownMs must be >= 0, got ${coolDownMs}`);
  }
  const { name, logger, probe, onStateChange } = options;
  const now = options.now ?? Date.now;
  let state: BreakerState = "closed";
  let failures = 0;
  let openedAt = 0;

  const moveTo = (next: BreakerState, fields: Record<string, unknown> = {}): void => {
    const previous = state;
    if (previous === next) return;
    state = next;
    if (next === "open") {
      logger.warn(
        { breaker: name, state: next, previous, coolDownMs, ...fields },
        `${name} circuit breaker open: calls use the local fallback without waiting for ${name}`,
      );
    } else {
      logger.info({ breaker: name, state: next, previous, ...fields }, `${name} circuit breaker ${next}`);
    }
    onStateChange?.(next, previous);
  };

  const startProbe = (): void => {
    moveTo("half-open");
    probe().then(
      () => {
        failures = 0;
        moveTo("closed");
      },
      (err: unknown) => {
        openedAt = now();
        moveTo("open", { cause: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
      },
    );
  };

  return {
    get state() {
      return state;
    },
    reset(reason) {
      failures = 0;
      moveTo("closed", { reason });
    },
    async run(call) {
      if (state === "open" && now() - openedAt >= coolDownMs) startProbe();
      if (state !== "closed") throw new BreakerOpenError(`${name} circuit breaker is ${state}`);
      try {
        const result = await call();
        failures = 0;
        return result;
      } catch (err) {
        failures += 1;
        // Calls that were already waiting when the breaker opened fail too; they must not reopen it later.
        if (failures >= failureThreshold && state === "closed") {
          openedAt = now();
          moveTo("open", { consecutiveFailures: failures });
        }
        throw err;
      }
    },
  };
}
