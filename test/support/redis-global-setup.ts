import type { ChildProcess } from "node:child_process";
import type { TestProject } from "vitest/node";
import { freePort, killRedisServer, redisServerAvailable, startRedisServer } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** The Redis the Redis suites use; undefined when there is none (they then skip, or fail in CI). */
    redisUrl: string | undefined;
  }
}

/**
 * Vitest global setup: the Redis for the test run. `API_KEY_SERVER_TEST_REDIS_URL` names one to use;
 * otherwise a throw-away `redis-server` is started on a free port for this run and stopped after it, so
 * `npm test` needs nothing running and never touches a developer's own Redis.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env["API_KEY_SERVER_TEST_REDIS_URL"];
  if (given !== undefined && given !== "") {
    project.provide("redisUrl", given);
    return () => Promise.resolve();
  }
  let child: ChildProcess | undefined;
  if (redisServerAvailable()) {
    const port = await freePort();
    child = await startRedisServer(port);
    project.provide("redisUrl", `redis://127.0.0.1:${port}`);
  } else {
    project.provide("redisUrl", undefined);
  }
  return async () => {
    if (child !== undefined) await killRedisServer(child);
  };
}
