import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { makeTestKey, mintJwt, type TestKey } from "../support/auth-keys.js";
import { startFakeSecretManager, type FakeSecretManager } from "../support/fake-secret-manager.js";
import { freePort } from "../support/redis-server.js";
import { curl } from "../support/server-clients.js";
import { runServerProcess, startServerProcess, type ServerProcess } from "../support/server-process.js";

/**
 * Issue 3.4 on the real process: src/main.ts with USE_SECRET_MANAGER=true, its Secret Manager client pointed
 * at a local fake through API_KEY_SERVER_SECRET_MANAGER_ENDPOINT=http://127.0.0.1:PORT.
 */

const projectId = "test-project";
const apiKey = "sk-live-PROCESS-SECRET-VALUE-0000001";
const hmacSecret = "hmac-PROCESS-SECRET-VALUE-0123456789abcdef";
const secretValues = [apiKey, hmacSecret];

const productsDoc = (models: string[], extraProduct = false): string =>
  JSON.stringify({
    "product-dev": {
      providers: {
        openai: { api_key: apiKey, base_url: "http://127.0.0.1:9/v1", models: ["gpt-4o"] },
        echo: { models },
      },
    },
    ...(extraProduct ? { "product-b": { providers: { echo: { models: ["echo-b"] } } } } : {}),
  });

