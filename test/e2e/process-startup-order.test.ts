import * as grpc from "@grpc/grpc-js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKey } from "../support/auth-keys.js";
import { startFakeSecretManager, type FakeSecretManager } from "../support/fake-secret-manager.js";
import { freePort } from "../support/redis-server.js";
import { curl } from "../support/server-clients.js";
import { runServerProcess, startServerProcess, type ServerProcessResult } from "../support/server-process.js";

/**
 * src/main.ts on the real process: every start-up check runs before the port opens. A refused start-up
 * never logs "Listening on" and its port is never open, not even for a moment (a TCP probe or load
 * balancer would take an open port for a working server); a start-up that succeeds opens the port ready.
 */

const logLines = (stdout: string): Record<string, unknown>[] =>
  stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
function isOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * Runs the server on a fixed free port to its exit, trying to connect to that port every 25 ms meanwhile.
 * Resolves with the result and how many of those connections succeeded.
 */
async function runWatchingPort(
  env: Record<string, string>,
): Promise<{ result: ServerProcessResult; opened: number; probes: number }> {
  const port = await freePort();
  const run = runServerProcess({ env: { ...env, PORT: String(port) }, timeoutMs: 30_000 });
  let finished = false;
  void run.finally(() => (finished = true));
  let opened = 0;
  let probes = 0;
  while (!finished) {
    probes++;
    if (await isOpen(port)) opened++;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return { result: await run, opened, probes };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "aks-order-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a product file with a syntax error", () => {
  it("exits 1 with one ERROR naming the file, line and column; never Listening, the port never open", async () => {
    const config = await mkdtemp(join(dir, "broken-"));
    const key = await makeTestKey("k", "ES256");
    await writeFile(join(config, "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
    await writeFile(
      join(config, "openai_api_keys.json"),
      '{\n  "product-dev": {\n    "providers": {"echo": {"models": ["echo-1"]}}\n  }\n  "product-b": {}\n}\n',
    );
    const { result, opened } = await runWatchingPort({ API_KEY_SERVER_CONFIG_DIR: config });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("");
    const lines = logLines(result.stdout);
    expect(lines.filter((l) => l["severity"] === "ERROR")).toStrictEqual([
      {
        severity: "ERROR",
        time: expect.any(String) as unknown,
        secret: "openai-api-keys",
        // Line 5, column 3: the second product, after a missing comma.
        error: `${join(config, "openai_api_keys.json")}:5:3: not valid JSON`,
        message: "Failed to load secrets from local files",
      },
    ]);
    expect(lines.map((l) => String(l["message"])).filter((m) => m.startsWith("Listening"))).toEqual([]);
    expect(opened).toBe(0);
  });
});

describe("Secret Manager unreachable for the whole start-up deadline", () => {
  let fake: FakeSecretManager;
  beforeAll(async () => {
    fake = await startFakeSecretManager("test-project");
  });
  afterAll(async () => {
    await fake.close();
  });

  it("keeps the port closed while it retries, then exits 1 without ever logging Listening", async () => {
    for (const name of ["openai-api-keys", "jwt-public-keys", "hmac-secrets"]) {
      fake.failWith(name, grpc.status.UNAVAILABLE, "try again");
    }
    const { result, opened, probes } = await runWatchingPort({
      USE_SECRET_MANAGER: "true",
      API_KEY_SERVER_GCP_PROJECT_ID: "test-project",
      API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: `http://127.0.0.1:${fake.port}`,
      API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: "2",
      METADATA_SERVER_DETECTION: "none",
    });
    expect(result.code).toBe(1);
    const lines = logLines(result.stdout);
    expect(lines.some((l) => l["message"] === "Failed to load secrets from Secret Manager")).toBe(true);
    expect(lines.map((l) => String(l["message"])).filter((m) => m.startsWith("Listening"))).toEqual([]);
    // The process ran for the whole deadline: the port was tried many times, and was never open.
    expect(probes).toBeGreaterThan(20);
    expect(opened).toBe(0);
  });
});

describe("a start-up that succeeds", () => {
  it('logs "Secrets loaded, ready" before "Listening on", and answers /health 200 at once', async () => {
    const config = await mkdtemp(join(dir, "good-"));
    const key = await makeTestKey("k", "ES256");
    await writeFile(join(config, "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
    const server = await startServerProcess({ env: { API_KEY_SERVER_CONFIG_DIR: config } });
    try {
      const messages = server.logs().map((l) => String(l["message"]));
      const ready = messages.indexOf("Secrets loaded, ready");
      const listening = messages.findIndex((m) => m.startsWith("Listening on "));
      expect(ready).toBeGreaterThanOrEqual(0);
      expect(listening).toBeGreaterThan(ready);
      expect((await curl([`${server.url}/health`])).status).toBe(200);
    } finally {
      server.kill();
      await server.exited;
    }
  });
});
