import { createHash } from "node:crypto";
import type { JSONWebKeySet } from "jose";
import type { Logger } from "../log/index.js";
import { parseHmacSecrets } from "./parse-hmac-secrets.js";
import { parseJwtKeys } from "./parse-jwt-keys.js";
import { parseProducts } from "./parse-products.js";
import { SecretSourceError, type SecretSource, type SecretWatch } from "./source.js";
import { SecretFormatError } from "./format-error.js";
import type { HmacKey, ProductConfig, Secrets, SecretStore } from "./types.js";

/** The names of the three secrets (Secret Manager names; the file source maps `-` to `_`). */
export interface SecretNames {
  readonly products: string;
  readonly jwtKeys: string;
  readonly hmacSecrets: string;
}

export interface SecretStoreOptions {
  readonly source: SecretSource;
  readonly names: SecretNames;
  /** How often every secret is re-read after start (`API_KEY_SERVER_SECRET_REFRESH_SECONDS`). */
  readonly refreshIntervalMs: number;
  readonly logger: Logger;
  /** Stamps `Secrets.loadedAt`; `Date.now` by default. */
  readonly clock?: () => number;
  /**
   * start() refuses a first set with neither JWT keys nor HMAC secrets (every chat call would be answered
   * 401 while /health says ok). Default false; the server sets it in production.
   */
  readonly requireAuth?: boolean;
  /**
   * How long start() keeps retrying reads that failed for a transient reason (Secret Manager UNAVAILABLE,
   * DEADLINE_EXCEEDED, ...), logging one warning per failed attempt; then it rejects. Default 0: no retry.
   */
  readonly startupDeadlineMs?: number;
  /** Told about every read of every secret, at start and on each refresh (metrics); default none. */
  readonly onRead?: ((read: SecretReadReport) => void) | undefined;
}

/**
 * One read of one secret. `ok`: read and valid (changed or not), so what is in use is current. `missing`:
 * an optional secret (JWT, HMAC) does not exist, so its method is disabled, which is also current.
 * `failed`: unreadable, invalid, or the required product secret missing; the last good version stays.
 */
export interface SecretReadReport {
  /** The secret's configured name. */
  readonly secret: string;
  readonly phase: "start" | "refresh";
  readonly result: "ok" | "missing" | "failed";
}

/** A SecretStore whose refresh can also be triggered directly (tests, an admin signal). */
export interface RefreshingSecretStore extends SecretStore {
  /**
   * Re-reads every secret now; resolves true when a new set was swapped in. Never rejects: failures are
   * logged and the last good set stays. Concurrent calls share one refresh.
   */
  refresh(): Promise<boolean>;
}

/**
 * start() could not load a required secret. The message starts with the runbook's words —
 * `Failed to load secrets from Secret Manager` (or `from local files`) — then names the secret and the cause;
 * it never contains a secret value.
 */
export class SecretLoadError extends Error {
  override readonly name = "SecretLoadError";
  /** `Failed to load secrets from Secret Manager` or `Failed to load secrets from local files`. */
  readonly summary: string;
  /** The secret at fault. */
  readonly secret: string;
  /** Why, safe to log. */
  readonly reason: string;

  constructor(summary: string, secret: string, reason: string, options?: { cause?: unknown }) {
    super(`${summary}: secret ${JSON.stringify(secret)}: ${reason}`, options);
    this.summary = summary;
    this.secret = secret;
    this.reason = reason;
  }
}

/**
 * Logs a start-up failure in the runbook's words: message `Failed to load secrets from Secret Manager`, with
 * `secret` and `error` fields (never values). The composition root calls this and then exits 1.
 */
export function logSecretLoadFailure(logger: Logger, err: unknown): void {
  if (err instanceof SecretLoadError) {
    logger.error({ secret: err.secret, error: err.reason }, err.summary);
  } else {
    logger.error({ error: err instanceof Error ? err.message : String(err) }, "Failed to load secrets");
  }
}

type Kind = "products" | "jwtKeys" | "hmacSecrets";

/** One secret's last good state. `version` undefined = the secret does not exist. */
interface Slot<T> {
  readonly version: string | undefined;
  readonly digest: string | undefined;
  readonly value: T | undefined;
}

interface Slots {
  readonly products: Slot<ReadonlyMap<string, ProductConfig>>;
  readonly jwtKeys: Slot<JSONWebKeySet>;
  readonly hmacSecrets: Slot<ReadonlyMap<string, HmacKey>>;
}

const parsers = {
  products: parseProducts,
  jwtKeys: parseJwtKeys,
  hmacSecrets: parseHmacSecrets,
} as const satisfies Record<Kind, (text: string) => unknown>;

