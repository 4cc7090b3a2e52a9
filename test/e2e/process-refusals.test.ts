import { createServer, type Server } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requiredNodeMajor } from "../../src/startup/index.js";
import {
  repoRoot,
  runServerProcess,
  serverCommand,
  type ServerProcessResult,
} from "../support/server-process.js";

/**
 * Issue 16.2 on the real process: states in which a server would start and then quietly fail every call
 * (or die with a stack trace) are refused at start-up with one readable line and exit code 1.
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "aks-refusals-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The JSON log lines of a finished process, parsed. */
const logLines = (result: ServerProcessResult): Record<string, unknown>[] =>
  result.stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

/** Runs the server with `env`; it must exit 1 with nothing on stderr and exactly one ERROR line, returned. */
async function refusal(env: Record<string, string>): Promise<Record<string, unknown>[]> {
  const result = await runServerProcess({ env, timeoutMs: 30_000 });
  expect(result.code).toBe(1);
  expect(result.stderr).toBe("");
  // Nothing was served before the refusal, and no development default was announced.
  expect(logLines(result).some((entry) => entry["message"] === "Secrets loaded, ready")).toBe(false);
  expect(result.stdout).not.toContain("embedded default");
  return logLines(result).filter((entry) => entry["severity"] === "ERROR");
}

describe("production without a product secret: no embedded echo default", () => {
  it.each([{ K_SERVICE: "api-key-server" }, { NODE_ENV: "production" }])(
    "%j and an empty config folder → exit 1, one ERROR naming the fix",
    async (env) => {
      const empty = await mkdtemp(join(dir, "empty-"));
      expect(await refusal({ ...env, API_KEY_SERVER_CONFIG_DIR: empty })).toStrictEqual([
        {
          severity: "ERROR",
          time: expect.any(String) as unknown,
          secret: "openai-api-keys",
          error: `${join(empty, "openai_api_keys.json")} not found, and the embedded development product is never served in production (K_SERVICE or NODE_ENV=production is set): deploy with USE_SECRET_MANAGER=true and API_KEY_SERVER_GCP_PROJECT_ID, or provide the file`,
          message: "Failed to load secrets from local files",
        },
      ]);
    },
  );
});

describe("production with no JWT keys and no HMAC secrets: no service", () => {
  it("exits 1 with one ERROR naming both missing secrets", async () => {
    const config = await mkdtemp(join(dir, "nokeys-"));
    await writeFile(
      join(config, "openai_api_keys.json"),
      JSON.stringify({ "product-dev": { providers: { echo: { models: ["echo-1"] } } } }),
    );
    expect(await refusal({ NODE_ENV: "production", API_KEY_SERVER_CONFIG_DIR: config })).toStrictEqual([
      {
        severity: "ERROR",
        time: expect.any(String) as unknown,
        secret: "jwt-public-keys, hmac-secrets",
        error: `neither ${join(config, "jwt_public_keys.json")} nor ${join(config, "hmac_secrets.json")} exists, so every chat call would be refused: create one of them (docs/runbook.ja.md §0)`,
        message: "Failed to load secrets from local files",
      },
    ]);
  });
});

describe("a port already in use", () => {
  let blocker: Server;
  let port: number;
  beforeAll(async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    port = (blocker.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => blocker.close(resolve));
  });

  it("is one line on stderr and exit 1, no stack trace", async () => {
    const result = await runServerProcess({ env: { PORT: String(port) }, timeoutMs: 30_000 });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `api-key-server: cannot listen on 127.0.0.1:${port}: the port is already in use (is another server running? stop it, or set PORT to a free port)\n`,
    );
    expect(result.stdout).not.toContain("EADDRINUSE");
    expect(logLines(result).filter((entry) => entry["severity"] === "ERROR")).toEqual([]);
  });
});

describe("a Node.js older than the one required", () => {
  it("package.json's engines.node names the same major version the start-up check enforces", async () => {
    const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as {
      engines: { node: string };
    };
    expect(pkg.engines.node).toBe(`>=${requiredNodeMajor}`);
  });

  it("is one line on stderr and exit 1, before anything else is loaded", async () => {
    // The test runs on Node 24; a preload makes this process report 20.20.2, as the system Node of the
    // machine the issue was found on did. The check must run before the configuration is even read, so an
    // invalid setting next to it must not be what is reported.
    const preload = join(dir, "pretend-node-20.mjs");
    await writeFile(preload, 'Object.defineProperty(process.versions, "node", { value: "20.20.2" });\n');
    const result = await runServerProcess({
      env: { NODE_OPTIONS: `--import ${preload}`, API_KEY_SERVER_MAX_TOKENS: "abc" },
      timeoutMs: 30_000,
    });
    expect(result).toStrictEqual({
      code: 1,
      signal: null,
      stdout: "",
      stderr: `api-key-server: Node.js 20.20.2 is too old: api-key-server needs Node.js ${requiredNodeMajor} or newer (run it with npm start, which uses the Node.js ${requiredNodeMajor} installed by npm ci, or use the container image)\n`,
    });
  });
});

describe("Secret Manager without Google credentials", () => {
  it("prints nothing but JSON lines (Node's warnings included) and shuts down without a false warning", async () => {
    // Node's own warning printer on: the harness's --no-warnings would hide the MetadataLookupWarning the
    // Google auth library emits when it finds no credentials.
    const command = serverCommand.filter((arg) => arg !== "--no-warnings");
    const result = await runServerProcess({
      command,
      env: {
        USE_SECRET_MANAGER: "true",
        API_KEY_SERVER_GCP_PROJECT_ID: "test-project",
        API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: "1",
        // No endpoint and no credentials: the real client looks for them (the metadata server included,
        // which answers nothing here) and fails.
        GOOGLE_APPLICATION_CREDENTIALS: undefined,
        HOME: dir,
      },
      timeoutMs: 60_000,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("");
    const lines = result.stdout.split("\n").filter((line) => line !== "");
    for (const line of lines) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
    const entries = logLines(result);
    expect(entries.filter((e) => e["severity"] === "ERROR").map((e) => e["message"])).toEqual([
      "Failed to load secrets from Secret Manager",
    ]);
    // The client never came up, so there was nothing to close: no "closing the secret source failed".
    expect(entries.filter((e) => String(e["message"]).startsWith("Shutdown:"))).toEqual([]);
    // Node's warnings are log lines: the experimental type stripping of the test command, and the auth
    // library's MetadataLookupWarning.
    const warnings = entries.filter((e) => e["severity"] === "WARNING").map((e) => e["warning"]);
    expect(warnings).toContain("ExperimentalWarning");
    expect(warnings).toContain("MetadataLookupWarning");
  });
});
