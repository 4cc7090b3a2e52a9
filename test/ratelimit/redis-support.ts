import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, Socket } from "node:net";

/** The shared Redis the tests use (CI starts it; by hand: `redis-server --port 6379 --save "" &`). */
export const sharedRedisUrl = "redis://127.0.0.1:6379";

/**
 * Whether the shared Redis answers PING. Missing in CI is a failure, not a skip; by hand the Redis tests
 * are skipped with a line that says how to start it.
 */
export async function requireSharedRedis(): Promise<boolean> {
  const up = await ping(6379);
  if (up) return true;
  const hint = 'start it with: redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no &';
  if (process.env.CI === "true") throw new Error(`Redis is required in CI at 127.0.0.1:6379; ${hint}`);
  console.warn(`Skipping Redis tests: no Redis at 127.0.0.1:6379; ${hint}`);
  return false;
}

/**
 * Whether `redis-server` is on PATH, for the tests that start and kill their own server. Missing in CI is a
 * failure; by hand those tests are skipped with a line saying what to install.
 */
export function requireRedisServerBinary(): boolean {
  if (spawnSync("redis-server", ["--version"]).status === 0) return true;
  const hint = "install Redis (e.g. apt-get install redis-server) so that redis-server is on PATH";
  if (process.env.CI === "true") throw new Error(`redis-server is required in CI; ${hint}`);
  console.warn(`Skipping Redis outage tests: ${hint}`);
  return false;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}

/** A port that was free a moment ago (for a redis-server child, which cannot be told to pick one). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** A dedicated, throw-away redis-server child on `port`, resolved once it accepts connections. */
export async function startRedisServer(port: number): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server exited with ${String(code)}: ${output}`)));
    child.stdout?.on("data", (data: Buffer) => {
      output += data.toString();
      if (output.includes("Ready to accept connections")) resolve();
    });
  });
  child.removeAllListeners("exit");
  return child;
}

/** Kills a redis-server child (SIGKILL: an outage, not a clean shutdown) and waits until it is gone. */
export async function killRedisServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}
