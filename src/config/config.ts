import { parseOriginRule } from "../lib/origin.js";

/**
 * The largest `API_KEY_SERVER_MAX_BODY_BYTES` accepted: the worst body of that size within the decoding
 * limits (src/lib/message-limits.ts) is read, checked and decoded without a 50 ms stall of the event loop
 * (test/e2e/decode-limits.test.ts; docs/auth.md, "Decoding limits").
 */
export const maxBodyBytesLimit = 2_097_152;

/** Levels the logger accepts (`API_KEY_SERVER_LOG_LEVEL`). */
export const logLevels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];

/** Where the three secrets come from. */
export type SecretSourceConfig =
  | { readonly kind: "files"; readonly dir: string }
  | {
      readonly kind: "secret-manager";
      readonly projectId: string;
      /** `API_KEY_SERVER_SECRET_MANAGER_ENDPOINT`; undefined = the client library's default endpoint. */
      readonly endpoint: SecretManagerEndpoint | undefined;
    };

/**
 * Where the Secret Manager client connects instead of Google's default endpoint: over TLS with Google
 * credentials (a regional or Private Service Connect endpoint), or in plaintext without credentials (local
 * fakes and emulators only).
 */
export interface SecretManagerEndpoint {
  /** Host name or IP address (an IPv6 address keeps its brackets). */
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
}

/** The names of the three secrets (Secret Manager names; files use `_` for `-`). */
export interface SecretNames {
  readonly products: string;
  readonly jwtKeys: string;
  readonly hmacSecrets: string;
}

