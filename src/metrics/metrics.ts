import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { AuthFailureReason, AuthMethodTried } from "../auth/index.js";
import type { Exchange, Outcome, Protocol } from "../edge/index.js";
import type { BreakerState } from "../lib/circuit-breaker.js";
import type {
  BudgetScope,
  BudgetWindowName,
  RateLimitDimension,
  RateLimitResult,
  RateLimitSource,
} from "../limits/index.js";
import type { ProductConfig, SecretReadReport } from "../secrets/index.js";
import type { UpstreamCallReport } from "../upstream/index.js";
import type { CounterCell, HistogramCell } from "./families.js";
import { CounterFamily, HistogramFamily } from "./families.js";

/** One finished request, as the edge layer reports it. */
export interface RequestReport {
  /** `package.Service/Method`, or `unknown` for a request that reached no RPC (a 404 route). */
  readonly rpc: string;
  readonly protocol: Protocol;
  /** The product and model the caller named (caller input: bounded here against the configuration). */
  readonly product: string | undefined;
  readonly model: string | undefined;
  /** The HTTP status of the outcome (README error table; 499 for a caller that went away). */
  readonly status: number;
  /** The gRPC code name of the outcome (`OK`, `UNAUTHENTICATED`, ...). */
  readonly code: string;
  readonly durationSeconds: number;
  readonly promptTokens?: number | undefined;
  readonly completionTokens?: number | undefined;
  /** The tokens are the server's estimate (the provider's usage did not arrive: a call cut short). */
  readonly usageEstimated?: boolean | undefined;
}

/** Requests in progress: streaming calls, and all others (unary calls and requests not routed to an RPC). */
export interface InFlight {
  readonly unary: number;
  readonly streams: number;
}

export interface MetricsOptions {
  /** The server's version, for `api_key_server_build_info`. */
  readonly version: string;
  /** The products in use: only their names and models become label values, anything else is `unknown`. */
  readonly products: () => ReadonlyMap<string, ProductConfig> | undefined;
  /** The limiter before its first decision: `redis` when REDIS_URL is set, else `memory`. */
  readonly limiterSource: Extract<RateLimitSource, "redis" | "memory">;
  /** Wall clock in ms since the epoch, for the secrets' age. Default `Date.now`. */
  readonly now?: () => number;
  /** Collect prom-client's process and Node.js metrics (default true). */
  readonly processMetrics?: boolean;
}

/**
 * The metrics of the server (docs/runbook.ja.md §5) in their own registry, and the hooks that feed them.
 * Each hook has the shape of the option it is passed to (`ForwarderOptions.observer`,
 * `AuthInterceptorOptions.onFailure`, ...), so the components never import this module.
 */
export interface Metrics {
  readonly registry: Registry;
  /** A request finished (what the edge entry records, as a report: tests, other callers). */
  requestEnded(report: RequestReport): void;
  /**
   * The edge layer's one entry: a request finished. The same as `requestEnded`, read straight from the
   * exchange, so the request path builds no report object (the shape of an `Exchange.onEnd` listener).
   */
  readonly exchangeEnded: (outcome: Outcome, exchange: Exchange) => void;
  /**
   * The edge layer's one entry: where the in-flight gauges read, at each scrape, how many unary calls and
   * streams are open (it knows its live requests; counting there costs nothing per request beyond a Set).
   */
  countInFlight(read: () => InFlight): void;
  /** For `createForwarder({ observer })`. */
  readonly upstreamCallEnded: (report: UpstreamCallReport) => void;
  /** For `createAuthInterceptor({ onFailure })`. */
  readonly authFailed: (method: AuthMethodTried, reason: AuthFailureReason) => void;
  /** For `createCallGate({ onDecision })`. */
  readonly rateLimitDecided: (dimension: RateLimitDimension, result: RateLimitResult) => void;
  /** For the Redis spend store's and nonce store's `onFallback` (`budget`: calls with budgets checked locally). */
  redisFallback(component: "rate_limiter" | "nonce_store" | "budget"): () => void;
  /**
   * For `createChatCore({ onCost })`: a priced call's cost (`api_key_server_cost_usd_total`). Product and
   * model come from the configuration (the chat core resolved them), never from caller input.
   */
  readonly costAdded: (product: string, model: string, usd: number) => void;
  /** For `createCallGate({ onBudgetRefused })` (`api_key_server_budget_refusals_total`). */
  readonly budgetRefused: (product: string, scope: BudgetScope, window: BudgetWindowName) => void;
  /** For the Redis circuit breaker's `onStateChange` (createApp wires it when Redis is used). */
  readonly redisBreakerChanged: (state: BreakerState, previous: BreakerState) => void;
  /** For `createSecretStore({ onRead })`. */
  readonly secretRead: (report: SecretReadReport) => void;
}