const disabledMethod = { jwtKeys: "JWT", hmacSecrets: "HMAC" } as const;

/** Read failures worth another attempt at start-up: the service, not the request, is at fault. */
const transientReasons: ReadonlySet<string> = new Set([
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "RESOURCE_EXHAUSTED",
  "ABORTED",
  "INTERNAL",
]);

/** Pause before start-up attempt n + 1: 1 s, 2 s, 4 s, then 5 s (within the deadline). */
const retryDelayMs = (attempt: number): number => Math.min(1000 * 2 ** (attempt - 1), 5000);

/**
 * Holds the three secrets and keeps them fresh (docs/config.md).
 *
 * start() reads all three. The product secret is required: missing, unreadable or invalid rejects with a
 * {@link SecretLoadError}. The JWT and HMAC secrets may be missing (that method is then disabled, with a
 * warning), but if present they must be readable and valid. Then every `refreshIntervalMs` (unref'd timer)
 * each secret is re-read; a new valid version replaces that secret's value and a whole new `Secrets` is
 * swapped in at once; an unreadable or invalid version keeps the last good value and logs an error on every
 * attempt. A deleted JWT/HMAC secret disables its method (warning); a deleted product secret is an error.
 * onChange listeners see every set that becomes current, the first one included.
 *
 * A source that can watch (local files) also triggers a refresh as soon as it sees a change, so an edited
 * file is in use within milliseconds; the periodic re-read stays as the fallback. stop() ends both.
 */
