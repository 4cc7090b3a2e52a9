import { randomUUID } from "node:crypto";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKey, mintJwt, type TestKey } from "../support/auth-keys.js";
import {
  freePort,
  killRedisServer,
  requireRedisServerBinary,
  requireSharedRedis,
  sharedRedisUrl,
  startRedisServer,
} from "../ratelimit/redis-support.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

/**
 * Issue 7 across processes: two real server processes (src/main.ts) with REDIS_URL set admit ONE limit in
 * total, survive a Redis outage on their local fallback, and share the limit again once Redis is back.
 * The server has no Redis key-prefix setting, so every run uses its own product name: keys cannot collide
 * with other runs on the shared Redis.
 */

const perMinute = 4;
const product = `product-rl-${randomUUID().slice(0, 8)}`;
const fallbackLine = "Rate limiter: Redis unavailable, using the local fallback";
const backLine = "Rate limiter: Redis is back";

const sharedRedis = await requireSharedRedis();
const redisBinary = requireRedisServerBinary();

let key: TestKey;
let dir: string;

beforeAll(async () => {
  key = await makeTestKey("process-key", "ES256");
  dir = await mkdtemp(join(tmpdir(), "aks-rl-process-"));
  await writeFile(
    join(dir, "openai_api_keys.json"),
    JSON.stringify({
      [product]: {
        providers: { echo: { models: ["echo-1"] } },
        rate_limit: { requests_per_minute: perMinute },
      },
    }),
  );
  await writeFile(join(dir, "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
});

afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Starts `count` server processes on one Redis; they are stopped by `stopAll`. */
async function startServers(redisUrl: string, count: number): Promise<ServerProcess[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      startServerProcess({
        env: { API_KEY_SERVER_CONFIG_DIR: dir, REDIS_URL: redisUrl },
        waitForSecrets: true,
      }),
    ),
  );
}

async function stopAll(servers: readonly ServerProcess[]): Promise<void> {
  for (const server of servers) server.kill("SIGTERM");
  await Promise.all(servers.map((s) => s.exited));
}

/** One chat request as `sub`; resolves with the HTTP status (and fails loudly on anything but 200/429). */
async function chat(server: ServerProcess, sub: string): Promise<number> {
  const token = await mintJwt(key, { claims: { sub, products: [product] } });
  const res = await fetch(`${server.url}/v1/chat/${product}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "Hello" }] }),
  });
  const body = await res.text();
  if (res.status !== 200 && res.status !== 429) throw new Error(`unexpected ${res.status}: ${body}`);
  return res.status;
}

/** `total` requests as `sub`, sent one after another, alternating between the servers. */
async function alternate(servers: readonly ServerProcess[], sub: string, total: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < total; i++) {
    const server = servers[i % servers.length];
    if (server === undefined) throw new Error("no server");
    statuses.push(await chat(server, sub));
  }
  return statuses;
}

const admitted = (n: number, refused: number): number[] => [
  ...Array<number>(n).fill(200),
  ...Array<number>(refused).fill(429),
];

const messages = (server: ServerProcess): unknown[] => server.logs().map((line) => line["message"]);

describe.runIf(sharedRedis)("two server processes sharing one Redis", () => {
  let servers: ServerProcess[] = [];
  beforeAll(async () => {
    servers = await startServers(sharedRedisUrl, 2);
  });
  afterAll(() => stopAll(servers));

  it(`admit ${perMinute} requests per minute in total, not ${perMinute} each`, async () => {
    const statuses = await alternate(servers, "shared-caller", 2 * perMinute + 2);
    expect(statuses).toEqual(admitted(perMinute, perMinute + 2));
    // Another caller of the same product is not affected by the first one's limit, on either process.
    expect(await alternate(servers, "another-caller", 2)).toEqual([200, 200]);
    // Every decision was Redis's: no process fell back to its local limit.
    for (const server of servers) expect(messages(server)).not.toContain(fallbackLine);
  });
});

describe.runIf(redisBinary)("a Redis outage at the server level (a dedicated redis-server)", () => {
  let redisPort: number;
  let redis: ChildProcess | undefined;
  let servers: ServerProcess[] = [];

  beforeAll(async () => {
    redisPort = await freePort();
    redis = await startRedisServer(redisPort);
    servers = await startServers(`redis://127.0.0.1:${redisPort}`, 2);
  });
  afterAll(async () => {
    await stopAll(servers);
    if (redis !== undefined) await killRedisServer(redis);
  });

  it("keeps serving on the local limit while Redis is down, and shares the limit again once it is back", async () => {
    // Shared: one limit across both processes.
    expect(await alternate(servers, "before-outage", 2 * perMinute)).toEqual(admitted(perMinute, perMinute));

    // Redis killed: no caller error; each process admits up to its own local limit, then refuses.
    if (redis !== undefined) await killRedisServer(redis);
    redis = undefined;
    const during = await alternate(servers, "during-outage", 2 * perMinute + 2);
    expect(during).toEqual(admitted(2 * perMinute, 2));
    for (const server of servers) {
      await server.waitForLine((line) => line.includes(fallbackLine));
    }

    // Redis back (empty, same port): both clients reconnect by themselves; the limit is shared again.
    redis = await startRedisServer(redisPort);
    for (const server of servers) {
      await server.waitForLine((line) => line.includes("Redis connection restored"), 15_000);
    }
    expect(await alternate(servers, "after-outage", 2 * perMinute)).toEqual(admitted(perMinute, perMinute));
    for (const server of servers) await server.waitForLine((line) => line.includes(backLine));
  }, 60_000);
});