/** Every setting of the server, read once from the environment by {@link loadConfig}. Deeply frozen. */
export interface Config {
  /**
   * True on Cloud Run (`K_SERVICE` is set) or with `NODE_ENV=production` (the image sets it). Start-up then
   * refuses what only makes sense on a developer's machine: the embedded echo product, and no JWT and no
   * HMAC keys at all (docs/runbook.ja.md §6).
   */
  readonly production: boolean;
  /**
   * True on Cloud Run (`K_SERVICE` is set): instances are many and come and go, so state that must be
   * shared (budgets) needs REDIS_URL (docs/budgets.md).
   */
  readonly cloudRun: boolean;
  /** `PORT` (default 8000). */
  readonly port: number;
  /** `API_KEY_SERVER_HOST` (default `0.0.0.0`). */
  readonly host: string;
  /** `API_KEY_SERVER_MAX_TOKENS` (default 8192): global cap on output tokens per request. */
  readonly maxTokens: number;
  /**
   * `API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS` (default 90) in milliseconds: a unary call's whole upstream time,
   * and a stream's time to its first chunk.
   */
  readonly requestTimeoutMs: number;
  /**
   * `API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS` (default 60) in milliseconds: the longest gap between two
   * chunks of a stream once the first has arrived. A stream has no total limit of its own.
   */
  readonly streamIdleTimeoutMs: number;
  /** `REDIS_URL` (default unset = in-memory rate limits and nonces). */
  readonly redisUrl: string | undefined;
  /**
   * `API_KEY_SERVER_REDIS_KEY_PREFIX` (default empty): put before every Redis key, so several environments
   * (or services) can share one Redis without sharing limits or nonces.
   */
  readonly redisKeyPrefix: string;
  readonly secrets: {
    /** `USE_SECRET_MANAGER` + `API_KEY_SERVER_GCP_PROJECT_ID`, else `API_KEY_SERVER_CONFIG_DIR` (`./config`). */
    readonly source: SecretSourceConfig;
    /** `API_KEY_SERVER_SECRET_NAME_PRODUCTS` / `_JWT` / `_HMAC` (the seed's names by default). */
    readonly names: SecretNames;
    /** `API_KEY_SERVER_SECRET_REFRESH_SECONDS` (default 60) in milliseconds. */
    readonly refreshIntervalMs: number;
    /**
     * `API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS` (default 60) in milliseconds: how long start-up keeps
     * retrying a Secret Manager that cannot be reached before it gives up and exits 1.
     */
    readonly startupDeadlineMs: number;
  };
  readonly jwt: {
    /** `API_KEY_SERVER_JWT_ISSUER` (default unset = not checked). */
    readonly issuer: string | undefined;
    /** `API_KEY_SERVER_JWT_AUDIENCE` (default unset = not checked). */
    readonly audience: string | undefined;
    /** `API_KEY_SERVER_JWT_CLOCK_TOLERANCE_SECONDS` (default 30). */
    readonly clockToleranceSeconds: number;
    /** `API_KEY_SERVER_JWT_MAX_AGE_SECONDS` (default 86400). */
    readonly maxAgeSeconds: number;
  };
  /** `API_KEY_SERVER_HMAC_WINDOW_SECONDS` (default 300): allowed clock skew of a signed request. */
  readonly hmacWindowSeconds: number;
  /**
   * `API_KEY_SERVER_HMAC_REQUIRE_NONCE` (default true): signed requests without `X-Api-Nonce` are refused.
   * false accepts them, and such a request can then be replayed within the timestamp window.
   */
  readonly hmacRequireNonce: boolean;
  /**
   * `API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER` (default 100): calls and streams one caller may have
   * open at once; one more is refused with 429.
   */
  readonly maxConcurrentCallsPerCaller: number;
  /**
   * `API_KEY_SERVER_BODY_TIMEOUT_SECONDS` (default 30) in milliseconds: a request whose headers and body
   * have not all arrived by then is answered 408 (gRPC: DEADLINE_EXCEEDED), so a slow sender cannot hold a
   * call (and its memory) open for Node's 300 s.
   */
  readonly bodyTimeoutMs: number;
  /** `API_KEY_SERVER_MAX_BODY_BYTES` (default 1 MiB, at most `maxBodyBytesLimit`). */
  readonly maxBodyBytes: number;
  /**
   * `API_KEY_SERVER_CORS_ORIGINS` (comma-separated origins, exact or `https://*.example.com`; default none:
   * no browser origin is allowed).
   */
  readonly corsOrigins: readonly string[];
  /**
   * `API_KEY_SERVER_REFLECTION` (default true): serve gRPC server reflection, which lists the services and
   * their schemas (nothing secret) to anyone who can reach the port; `false` leaves it unregistered.
   */
  readonly reflection: boolean;
  /** `API_KEY_SERVER_LOG_LEVEL` (default `info`). */
  readonly logLevel: LogLevel;
  /** `API_KEY_SERVER_METRICS_PORT` (default unset = no metrics listener). */
  readonly metricsPort: number | undefined;
  /** Default limits per caller and product, for products whose secret sets no `rate_limit`. */
  readonly rateLimit: {
    /** `API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE` (default 600). */
    readonly requestsPerMinute: number;
    /** `API_KEY_SERVER_RATE_LIMIT_TOKENS_PER_MINUTE` (default unset = no token limit). */
    readonly tokensPerMinute: number | undefined;
  };
  /** `API_KEY_SERVER_SHUTDOWN_GRACE_SECONDS` (default 8) in milliseconds. */
  readonly shutdownGraceMs: number;
  /** `API_KEY_SERVER_IDLE_TIMEOUT_SECONDS` (default 65) in milliseconds: keep-alive idle timeout. */
  readonly idleTimeoutMs: number;
  /**
   * `API_KEY_SERVER_TRUST_PROXY`: how many proxies in front of the server append to `X-Forwarded-For`
   * (`true` = 1, `false` = 0, or a count up to 10). Default 1 on Cloud Run (`K_SERVICE` set: Google's front
   * end appends the address it saw), 0 elsewhere. The client address of the access line is then the entry
   * that many places from the right of `X-Forwarded-For` (the address the outermost trusted proxy saw);
   * with 0 it is the socket's peer address and the header is ignored (anyone can send it).
   */
  readonly trustedProxies: number;
}

/** A bad environment variable. The message is one line: `NAME: expected ..., got "value"`. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The variable at fault. */
  readonly variable: string;

  constructor(variable: string, expected: string, got: string | undefined) {
    super(`${variable}: expected ${expected}${got === undefined ? "" : `, got ${JSON.stringify(got)}`}`);
    this.variable = variable;
  }
}

