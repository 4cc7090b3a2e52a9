import { describe, expect, it } from "vitest";
import { closestSetting, ConfigError, loadConfig, unknownSettings } from "../../src/config/index.js";

describe("loadConfig", () => {
  it("applies the seed's defaults to an empty environment", () => {
    const config = loadConfig({});
    expect(config).toEqual({
      production: false,
      cloudRun: false,
      port: 8000,
      host: "0.0.0.0",
      maxTokens: 8192,
      requestTimeoutMs: 90_000,
      streamIdleTimeoutMs: 60_000,
      redisUrl: undefined,
      redisKeyPrefix: "",
      secrets: {
        source: { kind: "files", dir: "./config" },
        names: { products: "openai-api-keys", jwtKeys: "jwt-public-keys", hmacSecrets: "hmac-secrets" },
        refreshIntervalMs: 60_000,
        startupDeadlineMs: 60_000,
      },
      jwt: { issuer: undefined, audience: undefined, clockToleranceSeconds: 30, maxAgeSeconds: 86_400 },
      hmacWindowSeconds: 300,
      hmacRequireNonce: true,
      maxBodyBytes: 1_048_576,
      bodyTimeoutMs: 30_000,
      maxConcurrentCallsPerCaller: 100,
      corsOrigins: [],
      reflection: true,
      logLevel: "info",
      metricsPort: undefined,
      rateLimit: { requestsPerMinute: 600, tokensPerMinute: undefined },
      shutdownGraceMs: 8000,
      idleTimeoutMs: 65_000,
      trustedProxies: 0,
    });
  });

  it("reads the runbook's production environment", () => {
    const config = loadConfig({
      USE_SECRET_MANAGER: "true",
      API_KEY_SERVER_GCP_PROJECT_ID: "my-project",
      API_KEY_SERVER_MAX_TOKENS: "8192",
      API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "240",
      PORT: "8080",
    });
    expect(config.secrets.source).toStrictEqual({
      kind: "secret-manager",
      projectId: "my-project",
      endpoint: undefined,
    });
    expect(config.requestTimeoutMs).toBe(240_000);
    expect(config.port).toBe(8080);
  });

  it("reads every project setting", () => {
    const config = loadConfig({
      USE_SECRET_MANAGER: "false",
      API_KEY_SERVER_HOST: "127.0.0.1",
      REDIS_URL: "redis://:pw@redis:6379/0",
      API_KEY_SERVER_CONFIG_DIR: "/etc/aks",
      API_KEY_SERVER_SECRET_REFRESH_SECONDS: "5",
      API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: "15",
      API_KEY_SERVER_SECRET_NAME_PRODUCTS: "products-v2",
      API_KEY_SERVER_SECRET_NAME_JWT: "jwks",
      API_KEY_SERVER_SECRET_NAME_HMAC: "hmac_keys",
      API_KEY_SERVER_JWT_ISSUER: "https://issuer.example",
      API_KEY_SERVER_JWT_AUDIENCE: "api-key-server",
      API_KEY_SERVER_JWT_CLOCK_TOLERANCE_SECONDS: "0",
      API_KEY_SERVER_JWT_MAX_AGE_SECONDS: "3600",
      API_KEY_SERVER_HMAC_WINDOW_SECONDS: "60",
      API_KEY_SERVER_HMAC_REQUIRE_NONCE: "false",
      API_KEY_SERVER_MAX_BODY_BYTES: "2048",
      API_KEY_SERVER_BODY_TIMEOUT_SECONDS: "5",
      API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER: "8",
      API_KEY_SERVER_CORS_ORIGINS: "https://a.example, http://localhost:5173, https://*.example.com:8443",
      API_KEY_SERVER_REFLECTION: "false",
      API_KEY_SERVER_LOG_LEVEL: "debug",
      API_KEY_SERVER_METRICS_PORT: "9090",
      API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE: "60",
      API_KEY_SERVER_RATE_LIMIT_TOKENS_PER_MINUTE: "50000",
      API_KEY_SERVER_REDIS_KEY_PREFIX: "staging:",
      API_KEY_SERVER_SHUTDOWN_GRACE_SECONDS: "0",
      API_KEY_SERVER_IDLE_TIMEOUT_SECONDS: "120",
      API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS: "240",
    });
    expect(config).toMatchObject({
      host: "127.0.0.1",
      redisUrl: "redis://:pw@redis:6379/0",
      redisKeyPrefix: "staging:",
      secrets: {
        source: { kind: "files", dir: "/etc/aks" },
        names: { products: "products-v2", jwtKeys: "jwks", hmacSecrets: "hmac_keys" },
        refreshIntervalMs: 5000,
        startupDeadlineMs: 15_000,
      },
      jwt: {
        issuer: "https://issuer.example",
        audience: "api-key-server",
        clockToleranceSeconds: 0,
        maxAgeSeconds: 3600,
      },
      hmacWindowSeconds: 60,
      hmacRequireNonce: false,
      maxBodyBytes: 2048,
      bodyTimeoutMs: 5000,
      maxConcurrentCallsPerCaller: 8,
      corsOrigins: ["https://a.example", "http://localhost:5173", "https://*.example.com:8443"],
      reflection: false,
      logLevel: "debug",
      metricsPort: 9090,
      rateLimit: { requestsPerMinute: 60, tokensPerMinute: 50000 },
      shutdownGraceMs: 0,
      idleTimeoutMs: 120_000,
      streamIdleTimeoutMs: 240_000,
    });
  });

  it.each([
    [{}, false],
    [{ NODE_ENV: "development" }, false],
    [{ NODE_ENV: "production" }, true],
    // Cloud Run sets K_SERVICE on every instance, whatever the image's NODE_ENV.
    [{ K_SERVICE: "api-key-server" }, true],
    [{ K_SERVICE: "api-key-server", NODE_ENV: "development" }, true],
  ])("production is %j → %s", (env, production) => {
    expect(loadConfig(env).production).toBe(production);
  });

  it("treats an empty value as unset", () => {
    expect(loadConfig({ PORT: "", USE_SECRET_MANAGER: " ", REDIS_URL: "" })).toMatchObject({
      port: 8000,
      redisUrl: undefined,
      secrets: { source: { kind: "files" } },
    });
  });

  it("returns a deeply frozen object", () => {
    const config = loadConfig({ API_KEY_SERVER_CORS_ORIGINS: "https://a.example" });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.secrets.source)).toBe(true);
    expect(Object.isFrozen(config.corsOrigins)).toBe(true);
    expect(() => (config.corsOrigins as string[]).push("x")).toThrow(TypeError);
  });

  it.each([
    [
      { API_KEY_SERVER_MAX_TOKENS: "abc" },
      'API_KEY_SERVER_MAX_TOKENS: expected a positive integer, got "abc"',
    ],
    [{ API_KEY_SERVER_MAX_TOKENS: "-5" }, 'API_KEY_SERVER_MAX_TOKENS: expected a positive integer, got "-5"'],
    [{ API_KEY_SERVER_MAX_TOKENS: "0" }, 'API_KEY_SERVER_MAX_TOKENS: expected a positive integer, got "0"'],
    [
      { API_KEY_SERVER_MAX_TOKENS: "1.5" },
      'API_KEY_SERVER_MAX_TOKENS: expected a positive integer, got "1.5"',
    ],
    [
      { API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "90s" },
      'API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: expected a positive integer, got "90s"',
    ],
    [
      { API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: "0" },
      'API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS: expected a positive integer, got "0"',
    ],
    [
      { API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS: "0" },
      'API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS: expected a positive integer, got "0"',
    ],
    [
      { API_KEY_SERVER_MAX_BODY_BYTES: "2097153" },
      'API_KEY_SERVER_MAX_BODY_BYTES: expected an integer from 1 to 2097152, got "2097153"',
    ],
    [{ PORT: "70000" }, 'PORT: expected an integer from 0 to 65535, got "70000"'],
    [{ PORT: "http" }, 'PORT: expected an integer from 0 to 65535, got "http"'],
    [
      { API_KEY_SERVER_METRICS_PORT: "-1" },
      'API_KEY_SERVER_METRICS_PORT: expected an integer from 0 to 65535, got "-1"',
    ],
    [
      { API_KEY_SERVER_METRICS_PORT: "8000" },
      'API_KEY_SERVER_METRICS_PORT: expected a port other than PORT (8000), got "8000"',
    ],
    [
      { PORT: "8080", API_KEY_SERVER_METRICS_PORT: "8080" },
      'API_KEY_SERVER_METRICS_PORT: expected a port other than PORT (8080), got "8080"',
    ],
    [
      { API_KEY_SERVER_SHUTDOWN_GRACE_SECONDS: "-1" },
      'API_KEY_SERVER_SHUTDOWN_GRACE_SECONDS: expected a non-negative integer, got "-1"',
    ],
    [{ USE_SECRET_MANAGER: "yes" }, 'USE_SECRET_MANAGER: expected "true" or "false", got "yes"'],
    [{ USE_SECRET_MANAGER: "TRUE" }, 'USE_SECRET_MANAGER: expected "true" or "false", got "TRUE"'],
    [
      { API_KEY_SERVER_HMAC_REQUIRE_NONCE: "no" },
      'API_KEY_SERVER_HMAC_REQUIRE_NONCE: expected "true" or "false", got "no"',
    ],
    [
      { API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER: "0" },
      'API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER: expected a positive integer, got "0"',
    ],
    [
      { USE_SECRET_MANAGER: "true" },
      "API_KEY_SERVER_GCP_PROJECT_ID: expected a Google Cloud project id when USE_SECRET_MANAGER=true",
    ],
    [{ REDIS_URL: "http://secret@redis" }, "REDIS_URL: expected a redis:// or rediss:// URL"],
    [
      { API_KEY_SERVER_REDIS_KEY_PREFIX: "has space" },
      `API_KEY_SERVER_REDIS_KEY_PREFIX: expected up to 64 letters, digits, ':', '.', '_' or '-', got "has space"`,
    ],
    ...[
      "*",
      "https://a.example/app",
      "https://*.com",
      "https://a.*.example.com",
      "HTTPS://A.example",
      "https://*",
    ].map((origin) => [
      { API_KEY_SERVER_CORS_ORIGINS: `https://a.example,${origin}` },
      `API_KEY_SERVER_CORS_ORIGINS: expected comma-separated origins like https://app.example.com or https://*.example.com, got ${JSON.stringify(origin)}`,
    ]),
    [
      { API_KEY_SERVER_REFLECTION: "off" },
      'API_KEY_SERVER_REFLECTION: expected "true" or "false", got "off"',
    ],
    [
      { API_KEY_SERVER_LOG_LEVEL: "verbose" },
      'API_KEY_SERVER_LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, got "verbose"',
    ],
    [
      { API_KEY_SERVER_SECRET_NAME_JWT: "jwt keys" },
      "API_KEY_SERVER_SECRET_NAME_JWT: expected a secret name of letters, digits, '-' and '_', got \"jwt keys\"",
    ],
  ] as [Record<string, string>, string][])("rejects %j with one line naming the variable", (env, message) => {
    let caught: unknown;
    try {
      loadConfig(env);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).message).toBe(message);
    expect((caught as ConfigError).message).not.toContain("\n");
    expect((caught as ConfigError).variable).toBe(message.slice(0, message.indexOf(":")));
  });

  it("never echoes a REDIS_URL, which may hold a password", () => {
    expect(() => loadConfig({ REDIS_URL: "mysql://user:hunter2@db" })).toThrow(
      /^REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL$/,
    );
  });
});

