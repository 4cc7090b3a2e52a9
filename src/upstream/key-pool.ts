import { AppError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import type { ProviderConfig } from "../secrets/types.js";
import { UpstreamFailure, defaultRetryAfterMs } from "./failure.js";
import type { Clock } from "./types.js";

/**
 * Spreads calls over a provider's keys (`api_keys`, docs/config.md). A key that answered 429 rests until its
 * Retry-After; one that answered 401/403 is taken out until the product secret changes (a refresh that
 * loads new content builds new provider objects, and state is kept per provider object). The last usable
 * key of a pool is never taken out. A provider with one key (the runbook's `api_key`) is no pool: its key
 * neither rests nor is taken out, so every call reaches the provider exactly as before pools existed.
 */
export interface KeyPools {
  /**
   * The next usable key index of `provider`, round robin. Throws AppError `rate_limited` (with the earliest
   * time a key is back) when every usable key rests.
   */
  pick(provider: ProviderConfig): number;
  /** Another usable key than `tried` for a retry, or undefined when there is none. */
  another(provider: ProviderConfig, tried: number): number | undefined;
  /** Records how a key's attempt failed: 429 rests it, 401/403 takes it out. */
  report(provider: ProviderConfig, keyIndex: number, error: AppError, requestId?: string): void;
}

/**
 * The longest a key rests. OpenAI's reset headers can announce minutes (when the whole window refills, not
 * when the next call may pass); a key still throttled after a minute answers 429 again and rests again.
 */
const maxRestMs = 60_000;

interface PoolState {
  /** Per key: ms since the epoch until which it rests (0: not resting). */
  readonly restUntil: number[];
  /** Per key: taken out after a 401/403. */
  readonly out: boolean[];
  cursor: number;
}

export function createKeyPools(options: { readonly clock: Clock; readonly logger: Logger }): KeyPools {
  const { clock, logger } = options;
  const states = new WeakMap<ProviderConfig, PoolState>();

  function stateOf(provider: ProviderConfig): PoolState {
    let state = states.get(provider);
    if (state === undefined) {
      const n = provider.apiKeys.length;
      state = { restUntil: new Array<number>(n).fill(0), out: new Array<boolean>(n).fill(false), cursor: 0 };
      states.set(provider, state);
    }
    return state;
  }

  /** The first usable key from the cursor on, skipping `skip`; moves the cursor past it. */
  function next(provider: ProviderConfig, skip: number | undefined): number | undefined {
    const n = provider.apiKeys.length;
    // No pool: nothing to spread, rest or take out.
    if (n <= 1) return skip === 0 ? undefined : 0;
    const state = stateOf(provider);
    const now = clock.now();
    for (let i = 0; i < n; i++) {
      const index = (state.cursor + i) % n;
      if (index === skip || state.out[index] || (state.restUntil[index] ?? 0) > now) continue;
      state.cursor = (index + 1) % n;
      return index;
    }
    return undefined;
  }

  return {
    pick(provider) {
      const index = next(provider, undefined);
      if (index !== undefined) return index;
      const state = stateOf(provider);
      const now = clock.now();
      const backAt = Math.min(...state.restUntil.filter((until, i) => !state.out[i] && until > now));
      const retryAfterMs = Number.isFinite(backAt) ? backAt - now : defaultRetryAfterMs;
      throw new AppError("rate_limited", {
        logFields: { limit: "provider" },
        retryAfterMs,
        cause: new UpstreamFailure(
          provider,
          `every key is resting after a 429 (next back in ${retryAfterMs} ms)`,
        ),
      });
    },

    another(provider, tried) {
      return next(provider, tried);
    },

    report(provider, keyIndex, error, requestId) {
      if (provider.apiKeys.length <= 1) return;
      const status = error.cause instanceof UpstreamFailure ? error.cause.status : undefined;
      const state = stateOf(provider);
      const fields = {
        requestId,
        provider: provider.name,
        providerKind: provider.kind,
        keyIndex,
        upstreamStatus: status,
      };
      if (status === 429) {
        const retryAfterMs = Math.min(error.retryAfterMs ?? defaultRetryAfterMs, maxRestMs);
        state.restUntil[keyIndex] = clock.now() + retryAfterMs;
        logger.warn({ ...fields, retryAfterMs }, "Provider key resting after a 429");
      } else if (status === 401 || status === 403) {
        const usable = state.out.filter((out) => !out).length;
        if (state.out[keyIndex] === true || usable <= 1) return;
        state.out[keyIndex] = true;
        logger.error(
          fields,
          "Provider key taken out after a 401/403 until the product secret changes; check that key",
        );
      }
    },
  };
}
