import type { ConnectError } from "@connectrpc/connect";
import {
  errorDetailsOf,
  headersWithRetryAfterMs,
  restErrorFromConnect,
  type RestError,
} from "../http-error.js";

/**
 * Anthropic's `error.type` by the HTTP status of the README's error table (README, "Anthropic Messages
 * API"). The Anthropic SDKs pick their error class from the status; `type` is what their users read.
 */
const typeByStatus: Readonly<Record<number, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  405: "invalid_request_error",
  413: "request_too_large",
  415: "invalid_request_error",
  429: "rate_limit_error",
  500: "api_error",
  502: "api_error",
  503: "overloaded_error",
  504: "overloaded_error",
};

/** The JSON of Anthropic's error body: `{"type": "error", "error": {"type", "message", "details"?}}`. */
export function anthropicErrorBody(status: number, message: string, details?: unknown): string {
  const type = typeByStatus[status] ?? (status >= 500 ? "api_error" : "invalid_request_error");
  const error = details === undefined ? { type, message } : { type, message, details };
  return JSON.stringify({ type: "error", error });
}

/**
 * Turns a ConnectError into the Anthropic surface's answer: the REST answer's status and headers (the
 * error table's status, rate-limit headers, `Retry-After` in whole seconds on 429, plus `retry-after-ms`,
 * which the Anthropic SDKs read first), Anthropic's body with the exact message of the README's table; a
 * hint or limit in `error.details` (our ErrorInfo), never in the message.
 */
export function anthropicErrorFromConnect(error: ConnectError): RestError {
  const rest = restErrorFromConnect(error);
  const headers = headersWithRetryAfterMs(error, rest);
  return {
    status: rest.status,
    body: anthropicErrorBody(rest.status, error.rawMessage, errorDetailsOf(error)),
    headers,
  };
}