export function createSecretStore(options: SecretStoreOptions): RefreshingSecretStore {
  const {
    source,
    names,
    logger,
    refreshIntervalMs,
    clock = Date.now,
    requireAuth = false,
    startupDeadlineMs = 0,
    onRead,
  } = options;
  if (!Number.isSafeInteger(startupDeadlineMs) || startupDeadlineMs < 0) {
    throw new TypeError("createSecretStore: startupDeadlineMs must be a non-negative integer");
  }
  if (!Number.isSafeInteger(refreshIntervalMs) || refreshIntervalMs <= 0) {
    throw new TypeError("createSecretStore: refreshIntervalMs must be a positive integer");
  }
  for (const kind of ["products", "jwtKeys", "hmacSecrets"] as const) {
    if (typeof names[kind] !== "string" || names[kind] === "") {
      throw new TypeError(`createSecretStore: names.${kind} must be a non-empty string`);
    }
  }
  const summary =
    source.kind === "secret-manager"
      ? "Failed to load secrets from Secret Manager"
      : "Failed to load secrets from local files";

  let slots: Slots | undefined;
  let current: Secrets | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<boolean> | undefined;
  /** A watched change arrived while a refresh was running (which may have read the file before it). */
  let changedDuringRefresh = false;
  let watch: SecretWatch | undefined;
  let state: "new" | "starting" | "running" | "stopped" = "new";
  const listeners = new Set<(secrets: Secrets) => void>();

  /** Reads one secret; resolves the new slot, or the same slot object when nothing changed. */
  async function load<K extends Kind>(kind: K, previous: Slots[K] | undefined): Promise<Slots[K]> {
    const read = await source.read(names[kind]);
    if (read === undefined) return { version: undefined, digest: undefined, value: undefined } as Slots[K];
    if (previous !== undefined && previous.version === read.version) return previous;
    const digest = createHash("sha256").update(read.data).digest("hex");
    // A new version with the same bytes (re-uploaded file, touched mtime) is not a change.
    if (previous !== undefined && previous.digest === digest) return { ...previous, version: read.version };
    let value: Slots[K]["value"];
    try {
      value = await parsers[kind](read.data);
    } catch (err) {
      // Said from where the text came from: the file, or the secret's version (line:column for syntax).
      if (!(err instanceof SecretFormatError)) throw err;
      throw err.at(source.describeVersion?.(names[kind], read.version) ?? source.describe(names[kind]));
    }
    return { version: read.version, digest, value } as Slots[K];
  }

  function publish(next: Slots): void {
    const secrets: Secrets = Object.freeze({
      products: next.products.value ?? new Map<string, ProductConfig>(),
      jwtKeys: next.jwtKeys.value,
      hmacKeys: next.hmacSecrets.value,
      loadedAt: clock(),
    });
    slots = next;
    current = secrets;
    logger.info(
      {
        secretVersions: {
          [names.products]: next.products.version,
          [names.jwtKeys]: next.jwtKeys.version ?? "missing",
          [names.hmacSecrets]: next.hmacSecrets.version ?? "missing",
        },
      },
      "Secrets loaded",
    );
    for (const listener of listeners) {
      try {
        listener(secrets);
      } catch (err) {
        logger.error(
          { error: err instanceof Error ? err.message : String(err) },
          "Secret change listener failed",
        );
      }
    }
  }

  async function refreshOnce(): Promise<boolean> {
    const previous = slots;
    if (previous === undefined) return false;
    const results = await Promise.allSettled([
      load("products", previous.products),
      load("jwtKeys", previous.jwtKeys),
      load("hmacSecrets", previous.hmacSecrets),
    ]);
    const kinds = ["products", "jwtKeys", "hmacSecrets"] as const;
    const next = { ...previous } as { -readonly [K in Kind]: Slots[K] };
    let changed = false;
    // Said only once the set is decided: a method is not disabled when it is the last one (below).
    const disabled: ("jwtKeys" | "hmacSecrets")[] = [];
    kinds.forEach((kind, i) => {
      const result = results[i];
      if (result === undefined) return;
      const name = names[kind];
      const where = source.describe(name);
      onRead?.({ secret: name, phase: "refresh", result: readResult(kind, result) });
      if (result.status === "rejected") {
        logger.error(
          {
            secret: name,
            source: where,
            keptVersion: previous[kind].version ?? "missing",
            error: reasonOf(result.reason),
          },
          "Failed to refresh secret; keeping the last good version",
        );
        return;
      }
      const slot = result.value;
      if (slot === previous[kind]) return;
      if (slot.version === undefined && kind === "products") {
        logger.error(
          { secret: name, source: where, keptVersion: previous.products.version, error: "secret not found" },
          "Failed to refresh secret; keeping the last good version",
        );
        return;
      }
      if (slot.version === undefined && previous[kind].version === undefined) return;
      if (slot.version === undefined && kind !== "products") disabled.push(kind);
      next[kind] = slot as never;
      // Only a new value needs a new set; a new version with identical content just records the version.
      if (slot.value !== previous[kind].value) changed = true;
    });
    const authBefore = previous.jwtKeys.value !== undefined || previous.hmacSecrets.value !== undefined;
    if (authBefore && next.jwtKeys.value === undefined && next.hmacSecrets.value === undefined) {
      // Deleting the last key secret would turn every call into a 401; serving the last good keys until an
      // operator adds one back is the lesser harm, and the error says so on every refresh.
      next.jwtKeys = previous.jwtKeys;
      next.hmacSecrets = previous.hmacSecrets;
      logger.error(
        {
          secrets: [names.jwtKeys, names.hmacSecrets],
          keptVersions: {
            [names.jwtKeys]: previous.jwtKeys.version ?? "missing",
            [names.hmacSecrets]: previous.hmacSecrets.version ?? "missing",
          },
        },
        "Every authentication method would be gone after this refresh; keeping the last good JWT keys and HMAC secrets",
      );
      changed = next.products !== previous.products && next.products.value !== previous.products.value;
    } else {
      for (const kind of disabled) {
        logger.warn(
          { secret: names[kind], source: source.describe(names[kind]) },
          `Secret not found; ${disabledMethod[kind]} authentication disabled`,
        );
      }
    }
    if (!changed) {
      slots = next;
      return false;
    }
    publish(next);
    return true;
  }

  type FirstResults = PromiseSettledResult<Slots[Kind]>[];

  /**
   * The first read of all three secrets. A transient failure (Secret Manager unreachable) is retried until
   * `startupDeadlineMs`, one warning per failed attempt; otherwise the results are returned as they are.
   */
  async function loadWithRetries(): Promise<FirstResults> {
    const started = performance.now();
    const left = (): number => startupDeadlineMs - (performance.now() - started);
    let previous: FirstResults | undefined;
    for (let attempt = 1; ; attempt++) {
      const results = await withinDeadline(
        Promise.allSettled([
          load("products", undefined),
          load("jwtKeys", undefined),
          load("hmacSecrets", undefined),
        ]),
        left(),
        previous,
      );
      const index = results.findIndex(
        (r) =>
          r.status === "rejected" &&
          r.reason instanceof SecretSourceError &&
          transientReasons.has(r.reason.reason),
      );
      const failed = results[index];
      if (failed?.status !== "rejected" || left() <= 0) return results;
      const delay = Math.min(retryDelayMs(attempt), left());
      const name = names[(["products", "jwtKeys", "hmacSecrets"] as const)[index] ?? "products"];
      logger.warn(
        {
          secret: name,
          source: source.describe(name),
          error: reasonOf(failed.reason),
          attempt,
          retryInMs: Math.round(delay),
        },
        `Secret read failed at start-up (attempt ${attempt}); retrying in ${(delay / 1000).toFixed(1)} s`,
      );
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (left() <= 0) return results;
      previous = results;
    }
  }

  /**
   * Resolves `attempt`'s results; once the start-up deadline has passed, the previous attempt's failure
   * instead (its cause is what the operator needs), or a plain "no answer" when there was none.
   */
  async function withinDeadline(
    attempt: Promise<FirstResults>,
    leftMs: number,
    previous: FirstResults | undefined,
  ): Promise<FirstResults> {
    if (startupDeadlineMs === 0) return attempt;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<FirstResults>((resolve) => {
      timer = setTimeout(
        () => {
          const reason = new Error(`no answer within the start-up deadline of ${startupDeadlineMs / 1000} s`);
          resolve(previous ?? [0, 1, 2].map(() => ({ status: "rejected", reason }) as const));
        },
        Math.max(leftMs, 0),
      );
    });
    try {
      return await Promise.race([attempt, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A refresh for a watched change: never merged into a refresh that started before the change. */
  function refreshAfterChange(): void {
    if (state !== "running") return;
    if (inFlight !== undefined) {
      changedDuringRefresh = true;
      return;
    }
    void store.refresh();
  }

  const store: RefreshingSecretStore = {
    current: () => current,

    async start(): Promise<void> {
      if (state !== "new") throw new Error("SecretStore.start() may be called once");
      state = "starting";
      const kinds = ["products", "jwtKeys", "hmacSecrets"] as const;
      // Reported once, with the outcome start-up acts on (after any retries).
      const results = await loadWithRetries();
      if (onRead !== undefined) {
        kinds.forEach((kind, i) => {
          const result = results[i];
          if (result !== undefined)
            onRead({ secret: names[kind], phase: "start", result: readResult(kind, result) });
        });
      }
      const loaded: Partial<{ -readonly [K in Kind]: Slots[K] }> = {};
      kinds.forEach((kind, i) => {
        const result = results[i];
        if (result === undefined) return;
        const name = names[kind];
        if (result.status === "rejected") {
          state = "stopped";
          throw new SecretLoadError(summary, name, reasonOf(result.reason), { cause: result.reason });
        }
        if (result.value.version === undefined) {
          if (kind === "products") {
            state = "stopped";
            throw new SecretLoadError(summary, name, `not found (${source.describe(name)})`);
          }
          logger.warn(
            { secret: name, source: source.describe(name) },
            `Secret not found; ${disabledMethod[kind]} authentication disabled`,
          );
        }
        loaded[kind] = result.value as never;
      });
      const first = loaded as Slots;
      if (first.jwtKeys.value === undefined && first.hmacSecrets.value === undefined) {
        if (requireAuth) {
          state = "stopped";
          throw new SecretLoadError(
            summary,
            `${names.jwtKeys}, ${names.hmacSecrets}`,
            `neither ${source.describe(names.jwtKeys)} nor ${source.describe(names.hmacSecrets)} exists, so every chat call would be refused: create one of them (docs/runbook.ja.md §0)`,
          );
        }
        logger.warn("No JWT keys and no HMAC secrets: every chat request will be rejected as Unauthorized");
      }
      publish(first);
      state = "running";
      timer = setInterval(() => void store.refresh(), refreshIntervalMs);
      // A pending refresh must not keep a stopping process alive.
      timer.unref();
      watch = source.watch?.({
        onChange: refreshAfterChange,
        onError: (message) =>
          logger.warn(
            { error: message, refreshSeconds: refreshIntervalMs / 1000 },
            "Cannot watch the secret files; changes are picked up by the periodic re-read",
          ),
      });
    },

    refresh(): Promise<boolean> {
      if (state !== "running") return Promise.resolve(false);
      inFlight ??= refreshOnce()
        .catch((err: unknown) => {
          logger.error({ error: reasonOf(err) }, "Secret refresh failed");
          return false;
        })
        .finally(() => {
          inFlight = undefined;
          if (changedDuringRefresh) {
            changedDuringRefresh = false;
            refreshAfterChange();
          }
        });
      return inFlight;
    },

    async stop(): Promise<void> {
      state = "stopped";
      clearInterval(timer);
      timer = undefined;
      watch?.close();
      watch = undefined;
      await inFlight;
    },

    onChange(listener: (secrets: Secrets) => void): () => void {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
  return store;
}

/** The report of one read: a missing product secret is a failure (it is required); others disable a method. */
function readResult(
  kind: Kind,
  result: PromiseSettledResult<{ readonly version: string | undefined }>,
): SecretReadReport["result"] {
  if (result.status === "rejected") return "failed";
  if (result.value.version !== undefined) return "ok";
  return kind === "products" ? "failed" : "missing";
}

/** A failure's message, which our sources and parsers keep free of secret values. */
function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : "unknown error";
}
