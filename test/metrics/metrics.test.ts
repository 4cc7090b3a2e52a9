import { request } from "node:http";
import { Gauge, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createMetrics,
  createMetricsServer,
  type Metrics,
  type MetricsServer,
} from "../../src/metrics/index.js";
import type { RateLimitResult } from "../../src/limits/index.js";
import { createSecretStore, parseProducts, type SecretSource } from "../../src/secrets/index.js";
import type { ProductConfig } from "../../src/secrets/index.js";
import { captureLog } from "../support/log-capture.js";
import { promtoolCheck, scrape, series, value } from "../support/metrics-scrape.js";

const log = captureLog();
const products: ReadonlyMap<string, ProductConfig> = parseProducts(
  JSON.stringify({
    "product-dev": { providers: { echo: { models: ["echo-1", "gpt-4o"] } } },
    "product-b": {
      providers: { "main-openai": { kind: "openai", api_key: "sk-x", models: ["gpt-4o-mini"] } },
    },
  }),
);
const echo = products.get("product-dev")?.models.get("echo-1");
const ok = (source: RateLimitResult["source"], allowed = true): RateLimitResult => ({
  allowed,
  limit: 10,
  remaining: allowed ? 9 : 0,
  resetMs: 6000,
  retryAfterMs: allowed ? 0 : 6000,
  source,
});

let clock = 1_000_000;
let metrics: Metrics;
let server: MetricsServer;
let url: string;

beforeAll(async () => {
  metrics = createMetrics({
    version: "1.2.3",
    products: () => products,
    limiterSource: "redis",
    now: () => clock,
  });
  server = createMetricsServer({ registry: metrics.registry, logger: log.logger });
  const { port } = await server.listen(0, "127.0.0.1");
  url = `http://127.0.0.1:${port}/metrics`;
});

afterAll(async () => {
  await server.close(1000);
});

