import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Interceptor } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import { createApp, type App } from "../../src/app.js";
import { loadConfig, type Config } from "../../src/config/index.js";
import { createRedisClient } from "../../src/lib/redis.js";
import { createMetrics, createMetricsServer } from "../../src/metrics/index.js";
import {
  createFileSecretSource,
  createSecretStore,
  type RefreshingSecretStore,
} from "../../src/secrets/index.js";
import { makeTestKey, mintJwt, type MintOptions, type TestKey } from "./auth-keys.js";
import { captureLog, type CapturedLog } from "./log-capture.js";

/**
 * The whole server (src/app.ts, exactly as main.ts wires it) on 127.0.0.1 port 0, with its secrets in
 * local files in a temporary folder, a fresh ES256 signing key for caller JWTs, and a captured log.
 */
export interface AppHarness {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  readonly config: Config;
  readonly logs: CapturedLog;
  readonly secrets: RefreshingSecretStore;
  /** The JWT signing key whose public half is in jwt_public_keys.json (kid "test-key"). */
  readonly key: TestKey;
  /** The folder holding openai_api_keys.json, jwt_public_keys.json and hmac_secrets.json. */
  readonly dir: string;
  /** `http://127.0.0.1:PORT/metrics` of the metrics listener (with `metrics: true`), else "". */
  readonly metricsUrl: string;
  /** A caller JWT: `sub` "svc-test" and `products` ["product-dev"] unless overridden. */
  token(options?: MintOptions): Promise<string>;
  /** Rewrites one secret file and reloads secrets at once (no waiting for the refresh interval). */
  writeSecret(
    file: "openai_api_keys.json" | "jwt_public_keys.json" | "hmac_secrets.json",
    value: unknown,
  ): Promise<void>;
  /** Shuts the app down as main.ts does on SIGTERM, with `graceMs` (default 1000) for calls in flight. */
  close(graceMs?: number): Promise<void>;
}

export interface AppHarnessOptions {
  /** The product secret (openai_api_keys.json). Default: product-dev served by the echo provider. */
  readonly products?: unknown;
  /** hmac_secrets.json; left out (HMAC disabled) by default. */
  readonly hmac?: unknown;
  /** Extra environment for loadConfig (API_KEY_SERVER_*, REDIS_URL, ...). */
  readonly env?: Readonly<Record<string, string>>;
  /** Log level of the captured log (default "debug", so tests can prove what is never logged). */
  readonly logLevel?: "debug" | "info";
  /** Record metrics and serve them on a port of their own, as main.ts does with API_KEY_SERVER_METRICS_PORT. */
  readonly metrics?: boolean;
  /** Wait for the Redis connection before serving (default true); false for tests of an unreachable Redis. */
  readonly waitForRedis?: boolean;
  /** The Redis command timeout (default 5000 ms); short for tests of a hung Redis. */
  readonly redisCommandTimeoutMs?: number;
  /** More per-call rules (AppOptions.interceptors), as a deployment would add one. */
  readonly interceptors?: readonly Interceptor[];
}

export const defaultProducts = { "product-dev": { providers: { echo: { models: ["echo-1"] } } } };

export async function startApp(options: AppHarnessOptions = {}): Promise<AppHarness> {
  const dir = await mkdtemp(join(tmpdir(), "aks-app-"));
  const key = await makeTestKey("test-key", "ES256");
  const write = (file: string, value: unknown) => writeFile(join(dir, file), JSON.stringify(value));
  await write("openai_api_keys.json", options.products ?? defaultProducts);
  await write("jwt_public_keys.json", { keys: [key.publicJwk] });
  if (options.hmac !== undefined) await write("hmac_secrets.json", options.hmac);

  const config = loadConfig({
    API_KEY_SERVER_CONFIG_DIR: dir,
    API_KEY_SERVER_HOST: "127.0.0.1",
    PORT: "0",
    ...options.env,
  });
  const logs = captureLog(options.logLevel ?? "debug");
  const metrics =
    options.metrics === true
      ? createMetrics({
          version: "test",
          products: () => secrets.current()?.products,
          limiterSource: config.redisUrl === undefined ? "memory" : "redis",
        })
      : undefined;
  const secrets = createSecretStore({
    source: createFileSecretSource({ dir }),
    names: config.secrets.names,
    refreshIntervalMs: config.secrets.refreshIntervalMs,
    logger: logs.logger,
    onRead: metrics?.secretRead,
  });
  await secrets.start();
  // A command timeout for a loaded test machine (main.ts keeps the 200 ms default), and a connection that
  // is ready before the first request: otherwise a slow command or connect sends a call to the local
  // fallback limiter and a test about shared limits sees a wrong count.
  const redis: Redis | undefined =
    config.redisUrl === undefined
      ? undefined
      : createRedisClient({
          url: config.redisUrl,
          logger: logs.logger,
          commandTimeoutMs: options.redisCommandTimeoutMs ?? 5_000,
        });
  if (redis !== undefined && redis.status !== "ready" && options.waitForRedis !== false) {
    await once(redis, "ready");
  }
  const app: App = createApp({
    config,
    logger: logs.logger,
    secrets,
    version: "test",
    redis,
    metrics,
    ...(options.interceptors === undefined ? {} : { interceptors: options.interceptors }),
  });
  const { port } = await app.listen(0, "127.0.0.1");
  const metricsServer = metrics && createMetricsServer({ registry: metrics.registry, logger: logs.logger });
  const metricsPort =
    metricsServer === undefined ? undefined : (await metricsServer.listen(0, "127.0.0.1")).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    config,
    logs,
    secrets,
    key,
    dir,
    metricsUrl: metricsPort === undefined ? "" : `http://127.0.0.1:${metricsPort}/metrics`,
    token: (mint) => mintJwt(key, mint),
    async writeSecret(file, value) {
      await write(file, value);
      await secrets.refresh();
    },
    async close(graceMs = 1000) {
      await app.close(graceMs);
      await metricsServer?.close(1000);
      await secrets.stop();
      await redis?.quit().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
