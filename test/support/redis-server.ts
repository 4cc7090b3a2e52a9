import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";

// redis-server children for tests (no vitest import: the global setup uses these too).

/** Whether `redis-server` is on PATH (the global setup starts one per run). */
export function redisServerAvailable(): boolean {
  return spawnSync("redis-server", ["--version"]).status === 0;
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

/**
 * A dedicated, throw-away redis-server child on `port`, resolved once it accepts connections. With
 * `appendOnlyDir`, persistence is on (AOF, fsync on every write) in that folder, so a restart on the same
 * folder reloads every write the server acknowledged.
 */
export async function startRedisServer(
  port: number,
  options: { readonly appendOnlyDir?: string } = {},
): Promise<ChildProcess> {
  const persistence =
    options.appendOnlyDir === undefined
      ? ["--appendonly", "no"]
      : ["--appendonly", "yes", "--appendfsync", "always", "--dir", options.appendOnlyDir];
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...persistence],
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
