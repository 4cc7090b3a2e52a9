import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKey, mintJwt } from "../support/auth-keys.js";
import { bufBinary, curl, run } from "../support/server-clients.js";
import {
  repoRoot,
  runServerProcess,
  startServerProcess,
  type ServerProcess,
} from "../support/server-process.js";

/**
 * The real process (src/main.ts, as `npm start` runs it, from the TypeScript sources): what only a process
 * shows — exit codes, the one line a bad setting prints, start-up from a fresh clone's config folder, the
 * embedded default product, and the issue 2 "How it is shown" commands (curl, buf curl) against it.
 */

const { version } = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string };

/** A temporary working directory with a `config/` folder holding `files` (name → contents). */
async function workDir(files: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "aks-proc-"));
  await mkdir(join(dir, "config"));
  for (const [name, contents] of Object.entries(files)) await writeFile(join(dir, "config", name), contents);
  return dir;
}

const messages = (server: ServerProcess, severity: string): string[] =>
  server
    .logs()
    .filter((entry) => entry["severity"] === severity)
    .map((entry) => String(entry["message"]));

describe("invalid settings stop start-up with one line (issue 3.1)", () => {
  // One process per row is slow (the whole module graph loads first), so this table proves the process's
  // wiring (stderr line, exit 1, nothing on stdout) on representative rows; test/config has every message.
  it.each([
    [
      { API_KEY_SERVER_MAX_TOKENS: "abc" },
      'API_KEY_SERVER_MAX_TOKENS: expected a positive integer, got "abc"',
    ],
    [
      { API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "-5" },
      'API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: expected a positive integer, got "-5"',
    ],
    [{ PORT: "70000" }, 'PORT: expected an integer from 0 to 65535, got "70000"'],
    [
      { USE_SECRET_MANAGER: "true" },
      "API_KEY_SERVER_GCP_PROJECT_ID: expected a Google Cloud project id when USE_SECRET_MANAGER=true",
    ],
    // The URL's password must not be echoed.
    [{ REDIS_URL: "http://user:hunter2@redis:6379" }, "REDIS_URL: expected a redis:// or rediss:// URL"],
    [
      {
        USE_SECRET_MANAGER: "true",
        API_KEY_SERVER_GCP_PROJECT_ID: "p",
        API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: "https://x:443",
      },
      'API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: expected host:port (TLS) or http://host:port (plaintext, for local fakes only), got "https://x:443"',
    ],
  ])("%j → exit 1 and the line %j", async (env, message) => {
    const result = await runServerProcess({ env, timeoutMs: 20_000 });
    expect(result).toStrictEqual({
      code: 1,
      signal: null,
      stdout: "",
      stderr: `api-key-server: invalid configuration: ${message}\n`,
    });
    expect(result.stderr).not.toContain("hunter2");
  });
});