/** Variables this module reads; anything else starting with `API_KEY_SERVER_` is reported by `unknownSettings`. */
const knownVariables = [
  "PORT",
  "K_SERVICE",
  "NODE_ENV",
  "USE_SECRET_MANAGER",
  "REDIS_URL",
  "API_KEY_SERVER_GCP_PROJECT_ID",
  "API_KEY_SERVER_SECRET_MANAGER_ENDPOINT",
  "API_KEY_SERVER_MAX_TOKENS",
  "API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS",
  "API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS",
  "API_KEY_SERVER_HOST",
  "API_KEY_SERVER_CONFIG_DIR",
  "API_KEY_SERVER_SECRET_REFRESH_SECONDS",
  "API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS",
  "API_KEY_SERVER_SECRET_NAME_PRODUCTS",
  "API_KEY_SERVER_SECRET_NAME_JWT",
  "API_KEY_SERVER_SECRET_NAME_HMAC",
  "API_KEY_SERVER_JWT_ISSUER",
  "API_KEY_SERVER_JWT_AUDIENCE",
  "API_KEY_SERVER_JWT_CLOCK_TOLERANCE_SECONDS",
  "API_KEY_SERVER_JWT_MAX_AGE_SECONDS",
  "API_KEY_SERVER_HMAC_WINDOW_SECONDS",
  "API_KEY_SERVER_HMAC_REQUIRE_NONCE",
  "API_KEY_SERVER_MAX_BODY_BYTES",
  "API_KEY_SERVER_BODY_TIMEOUT_SECONDS",
  "API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER",
  "API_KEY_SERVER_CORS_ORIGINS",
  "API_KEY_SERVER_REFLECTION",
  "API_KEY_SERVER_LOG_LEVEL",
  "API_KEY_SERVER_METRICS_PORT",
  "API_KEY_SERVER_REDIS_KEY_PREFIX",
  "API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE",
  "API_KEY_SERVER_RATE_LIMIT_TOKENS_PER_MINUTE",
  "API_KEY_SERVER_SHUTDOWN_GRACE_SECONDS",
  "API_KEY_SERVER_IDLE_TIMEOUT_SECONDS",
  "API_KEY_SERVER_TRUST_PROXY",
] as const;
type Variable = (typeof knownVariables)[number];
type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads the environment into a deeply frozen {@link Config}. Pure: it reads only `env`. An empty value
 * counts as unset (so `--set-env-vars A=` behaves like removing A). Throws {@link ConfigError} naming the
 * first variable at fault.
 */