describe("API_KEY_SERVER_SECRET_MANAGER_ENDPOINT", () => {
  const withSecretManager = { USE_SECRET_MANAGER: "true", API_KEY_SERVER_GCP_PROJECT_ID: "p" };

  it.each([
    [
      "secretmanager.europe-west1.rep.googleapis.com:443",
      "secretmanager.europe-west1.rep.googleapis.com",
      443,
      true,
    ],
    ["10.0.0.5:8443", "10.0.0.5", 8443, true],
    ["[fd00::5]:443", "[fd00::5]", 443, true],
    ["http://127.0.0.1:8085", "127.0.0.1", 8085, false],
    ["http://localhost:65535", "localhost", 65_535, false],
  ])("reads %j as host %j, port %j, TLS %j", (value, host, port, tls) => {
    const config = loadConfig({ ...withSecretManager, API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: value });
    expect(config.secrets.source).toStrictEqual({
      kind: "secret-manager",
      projectId: "p",
      endpoint: { host, port, tls },
    });
  });

  it("is unset (the library's default endpoint) when empty", () => {
    const config = loadConfig({ ...withSecretManager, API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: " " });
    expect(config.secrets.source).toStrictEqual({
      kind: "secret-manager",
      projectId: "p",
      endpoint: undefined,
    });
  });

  it.each([
    "secretmanager.googleapis.com",
    "https://secretmanager.googleapis.com:443",
    "grpc://127.0.0.1:8085",
    "http://127.0.0.1",
    "http://127.0.0.1:8085/",
    "http://127.0.0.1:8085/v1",
    "http://user:pw@127.0.0.1:8085",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "host name:443",
  ])("rejects %j with one line naming the variable", (value) => {
    // Checked with files too, so a typo fails the first deploy rather than the switch to Secret Manager.
    for (const env of [withSecretManager, {}]) {
      expect(() => loadConfig({ ...env, API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: value })).toThrow(
        new ConfigError(
          "API_KEY_SERVER_SECRET_MANAGER_ENDPOINT",
          "host:port (TLS) or http://host:port (plaintext, for local fakes only)",
          value,
        ),
      );
    }
  });

  it("is a known setting, not reported as a typo", () => {
    expect(unknownSettings({ API_KEY_SERVER_SECRET_MANAGER_ENDPOINT: "http://127.0.0.1:1" })).toEqual([]);
  });
});