describe("the metrics endpoint", () => {
  it("answers the Prometheus text format on GET /metrics, with the build and process series", async () => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    expect(series(text, "api_key_server_build_info")).toEqual([
      `{node_version=${process.version},version=1.2.3} 1`,
    ]);
    expect(value(text, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(text).toContain("# TYPE nodejs_eventloop_lag_seconds gauge");
  });

  it.each([
    ["GET", "/", 404, "Not found\n"],
    ["GET", "/metricsx", 404, "Not found\n"],
    ["POST", "/metrics", 405, "Method not allowed\n"],
    ["DELETE", "/metrics", 405, "Method not allowed\n"],
  ])("%s %s answers %i", async (method, path, status, body) => {
    const res = await fetch(new URL(path, url), { method });
    expect(res.status).toBe(status);
    expect(await res.text()).toBe(body);
    if (status === 405) expect(res.headers.get("allow")).toBe("GET, HEAD");
  });

  it("HEAD /metrics answers the headers only", async () => {
    const res = await fetch(url, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  });

  it("close() lets a kept-alive scraper go and resolves; a second close() too", async () => {
    const other = createMetricsServer({ registry: metrics.registry, logger: log.logger });
    const { port } = await other.listen(0, "127.0.0.1");
    // A keep-alive connection left idle after a scrape, as Prometheus leaves it.
    await new Promise<void>((resolve, reject) => {
      const req = request(
        { port, host: "127.0.0.1", path: "/metrics", agent: false, headers: { connection: "keep-alive" } },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("error", reject);
      req.end();
    });
    await other.close(1000);
    await other.close(1000);
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it("a scrape that fails answers 500 and logs why", async () => {
    const broken = new Registry();
    new Gauge({
      name: "broken_gauge",
      help: "Throws when collected.",
      registers: [broken],
      collect() {
        throw new Error("collector exploded");
      },
    });
    const other = createMetricsServer({ registry: broken, logger: log.logger });
    const { port } = await other.listen(0, "127.0.0.1");
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(500);
      expect(await res.text()).toBe("Metrics scrape failed\n");
      expect(log.records().filter((r) => r["message"] === "Metrics scrape failed")).toMatchObject([
        { severity: "ERROR", error: "collector exploded" },
      ]);
    } finally {
      await other.close(1000);
    }
  });

  it("listen() on a port in use rejects", async () => {
    const port = Number(new URL(url).port);
    const other = createMetricsServer({ registry: metrics.registry, logger: log.logger });
    await expect(other.listen(port, "127.0.0.1")).rejects.toThrow(/EADDRINUSE/);
    await other.close(0);
  });
});

describe("recording, with labels bounded by the configuration", () => {
  it("requests: a configured product and model are labels; anything else is unknown; none is empty", async () => {
    const base = {
      rpc: "apikeyserver.v1.ChatService/CreateChatCompletion",
      protocol: "rest",
      status: 200,
      code: "OK",
      durationSeconds: 0.02,
    } as const;
    metrics.requestEnded({
      ...base,
      product: "product-dev",
      model: "echo-1",
      promptTokens: 9,
      completionTokens: 2,
    });
    metrics.requestEnded({
      ...base,
      product: "product-dev",
      model: "no-such-model",
      status: 400,
      code: "INVALID_ARGUMENT",
    });
    metrics.requestEnded({ ...base, product: "p-<script>", model: "echo-1", status: 404, code: "NOT_FOUND" });
    // A model that exists, but in another product, is not this product's model.
    metrics.requestEnded({
      ...base,
      product: "product-dev",
      model: "gpt-4o-mini",
      status: 400,
      code: "INVALID_ARGUMENT",
    });
    metrics.requestEnded({
      ...base,
      rpc: "apikeyserver.v1.HealthService/Check",
      protocol: "grpc",
      product: undefined,
      model: undefined,
      durationSeconds: 0.001,
    });
    const text = await scrape(url);
    expect(series(text, "api_key_server_requests_total")).toEqual([
      "{code=INVALID_ARGUMENT,model=unknown,product=product-dev,protocol=rest,rpc=apikeyserver.v1.ChatService/CreateChatCompletion,status=400} 2",
      "{code=NOT_FOUND,model=unknown,product=unknown,protocol=rest,rpc=apikeyserver.v1.ChatService/CreateChatCompletion,status=404} 1",
      "{code=OK,model=,product=,protocol=grpc,rpc=apikeyserver.v1.HealthService/Check,status=200} 1",
      "{code=OK,model=echo-1,product=product-dev,protocol=rest,rpc=apikeyserver.v1.ChatService/CreateChatCompletion,status=200} 1",
    ]);
    expect(series(text, "api_key_server_tokens_total")).toEqual([
      "{direction=in,model=echo-1,product=product-dev} 9",
      "{direction=out,model=echo-1,product=product-dev} 2",
    ]);
    expect(series(text, "api_key_server_request_duration_seconds_count")).toEqual([
      "{model=,product=,protocol=grpc,rpc=apikeyserver.v1.HealthService/Check} 1",
      "{model=echo-1,product=product-dev,protocol=rest,rpc=apikeyserver.v1.ChatService/CreateChatCompletion} 1",
      "{model=unknown,product=product-dev,protocol=rest,rpc=apikeyserver.v1.ChatService/CreateChatCompletion} 2",
      "{model=unknown,product=unknown,protocol=rest,rpc=apikeyserver.v1.ChatService/CreateChatCompletion} 1",
    ]);
    // The buckets resolve 1 ms to 300 s: the health call sits in the first one, the chat calls in 25 ms.
    const health = { rpc: "apikeyserver.v1.HealthService/Check", protocol: "grpc", product: "", model: "" };
    expect(value(text, "api_key_server_request_duration_seconds_bucket", { ...health, le: "0.001" })).toBe(1);
    expect(value(text, "api_key_server_request_duration_seconds_bucket", { ...health, le: "300" })).toBe(1);
  });

  it("in-flight requests and open streams are read from the edge at each scrape", async () => {
    const live = { unary: 1, streams: 2 };
    metrics.countInFlight(() => live);
    let text = await scrape(url);
    expect([
      value(text, "api_key_server_in_flight_requests"),
      value(text, "api_key_server_open_streams"),
    ]).toEqual([1, 2]);
    live.unary = 0;
    live.streams = 1;
    text = await scrape(url);
    expect([
      value(text, "api_key_server_in_flight_requests"),
      value(text, "api_key_server_open_streams"),
    ]).toEqual([0, 1]);
  });

  it("upstream calls: provider and model from the configuration", async () => {
    if (echo === undefined) throw new Error("fixture has no echo provider");
    metrics.upstreamCallEnded({
      provider: echo,
      model: "echo-1",
      outcome: "ok",
      durationSeconds: 0.3,
      firstEventSeconds: 0.1,
    });
    metrics.upstreamCallEnded({
      provider: echo,
      model: "caller-junk",
      outcome: "upstream_error",
      durationSeconds: 2,
      firstEventSeconds: undefined,
    });
    const text = await scrape(url);
    expect(series(text, "api_key_server_upstream_requests_total")).toEqual([
      "{model=echo-1,outcome=ok,provider=echo} 1",
      "{model=unknown,outcome=upstream_error,provider=echo} 1",
    ]);
    expect(series(text, "api_key_server_upstream_duration_seconds_count")).toEqual([
      "{model=echo-1,provider=echo} 1",
      "{model=unknown,provider=echo} 1",
    ]);
    expect(series(text, "api_key_server_upstream_ttfb_seconds_count")).toEqual([
      "{model=echo-1,provider=echo} 1",
    ]);
  });

  it("auth failures, refusals by kind and the limiter source in use", async () => {
    metrics.authFailed("jwt", "expired");
    metrics.authFailed("jwt", "expired");
    metrics.authFailed("none", "missing_credentials");
    let text = await scrape(url);
    expect(series(text, "api_key_server_rate_limiter_source")).toEqual([
      "{source=fallback} 0",
      "{source=memory} 0",
      "{source=redis} 1",
    ]);
    metrics.rateLimitDecided("tokens", ok("redis"));
    metrics.rateLimitDecided("requests", ok("fallback", false));
    metrics.rateLimitDecided("tokens", ok("fallback", false));
    metrics.rateLimitDecided("requests", ok("fallback", false));
    text = await scrape(url);
    expect(series(text, "api_key_server_auth_failures_total")).toEqual([
      "{method=jwt,reason=expired} 2",
      "{method=none,reason=missing_credentials} 1",
    ]);
    expect(series(text, "api_key_server_rate_limit_refusals_total")).toEqual([
      "{kind=requests} 2",
      "{kind=tokens} 1",
    ]);
    expect(series(text, "api_key_server_rate_limiter_source")).toEqual([
      "{source=fallback} 1",
      "{source=memory} 0",
      "{source=redis} 0",
    ]);
  });

  it("Redis fallbacks: each hook's series exists at 0 before the first outage", async () => {
    const limiter = metrics.redisFallback("rate_limiter");
    metrics.redisFallback("nonce_store");
    expect(series(await scrape(url), "api_key_server_redis_fallbacks_total")).toEqual([
      "{component=nonce_store} 0",
      "{component=rate_limiter} 0",
    ]);
    limiter();
    limiter();
    expect(series(await scrape(url), "api_key_server_redis_fallbacks_total")).toEqual([
      "{component=nonce_store} 0",
      "{component=rate_limiter} 2",
    ]);
  });
});

describe("the Redis circuit breaker", () => {
  it("with Redis: closed at start, then the state it moved to, each transition counted by that state", async () => {
    const local = createMetrics({
      version: "t",
      products: () => undefined,
      limiterSource: "redis",
      processMetrics: false,
    });
    const breaker = async () => {
      const text = await local.registry.metrics();
      return [
        ...series(text, "api_key_server_redis_breaker_state"),
        ...series(text, "api_key_server_redis_breaker_transitions_total"),
      ];
    };
    expect(await breaker()).toEqual([
      "{state=closed} 1",
      "{state=half-open} 0",
      "{state=open} 0",
      "{state=closed} 0",
      "{state=half-open} 0",
      "{state=open} 0",
    ]);
    local.redisBreakerChanged("open", "closed");
    local.redisBreakerChanged("half-open", "open");
    local.redisBreakerChanged("open", "half-open");
    expect(await breaker()).toEqual([
      "{state=closed} 0",
      "{state=half-open} 0",
      "{state=open} 1",
      "{state=closed} 0",
      "{state=half-open} 1",
      "{state=open} 2",
    ]);
    local.redisBreakerChanged("half-open", "open");
    local.redisBreakerChanged("closed", "half-open");
    expect(await breaker()).toEqual([
      "{state=closed} 1",
      "{state=half-open} 0",
      "{state=open} 0",
      "{state=closed} 1",
      "{state=half-open} 2",
      "{state=open} 2",
    ]);
  });

  it("without Redis there is no breaker, and no breaker series", async () => {
    const local = createMetrics({
      version: "t",
      products: () => undefined,
      limiterSource: "memory",
      processMetrics: false,
    });
    const text = await local.registry.metrics();
    expect(series(text, "api_key_server_redis_breaker_state")).toEqual([]);
    expect(series(text, "api_key_server_redis_breaker_transitions_total")).toEqual([]);
  });
});

describe("secret loads and the age of the secrets in use (a real store, a controllable source)", () => {
  it("counts each read by result; the age restarts at every good read and grows while reads fail", async () => {
    let failing = false;
    const source: SecretSource = {
      kind: "files",
      describe: (name) => `memory:${name}`,
      read(name) {
        if (failing) return Promise.reject(new Error(`${name}: unreadable`));
        if (name === "openai-api-keys") {
          return Promise.resolve({ data: '{"p":{"providers":{"echo":{"models":["m"]}}}}', version: "1" });
        }
        return Promise.resolve(undefined);
      },
    };
    const local = createMetrics({
      version: "t",
      products: () => undefined,
      limiterSource: "memory",
      now: () => clock,
      processMetrics: false,
    });
    const store = createSecretStore({
      source,
      names: { products: "openai-api-keys", jwtKeys: "jwt-public-keys", hmacSecrets: "hmac-secrets" },
      refreshIntervalMs: 60_000,
      logger: log.logger,
      onRead: local.secretRead,
    });
    const text = () => local.registry.metrics();
    try {
      await store.start();
      clock += 30_000;
      expect(series(await text(), "api_key_server_secrets_age_seconds")).toEqual([
        "{secret=hmac-secrets} 30",
        "{secret=jwt-public-keys} 30",
        "{secret=openai-api-keys} 30",
      ]);
      await store.refresh();
      clock += 5_000;
      expect(
        series(await text(), "api_key_server_secrets_age_seconds", { secret: "openai-api-keys" }),
      ).toEqual(["{} 5"]);
      failing = true;
      await store.refresh();
      clock += 60_000;
      await store.refresh();
      clock += 60_000;
      const after = await text();
      expect(series(after, "api_key_server_secrets_age_seconds", { secret: "openai-api-keys" })).toEqual([
        "{} 125",
      ]);
      expect(series(after, "api_key_server_secret_loads_total")).toEqual([
        "{phase=refresh,result=failed,secret=hmac-secrets} 2",
        "{phase=refresh,result=failed,secret=jwt-public-keys} 2",
        "{phase=refresh,result=failed,secret=openai-api-keys} 2",
        "{phase=refresh,result=missing,secret=hmac-secrets} 1",
        "{phase=refresh,result=missing,secret=jwt-public-keys} 1",
        "{phase=refresh,result=ok,secret=openai-api-keys} 1",
        "{phase=start,result=missing,secret=hmac-secrets} 1",
        "{phase=start,result=missing,secret=jwt-public-keys} 1",
        "{phase=start,result=ok,secret=openai-api-keys} 1",
      ]);
    } finally {
      await store.stop();
    }
  });

  it("a missing product secret at start is a failed load", async () => {
    const local = createMetrics({
      version: "t",
      products: () => undefined,
      limiterSource: "memory",
      processMetrics: false,
    });
    const store = createSecretStore({
      source: { kind: "files", describe: (n) => n, read: () => Promise.resolve(undefined) },
      names: { products: "openai-api-keys", jwtKeys: "jwt-public-keys", hmacSecrets: "hmac-secrets" },
      refreshIntervalMs: 60_000,
      logger: log.logger,
      onRead: local.secretRead,
    });
    await expect(store.start()).rejects.toThrow(/not found/);
    const text = await local.registry.metrics();
    expect(series(text, "api_key_server_secret_loads_total", { secret: "openai-api-keys" })).toEqual([
      "{phase=start,result=failed} 1",
    ]);
    expect(series(text, "api_key_server_secrets_age_seconds", { secret: "openai-api-keys" })).toEqual([]);
  });
});

describe("promtool", () => {
  it("`promtool check metrics` passes on a real scrape with every series present", async () => {
    const text = await scrape(url);
    // Every metric of ours has samples by now (the tests above), so promtool sees each name and help text.
    for (const name of [
      "requests_total",
      "request_duration_seconds_bucket",
      "tokens_total",
      "in_flight_requests",
      "open_streams",
      "upstream_requests_total",
      "upstream_duration_seconds_bucket",
      "upstream_ttfb_seconds_bucket",
      "auth_failures_total",
      "rate_limit_refusals_total",
      "redis_fallbacks_total",
      "rate_limiter_source",
      "redis_breaker_state",
      "redis_breaker_transitions_total",
      "build_info",
    ]) {
      expect(text, name).toMatch(new RegExp(`^api_key_server_${name}[{ ]`, "m"));
    }
    const result = await promtoolCheck(text);
    expect(result.output).toBe("");
    expect(result.code).toBe(0);
  });
});
