import { AppError, scrubSecrets, type AppErrorCode } from "../errors/index.js";
import type { ProviderConfig } from "../secrets/types.js";

/**
 * The log-only cause of an upstream AppError: which provider, which HTTP status (when there was one) and a
 * short, already scrubbed description. It never chains the raw error, so nothing unscrubbed can reach a log.
 */
export class UpstreamFailure extends Error {
  override readonly name = "UpstreamFailure";
  readonly provider: string;
  readonly kind: string;
  readonly status: number | undefined;
  /** A failure below HTTP (refused, reset, DNS): the key was not at fault and another may do better. */
  readonly transport: boolean;

  constructor(provider: ProviderConfig, detail: string, status?: number, transport = false) {
    super(
      `provider ${provider.name} (${provider.kind})${status === undefined ? "" : ` HTTP ${status}`}: ${scrub(detail, provider)}`,
    );
    this.provider = provider.name;
    this.kind = provider.kind;
    this.status = status;
    this.transport = transport;
  }
}

/** Longest provider text kept for a log line or a caller message. */
const maxDetailChars = 500;

/** Removes every key of the provider's pool (and anything key-shaped) and bounds the length. */
export function scrub(text: string, provider: ProviderConfig): string {
  const clean = scrubSecrets(text, provider.apiKeys);
  return clean.length > maxDetailChars ? `${clean.slice(0, maxDetailChars)}...` : clean;
}

/**
 * Provider HTTP status → our code (the error table, src/errors/app-error.ts). Statuses not listed (401, 403, 5xx, 3xx, other 4xx) are the
 * provider's or our configuration's fault and become `upstream_error` (502).
 */
const statusTable: Readonly<Partial<Record<number, AppErrorCode>>> = {
  400: "upstream_rejected",
  404: "upstream_rejected",
  422: "upstream_rejected",
  429: "rate_limited",
};

/** When a provider's 429 carries no usable retry hint, callers are told to wait this long. */
export const defaultRetryAfterMs = 1000;

/**
 * Maps a provider's non-2xx answer to the AppError the caller gets. `upstream_rejected` carries the
 * provider's own message, scrubbed; everything else keeps the provider text for the log only.
 */
export function fromProviderStatus(
  provider: ProviderConfig,
  status: number,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  text: string,
  now: number,
): AppError {
  // Google APIs answer a bad key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID): that is the key's
  // fault, like a 401, not the caller's request; key pools must see it as one.
  const keyRejected = status === 400 && text.includes('"API_KEY_INVALID"');
  const effective = keyRejected ? 401 : status;
  const code: AppErrorCode = statusTable[effective] ?? "upstream_error";
  const cause = new UpstreamFailure(
    provider,
    keyRejected ? `HTTP 400 API_KEY_INVALID, taken as a 401: ${text}` : text,
    effective,
  );
  switch (code) {
    case "upstream_rejected": {
      const message = providerMessage(text);
      return new AppError(code, {
        cause,
        ...(message === undefined ? {} : { message: scrub(message, provider) }),
      });
    }
    case "rate_limited":
      return new AppError(code, {
        cause,
        logFields: { limit: "provider" },
        retryAfterMs: retryAfterMs(headers, now) ?? bodyRetryDelayMs(text) ?? defaultRetryAfterMs,
      });
    default:
      return new AppError(code, { cause });
  }
}

/** The human message inside a provider error body (`{"error": {"message"}}` and its common variants). */
function providerMessage(text: string): string | undefined {
  const parsed = parseOrUndefined(text);
  const candidates = [
    path(parsed, ["error", "message"]),
    path(parsed, ["error"]),
    path(parsed, ["message"]),
    path(parsed, ["detail"]),
  ];
  return candidates.find((c): c is string => typeof c === "string" && c.trim() !== "");
}

/**
 * Google APIs (Gemini) send no Retry-After header on 429: the delay is a `google.rpc.RetryInfo` in the error
 * body's `details`, as a protobuf JSON duration (`"37s"`, `"1.5s"`).
 */
function bodyRetryDelayMs(text: string): number | undefined {
  const details = path(parseOrUndefined(text), ["error", "details"]);
  if (!Array.isArray(details)) return undefined;
  for (const detail of details) {
    const type = path(detail, ["@type"]);
    const delay = path(detail, ["retryDelay"]);
    if (typeof type === "string" && type.endsWith("google.rpc.RetryInfo") && typeof delay === "string") {
      const match = /^(\d+(?:\.\d+)?)s$/.exec(delay.trim());
      if (match) return Number(match[1]) * 1000;
    }
  }
  return undefined;
}

/** A provider body as JSON, or undefined when it is not JSON (an HTML page, a truncated text). */
function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function path(value: unknown, keys: readonly string[]): unknown {
  let current = value;
  for (const key of keys) {
    if (typeof current !== "object" || current === null || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/**
 * The provider's retry hint in ms: `retry-after-ms` (OpenAI), `retry-after` (RFC 9110 seconds or
 * HTTP-date), then `x-ratelimit-reset-requests` / `-tokens` (OpenAI durations such as `1s`, `6m0s`, `20ms`).
 */
export function retryAfterMs(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  now: number,
): number | undefined {
  const header = (name: string): string | undefined => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const ms = Number(header("retry-after-ms"));
  if (header("retry-after-ms") !== undefined && Number.isFinite(ms) && ms >= 0) return ms;

  const after = header("retry-after")?.trim();
  if (after !== undefined && after !== "") {
    if (/^\d+(\.\d+)?$/.test(after)) return Number(after) * 1000;
    const date = Date.parse(after);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }

  for (const name of ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]) {
    const duration = parseDuration(header(name));
    if (duration !== undefined) return duration;
  }
  return undefined;
}

const durationUnits: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Parses Go-style durations as OpenAI sends them (`1s`, `6m0s`, `1h2m3.5s`, `20ms`). */
function parseDuration(text: string | undefined): number | undefined {
  if (text === undefined || !/^(\d+(\.\d+)?(h|ms|m|s))+$/.test(text.trim())) return undefined;
  let total = 0;
  for (const match of text.trim().matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) {
    total += Number(match[1]) * (durationUnits[match[2] ?? ""] ?? 0);
  }
  return total;
}