describe("unknownSettings", () => {
  it("lists API_KEY_SERVER_* variables that nothing reads, sorted", () => {
    expect(
      unknownSettings({
        API_KEY_SERVER_MAX_TOKEN: "1",
        API_KEY_SERVER_MAX_TOKENS: "1",
        API_KEY_SERVER_A: "x",
        HOME: "/root",
      }),
    ).toEqual(["API_KEY_SERVER_A", "API_KEY_SERVER_MAX_TOKEN"]);
  });
});

describe("closestSetting", () => {
  it.each([
    ["API_KEY_SERVER_MAX_TOKEN", "API_KEY_SERVER_MAX_TOKENS"],
    ["API_KEY_SERVER_REQUEST_TIMEOUT_SECOND", "API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS"],
    ["API_KEY_SERVER_COSR_ORIGINS", "API_KEY_SERVER_CORS_ORIGINS"],
    ["api_key_server_log_level", "API_KEY_SERVER_LOG_LEVEL"],
    ["API_KEY_SERVER_GCP_PROJECT", "API_KEY_SERVER_GCP_PROJECT_ID"],
  ])("%s → %s", (typo, meant) => {
    expect(closestSetting(typo)).toBe(meant);
  });

  it.each(["API_KEY_SERVER_A", "API_KEY_SERVER_SOMETHING_ELSE_ENTIRELY"])("%s → nothing close", (name) => {
    expect(closestSetting(name)).toBeUndefined();
  });
});