describe("the server process reading Secret Manager", () => {
  let fake: FakeSecretManager;
  let key: TestKey;
  let jwtDoc: string;

  beforeAll(async () => {
    fake = await startFakeSecretManager(projectId);
    key = await makeTestKey("sm-key", "ES256");
    jwtDoc = JSON.stringify({ keys: [key.publicJwk] });
  });

  afterAll(async () => {
    await fake.close();
  });

  const resetFake = (): void => {
    for (const name of ["openai-api-keys", "jwt-public-keys", "hmac-secrets"]) {
      fake.deleteSecret(name);
      fake.failWith(name, undefined);
    }
  };

  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    USE_SECRET_MANAGER: "true",
    API_KEY_SERVER_GCP_PROJECT_ID: projectId,
    API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: `http://127.0.0.1:${fake.port}`,
    // The Google auth library must never probe the GCE metadata server from a test.
    METADATA_SERVER_DETECTION: "none",
    ...extra,
  });

  describe("a product secret that cannot be read at start-up stops the process", () => {
    beforeEach(resetFake);

    it.each([
      {
        name: "NOT_FOUND (no such secret)",
        setup: () => undefined,
        env: {},
        error: `not found (projects/${projectId}/secrets/openai-api-keys)`,
      },
      {
        name: "PERMISSION_DENIED (injected)",
        setup: () => fake.failWith("openai-api-keys", grpc.status.PERMISSION_DENIED, "caller lacks access"),
        env: {},
        error: `projects/${projectId}/secrets/openai-api-keys: PERMISSION_DENIED: caller lacks access`,
      },
      {
        name: "PERMISSION_DENIED (another project)",
        setup: () => undefined,
        env: { API_KEY_SERVER_GCP_PROJECT_ID: "other-project" },
        error:
          "projects/other-project/secrets/openai-api-keys: PERMISSION_DENIED: Permission 'secretmanager.versions.access' denied for resource 'projects/other-project/secrets/openai-api-keys/versions/latest' (or it may not exist).",
      },
    ])("$name → the secret, the cause, exit 1", async (c) => {
      // The other two exist, so the failure is the product secret's alone and no value may leak.
      fake.addVersion("jwt-public-keys", jwtDoc);
      fake.addVersion("hmac-secrets", JSON.stringify({ "svc-a": { secret: hmacSecret, products: "*" } }));
      c.setup();

      const result = await runServerProcess({ env: env(c.env), timeoutMs: 30_000 });

      expect(result.code).toBe(1);
      expect(result.stderr).toBe("");
      const errors = result.stdout
        .split("\n")
        .filter((line) => line.includes('"severity":"ERROR"'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(errors).toStrictEqual([
        {
          severity: "ERROR",
          time: expect.any(String) as unknown,
          secret: "openai-api-keys",
          error: c.error,
          message: "Failed to load secrets from Secret Manager",
        },
      ]);
      for (const value of secretValues) expect(result.stdout + result.stderr).not.toContain(value);
    });

    it("host:port (TLS) asks for Google credentials and sends nothing in plaintext; exit 1, no stack trace", async () => {
      fake.addVersion("openai-api-keys", productsDoc(["echo-1"]));
      const before = fake.requests.length;
      const result = await runServerProcess({
        env: env({
          API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: `127.0.0.1:${fake.port}`,
          // Hermetic: never a developer's own application-default credentials.
          GOOGLE_APPLICATION_CREDENTIALS: "/nonexistent/adc.json",
        }),
        timeoutMs: 30_000,
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe("");
      const error = result.stdout.split("\n").find((line) => line.includes('"severity":"ERROR"')) ?? "";
      expect(JSON.parse(error)).toMatchObject({
        message: "Failed to load secrets from Secret Manager",
        secret: "openai-api-keys",
        error: expect.stringContaining("/nonexistent/adc.json") as unknown,
      });
      expect(fake.requests.length).toBe(before);
    });

    it("a malformed product secret at start-up: names the JSON path, never the value, exit 1", async () => {
      fake.addVersion(
        "openai-api-keys",
        JSON.stringify({ "product-dev": { providers: { openai: { api_key: apiKey, modles: ["gpt-4o"] } } } }),
      );
      const result = await runServerProcess({ env: env(), timeoutMs: 30_000 });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe("");
      const error = result.stdout.split("\n").find((line) => line.includes('"severity":"ERROR"')) ?? "";
      expect(JSON.parse(error)).toMatchObject({
        message: "Failed to load secrets from Secret Manager",
        secret: "openai-api-keys",
        error: expect.stringContaining("modles") as unknown,
      });
      expect(result.stdout + result.stderr).not.toContain(apiKey);
    });

    it("a product secret that is not JSON: names the secret version, line and column, never the value", async () => {
      // A missing comma between two products, on line 3.
      const doc = `{\n  "a": {"providers": {"openai": {"api_key": "${apiKey}", "models": ["m"]}}}\n  "b": {}\n}`;
      const version = fake.addVersion("openai-api-keys", doc);
      fake.addVersion("jwt-public-keys", jwtDoc);
      const result = await runServerProcess({ env: env(), timeoutMs: 30_000 });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe("");
      const error = result.stdout.split("\n").find((line) => line.includes('"severity":"ERROR"')) ?? "";
      expect(JSON.parse(error)).toMatchObject({
        message: "Failed to load secrets from Secret Manager",
        secret: "openai-api-keys",
        error: `projects/${projectId}/secrets/openai-api-keys/versions/${version}:3:3: not valid JSON`,
      });
      expect(result.stdout + result.stderr).not.toContain(apiKey);
    });
  });

  describe("Secret Manager unreachable at start-up (issue 16.2): a warning per attempt, then exit 1", () => {
    beforeEach(resetFake);

    it("retries within API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS, one WARNING per failed attempt, then the runbook's error", async () => {
      fake.addVersion("openai-api-keys", productsDoc(["echo-1"]));
      fake.addVersion("jwt-public-keys", jwtDoc);
      fake.failWith("openai-api-keys", grpc.status.UNAVAILABLE, "the service is down");
      const result = await runServerProcess({
        env: env({ API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: "3" }),
        timeoutMs: 30_000,
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe("");
      const entries = result.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const warnings = entries.filter((entry) => entry["severity"] === "WARNING");
      // 1 s, 2 s, then what is left of the 3 s: at least two attempts were retried, each said so at once.
      expect(warnings.length).toBeGreaterThanOrEqual(2);
      warnings.forEach((warning, i) => {
        expect(warning).toMatchObject({
          secret: "openai-api-keys",
          source: `projects/${projectId}/secrets/openai-api-keys`,
          error: `projects/${projectId}/secrets/openai-api-keys: UNAVAILABLE: the service is down`,
          attempt: i + 1,
          retryInMs: expect.any(Number) as unknown,
          message: expect.stringMatching(
            new RegExp(`^Secret read failed at start-up \\(attempt ${i + 1}\\); retrying in \\d+\\.\\d s$`),
          ) as unknown,
        });
      });
      const errors = entries.filter((entry) => entry["severity"] === "ERROR");
      expect(errors).toStrictEqual([
        {
          severity: "ERROR",
          time: expect.any(String) as unknown,
          secret: "openai-api-keys",
          error: `projects/${projectId}/secrets/openai-api-keys: UNAVAILABLE: the service is down`,
          message: "Failed to load secrets from Secret Manager",
        },
      ]);
      // The error is the last line: nothing was served in between.
      expect(entries.at(-1)).toBe(errors[0]);
      expect(entries.some((entry) => entry["message"] === "Secrets loaded, ready")).toBe(false);
    });

    it("becomes ready once Secret Manager answers within the deadline", async () => {
      fake.addVersion("openai-api-keys", productsDoc(["echo-1"]));
      fake.addVersion("jwt-public-keys", jwtDoc);
      fake.failWith("openai-api-keys", grpc.status.UNAVAILABLE, "the service is down");
      const port = await freePort();
      const before = fake.requests.length;
      const starting = startServerProcess({
        env: env({ API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: "60", PORT: String(port) }),
      });
      starting.catch(() => undefined);
      // Two failed reads of the product secret: the process is retrying, and its port is still closed.
      await fake.whenRequested(before + 4);
      expect((await curl([`http://127.0.0.1:${port}/health`])).status).toBe(0);
      fake.failWith("openai-api-keys", undefined);
      const server = await starting;
      try {
        const warning = server
          .logs()
          .find((entry) => String(entry["message"]).startsWith("Secret read failed at start-up"));
        expect(warning).toMatchObject({ severity: "WARNING", attempt: 1, secret: "openai-api-keys" });
        expect((await curl([`${server.url}/health`])).status).toBe(200);
      } finally {
        server.kill();
        await server.exited;
      }
    });
  });

  describe("a running process", () => {
    let server: ServerProcess;
    let starting: Promise<ServerProcess>;
    let port: number;
    let release: (() => void) | undefined;
    let token: string;

    beforeAll(async () => {
      resetFake();
      fake.addVersion("openai-api-keys", productsDoc(["echo-1"]));
      fake.addVersion("jwt-public-keys", jwtDoc);
      // No hmac-secrets: a warning, not a failure. The first answers are held until the test releases them.
      release = fake.hold();
      const before = fake.requests.length;
      port = await freePort();
      starting = startServerProcess({
        env: env({ API_KEY_SERVER_SECRET_REFRESH_SECONDS: "1", PORT: String(port) }),
      });
      // Never left unhandled while the test holds the load; the test awaits it.
      starting.catch(() => undefined);
      await fake.whenRequested(before + 1);
      token = await mintJwt(key, { claims: { sub: "svc-sm", products: ["product-dev", "product-b"] } });
    });

    afterAll(async () => {
      release?.();
      server = await starting;
      server.kill();
      await server.exited;
    });

    const models = async (product = "product-dev"): Promise<{ status: number; ids: string[] }> => {
      const res = await curl([
        "-H",
        `authorization: Bearer ${token}`,
        `${server.url}/v1/chat/${product}/models`,
      ]);
      if (res.status !== 200) return { status: res.status, ids: [] };
      const body = JSON.parse(res.body) as { data: { id: string }[] };
      return { status: res.status, ids: body.data.map((m) => m.id).sort() };
    };

    const health = async (): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await curl([`${server.url}/health`]);
      return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown> };
    };

    it("keeps its port closed while the first load is still waiting for Secret Manager, then opens it ready", async () => {
      // Start-up checks all run before the port opens (src/main.ts): nothing accepts a connection yet.
      const refused = await curl([`http://127.0.0.1:${port}/health`]);
      expect(refused.status).toBe(0);
      release?.();
      release = undefined;
      server = await starting;
      expect(server.port).toBe(port);
      const ready = await health();
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ status: "ok", products: 1 });
    });

    it("runs with the HMAC secret missing, saying so once", () => {
      const warnings = server
        .logs()
        .filter((entry) => entry["severity"] === "WARNING")
        .map((entry) => [entry["message"], entry["secret"]]);
      expect(warnings).toStrictEqual([["Secret not found; HMAC authentication disabled", "hmac-secrets"]]);
    });

    it("serves the first version", async () => {
      expect(await models()).toStrictEqual({ status: 200, ids: ["echo-1", "gpt-4o"] });
    });

    it("picks up a new version while running (ListModels and /health reflect it)", async () => {
      const version = fake.addVersion("openai-api-keys", productsDoc(["echo-1", "echo-2"], true));
      await server.waitForLine(
        (line) => line.includes('"Secrets loaded"') && line.includes(`"openai-api-keys":"${version}"`),
      );
      expect(await models()).toStrictEqual({ status: 200, ids: ["echo-1", "echo-2", "gpt-4o"] });
      expect(await models("product-b")).toStrictEqual({ status: 200, ids: ["echo-b"] });
      expect((await health()).body).toMatchObject({ status: "ok", products: 2 });
    });

    it("keeps the last good version when a malformed one is added, logging the error; /health stays 200", async () => {
      const good = fake.requests.length;
      fake.addVersion("openai-api-keys", "{ not json");
      const line = await server.waitForLine((l) =>
        l.includes('"Failed to refresh secret; keeping the last good version"'),
      );
      expect(JSON.parse(line)).toMatchObject({
        severity: "ERROR",
        secret: "openai-api-keys",
        keptVersion: "2",
      });
      // A few more refreshes happen; none of them changes what is served.
      await fake.whenRequested(good + 9);
      expect(await models()).toStrictEqual({ status: 200, ids: ["echo-1", "echo-2", "gpt-4o"] });
      expect(await health()).toMatchObject({ status: 200, body: { status: "ok", products: 2 } });
    });

    it("recovers when a good version follows the malformed one", async () => {
      const version = fake.addVersion("openai-api-keys", productsDoc(["echo-3"]));
      await server.waitForLine(
        (line) => line.includes('"Secrets loaded"') && line.includes(`"openai-api-keys":"${version}"`),
      );
      expect(await models()).toStrictEqual({ status: 200, ids: ["echo-3", "gpt-4o"] });
      // product-b is gone with the new version: an unknown product, although the token names it.
      expect(await models("product-b")).toStrictEqual({ status: 404, ids: [] });
    });

    it("exits 0 on SIGTERM, closing the Secret Manager client cleanly", async () => {
      server.kill("SIGTERM");
      expect(await server.exited).toStrictEqual({ code: 0, signal: null });
      expect(server.lines.filter((line) => line.includes('"Shutdown: '))).toEqual([]);
      expect(server.stderr.filter((line) => line !== "")).toEqual([]);
    });

    it("never logs a secret value or the caller's token", () => {
      const output = [...server.lines, ...server.stderr].join("\n");
      for (const value of [...secretValues, token]) expect(output).not.toContain(value);
    });
  });
});
