import type { RateLimitPolicy } from "./types.js";

/**
 * The generic cell rate algorithm, in integer microseconds so that burst edges are exact. The Lua script
 * in redis-script.ts is the same computation; keep both in step.
 *
 * State per key is one number, the theoretical arrival time (TAT). Each unit moves the TAT forward by the
 * emission interval T = ceil(window / limit); a request fits while TAT - now stays within limit × T.
 */
export type GcraMode = "consume" | "charge";

export interface GcraOutcome {
  readonly allowed: boolean;
  /** The TAT to store (µs), or undefined when nothing changes. */
  readonly newTatUs: number | undefined;
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryAfterMs: number;
}

export function gcra(
  storedTatUs: number | undefined,
  nowUs: number,
  policy: RateLimitPolicy,
  cost: number,
  mode: GcraMode,
): GcraOutcome {
  const interval = Math.ceil((policy.windowMs * 1000) / policy.limit);
  const tolerance = interval * policy.limit;
  const tat = storedTatUs === undefined || storedTatUs < nowUs ? nowUs : storedTatUs;
  let allowed: boolean;
  let next: number;
  let retryUs = 0;
  if (mode === "charge") {
    next = tat + Math.ceil(cost * interval);
    allowed = next + interval - nowUs <= tolerance;
    if (!allowed) retryUs = next + interval - nowUs - tolerance;
  } else {
    const candidate = tat + Math.ceil(Math.max(cost, 1) * interval);
    allowed = candidate - nowUs <= tolerance;
    if (allowed) {
      next = tat + Math.ceil(cost * interval);
    } else {
      next = tat;
      retryUs = candidate - nowUs - tolerance;
    }
  }
  return {
    allowed,
    newTatUs: next > nowUs && next !== storedTatUs ? next : undefined,
    remaining: Math.max(0, Math.floor((tolerance - (next - nowUs)) / interval)),
    resetMs: Math.ceil((next - nowUs) / 1000),
    retryAfterMs: Math.ceil(retryUs / 1000),
  };
}

/** Throws a TypeError naming the bad field; limits come from validated config, so this is a bug guard. */
export function assertValid(policy: RateLimitPolicy, cost: number): void {
  if (!Number.isSafeInteger(policy.limit) || policy.limit < 1) {
    throw new TypeError(`rate limit policy: limit must be a positive integer, got ${String(policy.limit)}`);
  }
  if (!Number.isSafeInteger(policy.windowMs) || policy.windowMs < 1) {
    throw new TypeError(
      `rate limit policy: windowMs must be a positive integer, got ${String(policy.windowMs)}`,
    );
  }
  if (!Number.isFinite(cost) || cost < 0) {
    throw new TypeError(`rate limit cost must be a finite number >= 0, got ${String(cost)}`);
  }
}
