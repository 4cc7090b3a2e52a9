// The server under test: its config (two products on the mock, a fresh ES256 key pair), how it is started
// (dist/, production settings, the Dockerfile's NODE_OPTIONS, its memory cgroup) and the metrics scraper.
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { clearInterval, setInterval } from "node:timers";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { freePort, productionNodeOptions } from "./harness.ts";
import type { Options } from "./options.ts";
import { OUT_DIR } from "./paths.ts";
import type { Service } from "./processes.ts";
import { startService } from "./processes.ts";
import { SSE_MOCK_PREFIX } from "./requests.ts";
import { SLOW_DELAY_MS } from "./scenarios.ts";

/**
 * Writes the server's config dir: products `bench` (mock, no delay), `bench-slow` (mock with +100 ms) and
 * `bench-sse` (mock streaming 20 chunks over 2 s, for sse-1000), a rate limit that never triggers, and a
 * fresh ES256 public key. Resolves with a JWT for the three products.
 */
export async function writeServerConfig(dir: string, mockPort: number): Promise<string> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "bench", alg: "ES256", use: "sig" };
  const provider = (base: string): unknown => ({
    providers: { openai: { api_key: "sk-bench-not-a-real-key", base_url: base, models: ["gpt-4o-mini"] } },
    rate_limit: { requests_per_minute: 100_000_000 },
  });
  const products = {
    bench: provider(`http://127.0.0.1:${mockPort}/v1`),
    "bench-slow": provider(`http://127.0.0.1:${mockPort}/delay/${SLOW_DELAY_MS}/v1`),
    "bench-sse": provider(`http://127.0.0.1:${mockPort}${SSE_MOCK_PREFIX}/v1`),
  };
  await writeFile(path.join(dir, "openai_api_keys.json"), JSON.stringify(products, null, 2));
  await writeFile(path.join(dir, "jwt_public_keys.json"), JSON.stringify({ keys: [jwk] }, null, 2));
  return new SignJWT({ products: ["bench", "bench-slow", "bench-sse"] })
    .setProtectedHeader({ alg: "ES256", kid: "bench" })
    .setSubject("bench")
    .setIssuedAt()
    .setExpirationTime("2h")
    .sign(privateKey);
}

export interface Server extends Service {
  metricsPort: number | undefined;
  profileDir: string;
  nodeOptions: string;
}

export async function startServer(
  options: Options,
  configDir: string,
  procs: string | undefined,
  { metrics }: { metrics: boolean },
): Promise<Server> {
  const port = await freePort();
  const metricsPort = metrics ? await freePort() : undefined;
  const profileDir = path.join(OUT_DIR, "profiles");
  if (options.cpuProf) await mkdir(profileDir, { recursive: true });
  const nodeOptions = await productionNodeOptions();
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "",
    HOME: process.env["HOME"] ?? os.tmpdir(),
    NODE_ENV: "production",
    PORT: String(port),
    API_KEY_SERVER_HOST: "127.0.0.1",
    USE_SECRET_MANAGER: "false",
    API_KEY_SERVER_CONFIG_DIR: configDir,
    API_KEY_SERVER_LOG_LEVEL: options.logLevel,
    API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE: "100000000",
    // One caller (the bench's JWT subject) makes every call: its concurrency cap (default 100) must not
    // turn the 512 slow calls into 429s, as the rate limit must not.
    API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER: "100000",
    NODE_OPTIONS: nodeOptions,
    ...(metricsPort === undefined ? {} : { API_KEY_SERVER_METRICS_PORT: String(metricsPort) }),
    ...options.serverEnv,
  };
  const nodeArgs = [
    ...(options.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
    ...options.serverNodeArgs,
  ];
  const service = await startService({
    name: "the server",
    argv: [process.execPath, ...nodeArgs, options.serverEntry],
    env,
    procs,
    stdoutFile: options.serverLog,
    port,
    readyPath: "/health",
    hint: "run with --server-log <file> to see its log",
  });
  return { ...service, metricsPort, profileDir, nodeOptions: env["NODE_OPTIONS"] ?? "" };
}

export interface Scraper {
  /** Stops scraping after one last scrape: the count of good and failed scrapes and the last body. */
  stop(): Promise<{ scrapes: number; failed: number; last: string }>;
}

/**
 * Scrapes the server's metrics every `intervalMs` (Prometheus scrapes every 15-60 s; 5 s makes the scrape
 * cost, which lands on the server's CPU, count more, not less) until `stop()`.
 */
export function startScraper(metricsPort: number, intervalMs: number): Scraper {
  let scrapes = 0;
  let failed = 0;
  let last = "";
  const scrape = async (): Promise<void> => {
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, {
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      if (res.status === 200) {
        scrapes += 1;
        last = text;
      } else failed += 1;
    } catch {
      failed += 1;
    }
  };
  const timer = setInterval(() => void scrape(), intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await scrape();
      return { scrapes, failed, last };
    },
  };
}

/** Metrics on must mean metrics recorded: the last scrape counts answered chat calls. */
export function scrapeShowsChatCalls(body: string): boolean {
  return /^api_key_server_requests_total\{[^}]*ChatService[^}]*status="200"[^}]*\} [1-9]/m.test(body);
}
