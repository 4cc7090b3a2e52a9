import { inject } from "vitest";
import { Socket } from "node:net";
import { redisServerAvailable } from "../support/redis-server.js";

/**
 * The Redis of this test run (test/support/redis-global-setup.ts): the one named by
 * `API_KEY_SERVER_TEST_REDIS_URL`, or a throw-away redis-server started for the run. Key prefixes per test
 * file still keep files apart.
 */
// Without one, a URL nothing listens on (port 1): requireSharedRedis then skips, or fails in CI.
export const sharedRedisUrl: string = inject("redisUrl") ?? "redis://127.0.0.1:1";

/**
 * Whether the run's Redis answers PING. Missing in CI is a failure, not a skip; by hand the Redis tests
 * are skipped with a line that says what to install.
 */
export async function requireSharedRedis(): Promise<boolean> {
  const url = new URL(sharedRedisUrl);
  const up = await ping(Number(url.port || "6379"), url.hostname);
  if (up) return true;
  const hint =
    "install redis-server (apt-get install redis-server) or set API_KEY_SERVER_TEST_REDIS_URL to a Redis to use";
  if (process.env.CI === "true") throw new Error(`Redis is required in CI; ${hint}`);
  console.warn(`Skipping Redis tests: no Redis for this run; ${hint}`);
  return false;
}

/**
 * Whether `redis-server` is on PATH, for the tests that start and kill their own server. Missing in CI is a
 * failure; by hand those tests are skipped with a line saying what to install.
 */
export function requireRedisServerBinary(): boolean {
  if (redisServerAvailable()) return true;
  const hint = "install Redis (e.g. apt-get install redis-server) so that redis-server is on PATH";
  if (process.env.CI === "true") throw new Error(`redis-server is required in CI; ${hint}`);
  console.warn(`Skipping Redis outage tests: ${hint}`);
  return false;
}

function ping(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, host, () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}

export { freePort, killRedisServer, startRedisServer } from "../support/redis-server.js";