/** Every name starts with this, so the server's series are easy to find next to the process ones. */
const prefix = "api_key_server_";

/**
 * Request durations from 1 ms (an auth refusal) to 300 s (Cloud Run's request timeout, the longest stream):
 * roughly 1-2.5-5 per decade, so a quantile is never off by more than a factor of 2.5.
 */
const requestBuckets = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300,
];

/** The label value of a product or model not in the configuration (never the caller's string). */
export const unknownLabel = "unknown";

/**
 * Builds the registry and its metrics. Label values are bounded: product and model come from the
 * configuration (else `unknown`), provider from the configuration, everything else from closed sets in
 * the code, so no caller input can add a series.
 */
export function createMetrics(options: MetricsOptions): Metrics {
  const now = options.now ?? Date.now;
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters, which `promtool check metrics` rejects; their per-type twins
    // (`nodejs_active_handles{type}`, ...) stay and sum to the same number.
    for (const name of ["handles", "requests", "resources"]) {
      registry.removeSingleMetric(`nodejs_active_${name}_total`);
    }
  }

  // prom-client metrics for what happens at most once per failed request or per refresh; the per-request
  // series (requests, durations, tokens, upstream calls) are cell families (./families.ts).
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter({ name: prefix + name, help, labelNames, registers: [registry] });
  const counterFamily = (name: string, help: string) => new CounterFamily(prefix + name, help, registry);
  const histogramFamily = (name: string, help: string) =>
    new HistogramFamily(prefix + name, help, registry, requestBuckets);

  const build = new Gauge({
    name: `${prefix}build_info`,
    help: "Always 1; the labels say which build is running.",
    labelNames: ["version", "node_version"] as const,
    registers: [registry],
  });
  build.set({ version: options.version, node_version: process.version }, 1);

  const requests = counterFamily(
    "requests_total",
    "Finished requests by RPC, protocol, product, model, HTTP status and gRPC code.",
  );
  const requestDuration = histogramFamily(
    "request_duration_seconds",
    "Time from a request's arrival to the end of its answer (the whole stream for a stream).",
  );
  const tokens = counterFamily(
    "tokens_total",
    "Tokens charged: in (prompt) and out (completion), by product and model; the providers' usage, or the estimate of a call cut short before it arrived (also counted in tokens_estimated_total).",
  );
  const estimatedTokens = counterFamily(
    "tokens_estimated_total",
    "The part of tokens_total the server estimated (docs/usage.md), by product, model and direction.",
  );
  let readInFlight = (): InFlight => ({ unary: 0, streams: 0 });
  new Gauge({
    name: `${prefix}in_flight_requests`,
    help: "Requests being answered now, streams excepted.",
    registers: [registry],
    collect() {
      this.set(readInFlight().unary);
    },
  });
  new Gauge({
    name: `${prefix}open_streams`,
    help: "Streaming calls open now.",
    registers: [registry],
    collect() {
      this.set(readInFlight().streams);
    },
  });

  const upstreamCalls = counterFamily(
    "upstream_requests_total",
    "Calls to providers by provider, model and outcome (ok, canceled, abandoned or the error code).",
  );
  const upstreamDuration = histogramFamily(
    "upstream_duration_seconds",
    "Provider call time, from sending the request to the end of the answer (or of the stream).",
  );
  const upstreamFirstByte = histogramFamily(
    "upstream_ttfb_seconds",
    "Streams: time from sending the request to the provider's first event.",
  );

  const authFailures = counter(
    "auth_failures_total",
    "Authentication failures by the method tried (jwt, hmac, none) and the logged reason.",
    ["method", "reason"],
  );
  const refusals = counter(
    "rate_limit_refusals_total",
    "Requests refused by our rate limit, by kind (requests or tokens per minute).",
    ["kind"],
  );
  const fallbacks = counter(
    "redis_fallbacks_total",
    "Calls decided by the local fallback because Redis failed, by component.",
    ["component"],
  );
  const cost = counter(
    "cost_usd_total",
    "Spend in USD at the products' prices, by product and model (priced models only).",
    ["product", "model"],
  );
  const budgetRefusals = counter(
    "budget_refusals_total",
    "Calls refused because a budget was spent, by product, scope (product or caller) and window (day or month).",
    ["product", "scope", "window"],
  );
  let limiterSource: RateLimitSource = options.limiterSource;
  const sources = ["redis", "memory", "fallback"] as const satisfies readonly RateLimitSource[];
  new Gauge({
    name: `${prefix}rate_limiter_source`,
    help: "1 for the source of the latest rate-limit decision (redis, memory or fallback), 0 for the others.",
    labelNames: ["source"] as const,
    registers: [registry],
    collect() {
      for (const source of sources) this.set({ source }, source === limiterSource ? 1 : 0);
    },
  });

  // The Redis circuit breaker (docs/ratelimit.md): only with Redis, where it exists, closed at start.
  let breakerState: BreakerState | undefined = options.limiterSource === "redis" ? "closed" : undefined;
  const breakerStates = ["closed", "open", "half-open"] as const satisfies readonly BreakerState[];
  new Gauge({
    name: `${prefix}redis_breaker_state`,
    help: "1 for the state the Redis circuit breaker is in (closed, open or half-open), 0 for the others.",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      if (breakerState === undefined) return;
      for (const state of breakerStates) this.set({ state }, state === breakerState ? 1 : 0);
    },
  });
  const breakerTransitions = counter(
    "redis_breaker_transitions_total",
    "State changes of the Redis circuit breaker, by the state it moved to.",
    ["state"],
  );
  // Present at 0 from the start, so `increase()` and alerts see the series before the first outage.
  if (breakerState !== undefined) for (const state of breakerStates) breakerTransitions.inc({ state }, 0);

  const secretLoads = counter(
    "secret_loads_total",
    "Reads of each secret at start and on refresh, by result (ok, missing, failed).",
    ["secret", "phase", "result"],
  );
  /** When each secret was last read successfully (ms since the epoch). */
  const lastGoodRead = new Map<string, number>();
  new Gauge({
    name: `${prefix}secrets_age_seconds`,
    help: "Seconds since each secret in use was last read successfully; grows while refreshes fail.",
    labelNames: ["secret"] as const,
    registers: [registry],
    collect() {
      const at = now();
      for (const [secret, readAt] of lastGoodRead) this.set({ secret }, Math.max(0, (at - readAt) / 1000));
    },
  });

  /**
   * The series of one (rpc, protocol, product, model), found by one Map lookup per label: created at the
   * first request with those labels, then reused, so a request allocates nothing here. Every key is a
   * label value already bounded (configuration, closed sets of the code), never raw caller input.
   */
  interface RequestSeries {
    readonly labels: Readonly<Record<"rpc" | "protocol" | "product" | "model", string>>;
    readonly duration: HistogramCell;
    /** HTTP status, then gRPC code name. */
    readonly outcomes: Map<number, Map<string, CounterCell>>;
    readonly tokens: TokenSeries;
  }
  interface TokenSeries {
    readonly labels: Readonly<Record<"product" | "model", string>>;
    in: CounterCell | undefined;
    out: CounterCell | undefined;
    estimatedIn: CounterCell | undefined;
    estimatedOut: CounterCell | undefined;
  }
  const requestSeries = new Map<string, Map<string, Map<string, Map<string, RequestSeries>>>>();
  const tokenSeries = new Map<string, Map<string, TokenSeries>>();

  function seriesOf(rpc: string, protocol: string, product: string, model: string): RequestSeries {
    const byProtocol = inner(requestSeries, rpc);
    const byProduct = inner(byProtocol, protocol);
    const byModel = inner(byProduct, product);
    let series = byModel.get(model);
    if (series === undefined) {
      const labels = { rpc, protocol, product, model };
      series = {
        labels,
        duration: requestDuration.cell(labels),
        outcomes: new Map(),
        tokens: getOrAdd(inner(tokenSeries, product), model, () => ({
          labels: { product, model },
          in: undefined,
          out: undefined,
          estimatedIn: undefined,
          estimatedOut: undefined,
        })),
      };
      byModel.set(model, series);
    }
    return series;
  }

  function outcomeOf(series: RequestSeries, status: number, code: string): CounterCell {
    const byCode = inner(series.outcomes, status);
    let cell = byCode.get(code);
    if (cell === undefined) {
      cell = requests.cell({ ...series.labels, status: String(status), code });
      byCode.set(code, cell);
    }
    return cell;
  }

  /** Records one finished request (positional, so the edge's call allocates nothing). */
  function recordRequest(
    rpc: string,
    protocol: string,
    productName: string | undefined,
    modelName: string | undefined,
    status: number,
    code: string,
    durationSeconds: number,
    promptTokens: number | undefined,
    completionTokens: number | undefined,
    usageEstimated: boolean | undefined,
  ): void {
    // The product label: the configured name the caller gave, else `unknown`; none when no product applies.
    let product = "";
    let config: ProductConfig | undefined;
    if (productName !== undefined && productName !== "") {
      config = options.products()?.get(productName);
      product = config === undefined ? unknownLabel : productName;
    }
    let model = "";
    if (modelName !== undefined && modelName !== "") {
      model = config?.models.has(modelName) === true ? modelName : unknownLabel;
    }
    const series = seriesOf(rpc, protocol, product, model);
    outcomeOf(series, status, code).inc();
    series.duration.observe(durationSeconds);
    if (promptTokens !== undefined && promptTokens > 0) {
      series.tokens.in ??= tokens.cell({ ...series.tokens.labels, direction: "in" });
      series.tokens.in.inc(promptTokens);
    }
    if (completionTokens !== undefined && completionTokens > 0) {
      series.tokens.out ??= tokens.cell({ ...series.tokens.labels, direction: "out" });
      series.tokens.out.inc(completionTokens);
    }
    if (usageEstimated === true) {
      const t = series.tokens;
      if (promptTokens !== undefined && promptTokens > 0) {
        t.estimatedIn ??= estimatedTokens.cell({ ...t.labels, direction: "in" });
        t.estimatedIn.inc(promptTokens);
      }
      if (completionTokens !== undefined && completionTokens > 0) {
        t.estimatedOut ??= estimatedTokens.cell({ ...t.labels, direction: "out" });
        t.estimatedOut.inc(completionTokens);
      }
    }
  }

  /** Upstream series by provider name, then model label. */
  interface UpstreamSeries {
    readonly labels: Readonly<Record<"provider" | "model", string>>;
    readonly duration: HistogramCell;
    firstByte: HistogramCell | undefined;
    readonly outcomes: Map<string, CounterCell>;
  }
  const upstreamSeries = new Map<string, Map<string, UpstreamSeries>>();

  return {
    registry,

    requestEnded(report) {
      recordRequest(
        report.rpc,
        report.protocol,
        report.product,
        report.model,
        report.status,
        report.code,
        report.durationSeconds,
        report.promptTokens,
        report.completionTokens,
        report.usageEstimated,
      );
    },

    exchangeEnded(outcome, exchange) {
      const { record } = exchange;
      recordRequest(
        exchange.rpc ?? "",
        exchange.protocol,
        record.product,
        record.model,
        outcome.status,
        outcome.code,
        outcome.latencySeconds,
        record.promptTokens,
        record.completionTokens,
        record.usageEstimated,
      );
    },

    countInFlight(read) {
      readInFlight = read;
    },

    upstreamCallEnded(report) {
      const { provider } = report;
      const model = provider.models.includes(report.model) ? report.model : unknownLabel;
      const byModel = inner(upstreamSeries, provider.name);
      let series = byModel.get(model);
      if (series === undefined) {
        const labels = { provider: provider.name, model };
        series = {
          labels,
          duration: upstreamDuration.cell(labels),
          firstByte: undefined,
          outcomes: new Map(),
        };
        byModel.set(model, series);
      }
      let calls = series.outcomes.get(report.outcome);
      if (calls === undefined) {
        calls = upstreamCalls.cell({ ...series.labels, outcome: report.outcome });
        series.outcomes.set(report.outcome, calls);
      }
      calls.inc();
      series.duration.observe(report.durationSeconds);
      if (report.firstEventSeconds !== undefined) {
        series.firstByte ??= upstreamFirstByte.cell(series.labels);
        series.firstByte.observe(report.firstEventSeconds);
      }
    },

    authFailed(method, reason) {
      authFailures.inc({ method, reason });
    },

    rateLimitDecided(dimension, result) {
      limiterSource = result.source;
      if (!result.allowed) refusals.inc({ kind: dimension });
    },

    redisFallback(component) {
      const child = fallbacks.labels({ component });
      // Present at 0 from the start, so `rate()` and alerts see the series before the first outage.
      child.inc(0);
      return () => child.inc();
    },

    costAdded(product, model, usd) {
      if (usd > 0) cost.inc({ product, model }, usd);
    },

    budgetRefused(product, scope, window) {
      budgetRefusals.inc({ product, scope, window });
    },

    redisBreakerChanged(state) {
      breakerState = state;
      breakerTransitions.inc({ state });
    },

    secretRead(report) {
      secretLoads.inc({ secret: report.secret, phase: report.phase, result: report.result });
      if (report.result !== "failed") lastGoodRead.set(report.secret, now());
    },
  };
}

/** The map under `key` in a map of maps, added empty when missing. */
function inner<K, K2, V>(map: Map<K, Map<K2, V>>, key: K): Map<K2, V> {
  let value = map.get(key);
  if (value === undefined) {
    value = new Map<K2, V>();
    map.set(key, value);
  }
  return value;
}

function getOrAdd<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}