export function loadConfig(env: Env): Config {
  const read = (name: Variable): string | undefined => {
    const raw = env[name]?.trim();
    return raw === undefined || raw === "" ? undefined : raw;
  };
  const int = (name: Variable, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(name, integerExpectation(min, max), raw);
    }
    return value;
  };
  const port = (name: Variable): number | undefined =>
    read(name) === undefined ? undefined : int(name, 0, 0, 65_535);
  const secretName = (name: Variable, fallback: string): string => {
    const raw = read(name) ?? fallback;
    // Secret Manager's own rule for secret ids.
    if (!/^[A-Za-z0-9_-]{1,255}$/.test(raw)) {
      throw new ConfigError(name, "a secret name of letters, digits, '-' and '_'", raw);
    }
    return raw;
  };

  const useSecretManager = readBoolean(read("USE_SECRET_MANAGER"), "USE_SECRET_MANAGER");
  const projectId = read("API_KEY_SERVER_GCP_PROJECT_ID");
  if (useSecretManager && projectId === undefined) {
    throw new ConfigError(
      "API_KEY_SERVER_GCP_PROJECT_ID",
      "a Google Cloud project id when USE_SECRET_MANAGER=true",
      undefined,
    );
  }
  // Checked even when reading files, so a typo fails the first deploy, not the switch to Secret Manager.
  const endpoint = readSecretManagerEndpoint(read("API_KEY_SERVER_SECRET_MANAGER_ENDPOINT"));
  const source: SecretSourceConfig =
    useSecretManager && projectId !== undefined
      ? { kind: "secret-manager", projectId, endpoint }
      : { kind: "files", dir: read("API_KEY_SERVER_CONFIG_DIR") ?? "./config" };

  const listenPort = port("PORT") ?? 8000;
  const metricsPort = port("API_KEY_SERVER_METRICS_PORT");
  // The same port would fail at start-up with EADDRINUSE, or worse be read as "serve metrics publicly".
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === listenPort) {
    throw new ConfigError(
      "API_KEY_SERVER_METRICS_PORT",
      `a port other than PORT (${listenPort})`,
      String(metricsPort),
    );
  }

  const config: Config = {
    production: read("K_SERVICE") !== undefined || read("NODE_ENV") === "production",
    cloudRun: read("K_SERVICE") !== undefined,
    port: listenPort,
    host: read("API_KEY_SERVER_HOST") ?? "0.0.0.0",
    maxTokens: int("API_KEY_SERVER_MAX_TOKENS", 8192, 1),
    requestTimeoutMs: int("API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS", 90, 1) * 1000,
    streamIdleTimeoutMs: int("API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS", 60, 1) * 1000,
    redisUrl: readRedisUrl(read("REDIS_URL")),
    redisKeyPrefix: readKeyPrefix(read("API_KEY_SERVER_REDIS_KEY_PREFIX")),
    secrets: {
      source,
      names: {
        products: secretName("API_KEY_SERVER_SECRET_NAME_PRODUCTS", "openai-api-keys"),
        jwtKeys: secretName("API_KEY_SERVER_SECRET_NAME_JWT", "jwt-public-keys"),
        hmacSecrets: secretName("API_KEY_SERVER_SECRET_NAME_HMAC", "hmac-secrets"),
      },
      refreshIntervalMs: int("API_KEY_SERVER_SECRET_REFRESH_SECONDS", 60, 1) * 1000,
      startupDeadlineMs: int("API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS", 60, 1) * 1000,
    },
    jwt: {
      issuer: read("API_KEY_SERVER_JWT_ISSUER"),
      audience: read("API_KEY_SERVER_JWT_AUDIENCE"),
      clockToleranceSeconds: int("API_KEY_SERVER_JWT_CLOCK_TOLERANCE_SECONDS", 30, 0),
      maxAgeSeconds: int("API_KEY_SERVER_JWT_MAX_AGE_SECONDS", 86_400, 1),
    },
    hmacWindowSeconds: int("API_KEY_SERVER_HMAC_WINDOW_SECONDS", 300, 1),
    hmacRequireNonce: readBoolean(
      read("API_KEY_SERVER_HMAC_REQUIRE_NONCE") ?? "true",
      "API_KEY_SERVER_HMAC_REQUIRE_NONCE",
    ),
    maxBodyBytes: int("API_KEY_SERVER_MAX_BODY_BYTES", 1_048_576, 1, maxBodyBytesLimit),
    bodyTimeoutMs: int("API_KEY_SERVER_BODY_TIMEOUT_SECONDS", 30, 1, 300) * 1000,
    maxConcurrentCallsPerCaller: int("API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER", 100, 1),
    corsOrigins: readOrigins(read("API_KEY_SERVER_CORS_ORIGINS")),
    reflection: readBoolean(read("API_KEY_SERVER_REFLECTION"), "API_KEY_SERVER_REFLECTION", true),
    logLevel: readLogLevel(read("API_KEY_SERVER_LOG_LEVEL")),
    metricsPort,
    rateLimit: {
      requestsPerMinute: int("API_KEY_SERVER_RATE_LIMIT_REQUESTS_PER_MINUTE", 600, 1),
      tokensPerMinute:
        read("API_KEY_SERVER_RATE_LIMIT_TOKENS_PER_MINUTE") === undefined
          ? undefined
          : int("API_KEY_SERVER_RATE_LIMIT_TOKENS_PER_MINUTE", 0, 1),
    },
    shutdownGraceMs: int("API_KEY_SERVER_SHUTDOWN_GRACE_SECONDS", 8, 0) * 1000,
    idleTimeoutMs: int("API_KEY_SERVER_IDLE_TIMEOUT_SECONDS", 65, 1) * 1000,
    trustedProxies: readTrustProxy(read("API_KEY_SERVER_TRUST_PROXY"), read("K_SERVICE") !== undefined),
  };
  return deepFreeze(config);
}

/**
 * `API_KEY_SERVER_*` variables that are set but not read by {@link loadConfig} — most likely typos. Start-up
 * should log them as a warning rather than fail, so an older image tolerates a newer deployment's settings.
 */
export function unknownSettings(env: Env): string[] {
  const known: ReadonlySet<string> = new Set(knownVariables);
  return Object.keys(env)
    .filter((name) => name.startsWith("API_KEY_SERVER_") && !known.has(name))
    .sort();
}

/**
 * The known `API_KEY_SERVER_*` setting an unknown one most likely meant: the nearest by edit distance
 * (Levenshtein, case-insensitive) of the part after the prefix, when it is within a third of that part's
 * length (at least 1 edit), else undefined. `API_KEY_SERVER_MAX_TOKEN` → `API_KEY_SERVER_MAX_TOKENS`.
 */
