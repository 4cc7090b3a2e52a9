import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AuthFailureReason, AuthMethodTried } from "../auth/index.js";
import type { Protocol } from "../edge/index.js";
import type { RateLimitDimension, RateLimitResult, RateLimitSource } from "../ratelimit/index.js";
import type { ProductConfig, SecretReadReport } from "../secrets/index.js";
import type { UpstreamCallReport } from "../upstream/index.js";

/** One finished request, as the edge layer reports it. */
export interface RequestReport {
  /** `package.Service/Method`, or `unknown` for a request that reached no RPC (a 404 route). */
  readonly rpc: string;
  readonly protocol: Protocol;
  /** The product and model the caller named (caller input: bounded here against the configuration). */
  readonly product: string | undefined;
  readonly model: string | undefined;
  /** The HTTP status of the outcome (SPEC S7 table; 499 for a caller that went away). */
  readonly status: number;
  /** The gRPC code name of the outcome (`OK`, `UNAUTHENTICATED`, ...). */
  readonly code: string;
  readonly durationSeconds: number;
  readonly promptTokens?: number | undefined;
  readonly completionTokens?: number | undefined;
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
  /** The edge layer's one entry: a request finished. */
  requestEnded(report: RequestReport): void;
  /**
   * The edge layer's one entry: where the in-flight gauges read, at each scrape, how many unary calls and
   * streams are open (it knows its live requests; counting there costs nothing per request beyond a Set).
   */
  countInFlight(read: () => InFlight): void;
  /** For `createForwarder({ observer })`. */
  readonly upstreamCallEnded: (report: UpstreamCallReport) => void;
  /** For `createAuthInterceptor({ onFailure })`. */
  readonly authFailed: (method: AuthMethodTried, reason: AuthFailureReason) => void;
  /** For `createChatLimiter({ onDecision })`. */
  readonly rateLimitDecided: (dimension: RateLimitDimension, result: RateLimitResult) => void;
  /** For the Redis limiter's and nonce store's `onFallback`. */
  redisFallback(component: "rate_limiter" | "nonce_store"): () => void;
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

  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter({ name: prefix + name, help, labelNames, registers: [registry] });
  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Histogram({ name: prefix + name, help, labelNames, buckets: requestBuckets, registers: [registry] });

  const build = new Gauge({
    name: `${prefix}build_info`,
    help: "Always 1; the labels say which build is running.",
    labelNames: ["version", "node_version"] as const,
    registers: [registry],
  });
  build.set({ version: options.version, node_version: process.version }, 1);

  const requests = counter(
    "requests_total",
    "Finished requests by RPC, protocol, product, model, HTTP status and gRPC code.",
    ["rpc", "protocol", "product", "model", "status", "code"],
  );
  const requestDuration = histogram(
    "request_duration_seconds",
    "Time from a request's arrival to the end of its answer (the whole stream for a stream).",
    ["rpc", "protocol", "product", "model"],
  );
  const tokens = counter(
    "tokens_total",
    "Tokens the providers reported: in (prompt) and out (completion), by product and model.",
    ["product", "model", "direction"],
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

  const upstreamCalls = counter(
    "upstream_requests_total",
    "Calls to providers by provider, model and outcome (ok, canceled, abandoned or the error code).",
    ["provider", "model", "outcome"],
  );
  const upstreamDuration = histogram(
    "upstream_duration_seconds",
    "Provider call time, from sending the request to the end of the answer (or of the stream).",
    ["provider", "model"],
  );
  const upstreamFirstByte = histogram(
    "upstream_ttfb_seconds",
    "Streams: time from sending the request to the provider's first event.",
    ["provider", "model"],
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

  /** The product label: the configured name the caller gave, else `unknown`; none when no product applies. */
  function productOf(name: string | undefined): { label: string; config: ProductConfig | undefined } {
    if (name === undefined || name === "") return { label: "", config: undefined };
    const config = options.products()?.get(name);
    return config === undefined ? { label: unknownLabel, config } : { label: name, config };
  }

  return {
    registry,

    requestEnded(report) {
      const product = productOf(report.product);
      let model = "";
      if (report.model !== undefined && report.model !== "") {
        model = product.config?.models.has(report.model) === true ? report.model : unknownLabel;
      }
      const series = { rpc: report.rpc, protocol: report.protocol, product: product.label, model };
      requests.inc({ ...series, status: String(report.status), code: report.code });
      requestDuration.observe(series, report.durationSeconds);
      if (report.promptTokens !== undefined && report.promptTokens > 0) {
        tokens.inc({ product: product.label, model, direction: "in" }, report.promptTokens);
      }
      if (report.completionTokens !== undefined && report.completionTokens > 0) {
        tokens.inc({ product: product.label, model, direction: "out" }, report.completionTokens);
      }
    },

    countInFlight(read) {
      readInFlight = read;
    },

    upstreamCallEnded(report) {
      const { provider } = report;
      const model = provider.models.includes(report.model) ? report.model : unknownLabel;
      upstreamCalls.inc({ provider: provider.name, model, outcome: report.outcome });
      upstreamDuration.observe({ provider: provider.name, model }, report.durationSeconds);
      if (report.firstEventSeconds !== undefined) {
        upstreamFirstByte.observe({ provider: provider.name, model }, report.firstEventSeconds);
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

    secretRead(report) {
      secretLoads.inc({ secret: report.secret, phase: report.phase, result: report.result });
      if (report.result !== "failed") lastGoodRead.set(report.secret, now());
    },
  };
}
