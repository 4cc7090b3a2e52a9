/**
 * Composition root: reads the environment once, builds everything, starts, and handles signals.
 * Nothing else in the server reads process.env.
 */
// First, so an older Node.js stops with one line before undici (which needs Node 24) is even loaded.
import "./startup/require-node.js";
import { readFileSync } from "node:fs";
import type { ChannelCredentials } from "google-gax";
import { createApp } from "./app.js";
import {
  closestSetting,
  ConfigError,
  loadConfig,
  unknownSettings,
  type Config,
  type SecretManagerEndpoint,
} from "./config/index.js";
import { createRedisClient } from "./lib/redis.js";
import { createLogger, logProcessWarnings, type Logger } from "./log/index.js";
import { createMetrics, createMetricsServer } from "./metrics/index.js";
import {
  createFileSecretSource,
  createSecretManagerSource,
  createSecretStore,
  logSecretLoadFailure,
  SecretSourceError,
  type SecretSource,
} from "./secrets/index.js";
import { budgetStoreProblem, listenProblem } from "./startup/index.js";

/**
 * The product secret used when running from local files and `openai_api_keys.json` does not exist: one
 * product served by the built-in echo provider, so a fresh clone answers chat requests with no keys at all.
 * Echo also answers to the model names of the seed runbook's example (`gpt-4o`, `gpt-4o-mini`), so that
 * request works exactly as written; the start-up warning says the answers come from echo. Its streams are
 * paced (`stream_delay_ms`), so the example page (examples/web) visibly streams token by token.
 */
const embeddedProducts = {
  "product-dev": {
    providers: { echo: { models: ["echo-1", "gpt-4o", "gpt-4o-mini"], stream_delay_ms: 40 } },
  },
};

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`api-key-server: invalid configuration: ${err.message}\n`);
    process.exit(1);
  }

  const version = readVersion();
  const logger = createLogger({ level: config.logLevel });
  logProcessWarnings(logger);
  for (const name of unknownSettings(process.env)) {
    const meant = closestSetting(name);
    if (meant === undefined) logger.warn({ variable: name }, `Unknown setting ${name} is ignored`);
    else {
      logger.warn(
        { variable: name, didYouMean: meant },
        `Unknown setting ${name} is ignored (did you mean ${meant}?)`,
      );
    }
  }

  const { source, close: closeSource } = await createSource(config, logger);
  // Metrics only when their port is set, so nothing is recorded (or exposed) otherwise. Product labels are
  // bounded by the secrets in use, read at each request, after `secrets` below exists.
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : createMetrics({
          version,
          products: () => secrets.current()?.products,
          limiterSource: config.redisUrl === undefined ? "memory" : "redis",
        });
  const secrets = createSecretStore({
    source,
    names: config.secrets.names,
    refreshIntervalMs: config.secrets.refreshIntervalMs,
    logger,
    requireAuth: config.production,
    startupDeadlineMs: config.secrets.startupDeadlineMs,
    onRead: metrics?.secretRead,
  });
  const redis =
    config.redisUrl === undefined ? undefined : createRedisClient({ url: config.redisUrl, logger });
  const app = createApp({ config, logger, secrets, version, redis, metrics });
  const metricsServer = metrics && createMetricsServer({ registry: metrics.registry, logger });

  let stopping = false;
  // Whether the port was opened: a refused start-up never served, and ends on its error line.
  let served = false;
  async function stop(exitCode: number): Promise<never> {
    stopping = true;
    // Every step runs whatever the previous one did, and the process always ends with `exitCode`: a failing
    // cleanup (the Secret Manager client rejects close() when it never got credentials) must not turn a
    // clean SIGTERM into an unhandled rejection with a stack trace and exit code 1.
    let drained: { completed: number; cut: number } | undefined;
    const steps: readonly (readonly [string, () => Promise<unknown>])[] = [
      [
        "server",
        async () => {
          drained = await app.close(config.shutdownGraceMs);
        },
      ],
      // After the server: the last scrape during the grace still sees the calls that were draining.
      ["metrics server", () => metricsServer?.close(1000) ?? Promise.resolve()],
      ["secret store", () => secrets.stop()],
      ["secret source", closeSource],
    ];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (err) {
        logger.warn(
          { error: err instanceof Error ? err.message : String(err) },
          `Shutdown: closing the ${what} failed`,
        );
      }
    }
    // Quitting fails when Redis is down, which is no news at this point.
    await redis?.quit().catch(() => undefined);
    // One line saying the server is gone and what became of the calls it was serving when it was told.
    if (served) {
      logger.info(
        {
          exitCode,
          completed: drained?.completed ?? 0,
          cut: drained?.cut ?? 0,
          graceMs: config.shutdownGraceMs,
        },
        `Server stopped: ${drained?.completed ?? 0} calls completed and ${drained?.cut ?? 0} cut during the grace`,
      );
    }
    logger.flush();
    process.exit(exitCode);
  }

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      if (stopping) return;
      logger.info({ signal }, `Received ${signal}, draining in-flight calls`);
      void stop(0);
    });
  }

  // Every start-up check runs before the port opens: a refused start-up never logs "Listening" and never
  // has the port open, not even briefly (a TCP probe or a load balancer would take an open port for a
  // server that works). Until then nothing answers on the port, and /health answers 200 from the first
  // request on.
  try {
    await secrets.start();
  } catch (err) {
    logSecretLoadFailure(logger, err);
    await stop(1);
  }
  logger.info({ products: secrets.current()?.products.size ?? 0 }, "Secrets loaded, ready");
  const budgetProblem = budgetStoreProblem(
    secrets.current()?.products ?? new Map(),
    config.cloudRun,
    redis !== undefined,
  );
  if (budgetProblem !== undefined) {
    process.stderr.write(`api-key-server: ${budgetProblem}\n`);
    await stop(1);
  }
  // A later version of the product secret may add budgets: said at ERROR on every such swap (the running
  // server keeps serving; each instance then counts its own budget).
  secrets.onChange((current) => {
    const problem = budgetStoreProblem(current.products, config.cloudRun, redis !== undefined);
    if (problem !== undefined) logger.error({}, problem);
  });

  // The metrics port first: when it is taken, the main port has not been opened at all.
  let metricsPort: number | undefined;
  if (metricsServer !== undefined && config.metricsPort !== undefined) {
    const wanted = config.metricsPort;
    const bound = await metricsServer.listen(wanted, config.host).catch((err: unknown) => {
      const problem = listenProblem(err, config.host, wanted, "API_KEY_SERVER_METRICS_PORT");
      if (problem === undefined) throw err;
      process.stderr.write(`api-key-server: ${problem}\n`);
      process.exit(1);
    });
    metricsPort = bound.port;
  }
  const { port } = await app.listen(config.port, config.host).catch((err: unknown) => {
    const problem = listenProblem(err, config.host, config.port);
    if (problem === undefined) throw err;
    process.stderr.write(`api-key-server: ${problem}\n`);
    process.exit(1);
  });
  served = true;
  logger.info(
    { port, version, secretSource: source.kind, redis: redis !== undefined },
    `Listening on ${config.host}:${port}`,
  );
  if (metricsPort !== undefined) {
    logger.info({ metricsPort }, `Metrics on http://${config.host}:${metricsPort}/metrics`);
  }
}

