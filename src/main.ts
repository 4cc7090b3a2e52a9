/**
 * Composition root: reads the environment once, builds everything, starts, and handles signals.
 * Nothing else in the server reads process.env.
 */
import { readFileSync } from "node:fs";
import { createApp } from "./app.js";
import { ConfigError, loadConfig, unknownSettings, type Config } from "./config/index.js";
import { createRedisClient } from "./lib/redis.js";
import { createLogger, type Logger } from "./log/index.js";
import {
  createFileSecretSource,
  createSecretManagerSource,
  createSecretStore,
  logSecretLoadFailure,
  type SecretSource,
} from "./secrets/index.js";

/**
 * The product secret used when running from local files and `openai_api_keys.json` does not exist: one
 * product served by the built-in echo provider, so a fresh clone answers chat requests with no keys at all.
 */
const embeddedProducts = { "product-dev": { providers: { echo: { models: ["echo-1"] } } } };

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
  for (const name of unknownSettings(process.env)) {
    logger.warn({ variable: name }, `Unknown setting ${name} is ignored`);
  }

  const { source, close: closeSource } = await createSource(config, logger);
  const secrets = createSecretStore({
    source,
    names: config.secrets.names,
    refreshIntervalMs: config.secrets.refreshIntervalMs,
    logger,
  });
  const redis =
    config.redisUrl === undefined ? undefined : createRedisClient({ url: config.redisUrl, logger });
  const app = createApp({ config, logger, secrets, version, redis });

  // Listen first, so /health answers (503) while the first load runs.
  const { port } = await app.listen(config.port, config.host);
  logger.info(
    { port, version, secretSource: source.kind, redis: redis !== undefined },
    `Listening on ${config.host}:${port}`,
  );

  let stopping = false;
  async function stop(exitCode: number): Promise<never> {
    stopping = true;
    await app.close(config.shutdownGraceMs);
    await secrets.stop();
    await closeSource();
    await redis?.quit().catch(() => undefined);
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

  try {
    await secrets.start();
  } catch (err) {
    logSecretLoadFailure(logger, err);
    await stop(1);
  }
  logger.info({ products: secrets.current()?.products.size ?? 0 }, "Secrets loaded, ready");
}

async function createSource(
  config: Config,
  logger: Logger,
): Promise<{ source: SecretSource; close: () => Promise<void> }> {
  const from = config.secrets.source;
  if (from.kind === "secret-manager") {
    // Loaded only here: the client library is heavy and unused when running from local files.
    const { SecretManagerServiceClient } = await import("@google-cloud/secret-manager");
    const client = new SecretManagerServiceClient();
    return {
      source: createSecretManagerSource({ projectId: from.projectId, client }),
      close: () => client.close(),
    };
  }
  const files = createFileSecretSource({ dir: from.dir });
  const productsName = config.secrets.names.products;
  let warned = false;
  const source: SecretSource = {
    kind: files.kind,
    describe: (name) => files.describe(name),
    async read(name) {
      const found = await files.read(name);
      if (found !== undefined || name !== productsName) return found;
      if (!warned) {
        warned = true;
        logger.warn(
          { file: files.describe(name) },
          "No product file: serving the embedded default (product-dev with the echo provider)",
        );
      }
      return { data: JSON.stringify(embeddedProducts), version: "embedded-default" };
    },
  };
  return { source, close: () => Promise.resolve() };
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

await main();