describe("a fresh clone: the example files copied into ./config (issue 3, issue 2)", () => {
  let cwd: string;
  let server: ServerProcess;

  beforeAll(async () => {
    const examples = ["openai_api_keys", "jwt_public_keys", "hmac_secrets"];
    cwd = await workDir();
    for (const name of examples) {
      await copyFile(join(repoRoot, "config", `${name}.example.json`), join(cwd, "config", `${name}.json`));
    }
    // Default API_KEY_SERVER_CONFIG_DIR (./config, relative to the working directory), plus one typo.
    server = await startServerProcess({ cwd, env: { API_KEY_SERVER_MAX_TOKEN: "100" } });
    await server.waitForLine((line) => line.includes('"Secrets loaded, ready"'));
  });

  afterAll(async () => {
    server.kill();
    await server.exited;
    await rm(cwd, { recursive: true, force: true });
  });

  it("starts from the three example files, reporting the package version", () => {
    const logs = server.logs();
    expect(logs.find((entry) => entry["message"] === `Listening on 127.0.0.1:${server.port}`)).toMatchObject({
      severity: "INFO",
      version,
      secretSource: "files",
      redis: false,
    });
    expect(logs.find((entry) => entry["message"] === "Secrets loaded")?.["secretVersions"]).toStrictEqual({
      "openai-api-keys": expect.any(String) as unknown,
      "jwt-public-keys": expect.any(String) as unknown,
      "hmac-secrets": expect.any(String) as unknown,
    });
    expect(
      Object.values(logs.find((e) => e["message"] === "Secrets loaded")?.["secretVersions"] ?? {}),
    ).not.toContain("missing");
    expect(messages(server, "ERROR")).toEqual([]);
    // The only warning is the misspelt setting, named, with the setting it most likely meant.
    expect(messages(server, "WARNING")).toEqual([
      "Unknown setting API_KEY_SERVER_MAX_TOKEN is ignored (did you mean API_KEY_SERVER_MAX_TOKENS?)",
    ]);
  });

  it("answers curl /health with 200", async () => {
    const res = await curl([`${server.url}/health`]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ status: "ok", version, products: 2 });
  });

  it("answers buf curl --protocol grpc .../grpc.health.v1.Health/Check with SERVING", async () => {
    const res = await run(bufBinary, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      `${server.url}/grpc.health.v1.Health/Check`,
    ]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toStrictEqual({ status: "SERVING" });
  });

  it("lists every service with buf curl --list-services (reflection)", async () => {
    const res = await run(bufBinary, ["curl", "--list-services", "--http2-prior-knowledge", server.url]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(res.stdout.trim().split("\n")).toStrictEqual([
      "apikeyserver.v1.ChatService",
      "apikeyserver.v1.EmbeddingService",
      "apikeyserver.v1.HealthService",
      "apikeyserver.v1.UsageService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });
});

describe("an empty config folder: the embedded default product (issue 2)", () => {
  let cwd: string;
  let server: ServerProcess;

  beforeAll(async () => {
    cwd = await workDir();
    server = await startServerProcess({ cwd, env: { API_KEY_SERVER_SECRET_REFRESH_SECONDS: "1" } });
    await server.waitForLine((line) => line.includes('"Secrets loaded, ready"'));
  });

  afterAll(async () => {
    server.kill();
    await server.exited;
    await rm(cwd, { recursive: true, force: true });
  });

  it("starts, saying why every chat call will be refused", async () => {
    expect(messages(server, "WARNING")).toStrictEqual([
      "No product file: serving the embedded default (product-dev: echo-1, gpt-4o and gpt-4o-mini all answered by the echo provider)",
      "Secret not found; JWT authentication disabled",
      "Secret not found; HMAC authentication disabled",
      "No JWT keys and no HMAC secrets: every chat request will be rejected as Unauthorized",
    ]);
    expect(messages(server, "ERROR")).toEqual([]);
    const health = await curl([`${server.url}/health`]);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: "ok", products: 1 });
    const chat = await curl([
      "-H",
      "content-type: application/json",
      "--data-binary",
      "{}",
      `${server.url}/v1/chat/product-dev`,
    ]);
    expect(chat.status).toBe(401);
  });

  it("serves product-dev/echo-1 once a JWT key file is added (picked up by the running process)", async () => {
    const key = await makeTestKey("dev-key", "ES256");
    await writeFile(join(cwd, "config", "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
    await server.waitForLine(
      (line) => line.includes('"Secrets loaded"') && !line.includes('"jwt-public-keys":"missing"'),
    );
    const token = await mintJwt(key, { claims: { sub: "svc-dev", products: ["product-dev"] } });

    const models = await curl([
      "-H",
      `authorization: Bearer ${token}`,
      `${server.url}/v1/chat/product-dev/models`,
    ]);
    expect(models.status).toBe(200);
    expect(JSON.parse(models.body)).toMatchObject({
      object: "list",
      data: [
        { id: "echo-1", object: "model", owned_by: "echo" },
        { id: "gpt-4o", object: "model", owned_by: "echo" },
        { id: "gpt-4o-mini", object: "model", owned_by: "echo" },
      ],
    });

    const chat = await curl([
      "-H",
      `authorization: Bearer ${token}`,
      "-H",
      "content-type: application/json",
      "--data-binary",
      JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hello" }] }),
      `${server.url}/v1/chat/product-dev`,
    ]);
    expect(chat.status).toBe(200);
    expect(JSON.parse(chat.body)).toMatchObject({ object: "chat.completion", model: "echo-1" });

    // The seed runbook's request, exactly as written there (model gpt-4o), given a token.
    const runbook = await curl([
      "-X",
      "POST",
      `${server.url}/v1/chat/product-dev`,
      "-H",
      "Content-Type: application/json",
      "-H",
      `Authorization: Bearer ${token}`,
      "-d",
      '{\n    "model": "gpt-4o",\n    "messages": [{"role": "user", "content": "Hello"}]\n  }',
    ]);
    expect(runbook.status).toBe(200);
    expect(JSON.parse(runbook.body)).toMatchObject({
      object: "chat.completion",
      model: "gpt-4o",
      choices: [{ index: 0, message: { role: "assistant", content: "Hello" }, finish_reason: "stop" }],
    });
    expect(server.lines.join("\n")).not.toContain(token);
  });
});