async function createSource(
  config: Config,
  logger: Logger,
): Promise<{ source: SecretSource; close: () => Promise<void> }> {
  const from = config.secrets.source;
  if (from.kind === "secret-manager") {
    // Loaded only here: the client library is heavy and unused when running from local files.
    const { SecretManagerServiceClient } = await import("@google-cloud/secret-manager");
    const client = new SecretManagerServiceClient(await secretManagerClientOptions(from.endpoint));
    return {
      source: createSecretManagerSource({ projectId: from.projectId, client }),
      async close() {
        // A client whose stub never came up (no credentials) has no channel to close: its close() only
        // rejects again with the credentials error, which is no failure of the shutdown.
        const stub = client.secretManagerServiceStub;
        const up = stub === undefined ? false : await stub.then(isUp, isDown);
        if (up) await client.close();
      },
    };
  }
  const files = createFileSecretSource({ dir: from.dir });
  const productsName = config.secrets.names.products;
  let warned = false;
  const source: SecretSource = {
    kind: files.kind,
    describe: (name) => files.describe(name),
    // A key file written by `npm run cli -- keygen` is in use at once, with no restart (README, Quick start).
    watch: (handlers) => files.watch(handlers),
    async read(name) {
      const found = await files.read(name);
      if (found !== undefined || name !== productsName) return found;
      if (config.production) {
        throw new SecretSourceError(
          `${files.describe(name)} not found, and the embedded development product is never served in production (K_SERVICE or NODE_ENV=production is set): deploy with USE_SECRET_MANAGER=true and API_KEY_SERVER_GCP_PROJECT_ID, or provide the file`,
          "NOT_FOUND",
        );
      }
      if (!warned) {
        warned = true;
        logger.warn(
          { file: files.describe(name) },
          "No product file: serving the embedded default (product-dev: echo-1, gpt-4o and gpt-4o-mini all answered by the echo provider)",
        );
      }
      return { data: JSON.stringify(embeddedProducts), version: "embedded-default" };
    },
  };
  return { source, close: () => Promise.resolve() };
}

const isUp = (): boolean => true;
const isDown = (): boolean => false;

/**
 * Client options for `API_KEY_SERVER_SECRET_MANAGER_ENDPOINT`. TLS endpoints keep Google credentials;
 * plaintext ones pass insecure `sslCreds`, which also makes the library skip the credential lookup (there
 * is nothing to authenticate to on a local fake).
 */
async function secretManagerClientOptions(
  endpoint: SecretManagerEndpoint | undefined,
): Promise<{ apiEndpoint?: string; port?: number; sslCreds?: ChannelCredentials }> {
  if (endpoint === undefined) return {};
  const options = { apiEndpoint: endpoint.host, port: endpoint.port };
  if (endpoint.tls) return options;
  // google-gax's own grpc-js: credentials from another copy would fail its instanceof checks.
  const { grpc } = await import("google-gax");
  return { ...options, sslCreds: grpc.credentials.createInsecure() };
}

/**
 * The version of the package.json named api-key-server, found by walking up from this file: the same code
 * runs as dist/src/main.js (two levels down) and, in development and process tests, as src/main.ts (one).
 */
function readVersion(): string {
  for (let dir = new URL(".", import.meta.url); ; dir = new URL("..", dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("package.json", dir), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "api-key-server") return pkg.version ?? "unknown";
    } catch {
      // No (readable) package.json here: keep walking up.
    }
    if (new URL("..", dir).href === dir.href) return "unknown";
  }
}

await main();