export function closestSetting(name: string): string | undefined {
  const prefix = "API_KEY_SERVER_";
  const upper = name.toUpperCase();
  const rest = upper.startsWith(prefix) ? upper.slice(prefix.length) : upper;
  const bound = Math.max(1, Math.floor(rest.length / 3));
  let best: { name: string; distance: number } | undefined;
  for (const known of knownVariables) {
    if (!known.startsWith(prefix)) continue;
    const distance = editDistance(rest, known.slice(prefix.length));
    if (distance <= bound && (best === undefined || distance < best.distance))
      best = { name: known, distance };
  }
  return best?.name;
}

/** Levenshtein distance with one row of memory (names are a few dozen characters, read once at start). */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] ?? 0;
      const substitution = diagonal + (a[i - 1] === b[j - 1] ? 0 : 1);
      row[j] = Math.min(above + 1, (row[j - 1] ?? 0) + 1, substitution);
      diagonal = above;
    }
  }
  return row[b.length] ?? 0;
}

function integerExpectation(min: number, max: number): string {
  if (max !== Number.MAX_SAFE_INTEGER) return `an integer from ${min} to ${max}`;
  return min === 0 ? "a non-negative integer" : min === 1 ? "a positive integer" : `an integer >= ${min}`;
}

function readBoolean(raw: string | undefined, name: Variable, fallback = false): boolean {
  if (raw === undefined) return fallback;
  // Only the two spellings the runbook uses; "yes"/"1" would be guesses.
  if (raw === "true") return true;
  if (raw === "false") return false;
  throw new ConfigError(name, '"true" or "false"', raw);
}

/** `API_KEY_SERVER_TRUST_PROXY`: `true` (1), `false` (0) or a hop count 0-10; default 1 on Cloud Run. */
function readTrustProxy(raw: string | undefined, cloudRun: boolean): number {
  if (raw === undefined) return cloudRun ? 1 : 0;
  if (raw === "true") return 1;
  if (raw === "false") return 0;
  if (/^\d{1,2}$/.test(raw) && Number(raw) <= 10) return Number(raw);
  throw new ConfigError(
    "API_KEY_SERVER_TRUST_PROXY",
    '"true", "false" or a number of proxies from 0 to 10',
    raw,
  );
}

function readKeyPrefix(raw: string | undefined): string {
  if (raw === undefined) return "";
  if (!/^[A-Za-z0-9:._-]{1,64}$/.test(raw)) {
    throw new ConfigError(
      "API_KEY_SERVER_REDIS_KEY_PREFIX",
      "up to 64 letters, digits, ':', '.', '_' or '-'",
      raw,
    );
  }
  return raw;
}

function readRedisUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const url = URL.parse(raw);
  if (url === null || (url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname === "") {
    // The URL may carry a password: name the variable, never echo it.
    throw new ConfigError("REDIS_URL", "a redis:// or rediss:// URL", undefined);
  }
  return raw;
}

function readSecretManagerEndpoint(raw: string | undefined): SecretManagerEndpoint | undefined {
  if (raw === undefined) return undefined;
  // Exactly host:port, optionally behind http://. No path (a gRPC channel would silently drop it), no
  // credentials, no https:// (TLS is spelled without a scheme), no default port (say which one you mean).
  const match = /^(http:\/\/)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(raw);
  const port = Number(match?.[3]);
  if (match === null || match[2] === undefined || port < 1 || port > 65_535) {
    throw new ConfigError(
      "API_KEY_SERVER_SECRET_MANAGER_ENDPOINT",
      "host:port (TLS) or http://host:port (plaintext, for local fakes only)",
      raw,
    );
  }
  return { host: match[2], port, tls: match[1] === undefined };
}

function readOrigins(raw: string | undefined): readonly string[] {
  if (raw === undefined) return [];
  const origins = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const origin of origins) {
    // An origin is scheme://host[:port] exactly, as browsers send it; "*" or a path would widen or silently
    // miss the allow-list. The one wildcard form is a leftmost "*." label (README, "Web clients").
    if (parseOriginRule(origin) === undefined) {
      throw new ConfigError(
        "API_KEY_SERVER_CORS_ORIGINS",
        "comma-separated origins like https://app.example.com or https://*.example.com",
        origin,
      );
    }
  }
  return origins;
}

function readLogLevel(raw: string | undefined): LogLevel {
  if (raw === undefined) return "info";
  const level = logLevels.find((l) => l === raw);
  if (level === undefined)
    throw new ConfigError("API_KEY_SERVER_LOG_LEVEL", `one of ${logLevels.join(", ")}`, raw);
  return level;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
