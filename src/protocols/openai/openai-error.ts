import type { ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { codeTable, errorDomain, type AppErrorCode } from "../../errors/index.js";
import {
  errorDetailsOf,
  headersWithRetryAfterMs,
  restErrorFromConnect,
  type ErrorInfoJson,
  type RestError,
} from "../http-error.js";

/**
 * OpenAI's `error.type` by HTTP status, for the statuses of the README's error table. OpenAI's SDKs pick
 * their error class from the status alone (README, "OpenAI-compatible base URL"); `type` is for people
 * reading the body.
 */
const typeByStatus: Readonly<Record<number, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "invalid_request_error",
  405: "invalid_request_error",
  413: "invalid_request_error",
  415: "invalid_request_error",
  429: "rate_limit_error",
};

/** The request field a code is always about, when the error itself does not name one. */
const paramByReason: Partial<Record<AppErrorCode, string>> = {
  model_not_found: "model",
  model_not_supported: "model",
  streaming_not_supported: "stream",
  streaming_required: "stream",
};

/**
 * OpenAI's error body: `{"error": {"message", "type", "param", "code", "details"?}}`; `details` (our
 * ErrorInfo, as in the REST body) only when the error carries a hint or a limit, which OpenAI's SDKs keep
 * on the error object without reading.
 */
export function openAiErrorBody(
  status: number,
  message: string,
  code: string,
  param: string | null,
  details?: readonly ErrorInfoJson[],
): string {
  const type = typeByStatus[status] ?? (status >= 500 ? "server_error" : "invalid_request_error");
  const error = { message, type, param, code };
  return JSON.stringify({ error: details === undefined ? error : { ...error, details } });
}

/**
 * Turns a ConnectError into the OpenAI surface's answer: the same status and headers as the REST answer
 * (the error table's status; rate-limit headers; `Retry-After` in whole seconds on 429), OpenAI's body with the message of
 * the README's table, `code` the stable reason of our ErrorInfo (`rate_limited`, `upstream_error`, ...) or
 * the gRPC code name in lower case, `param` the field at fault when known; and on 429 also
 * `retry-after-ms`, which OpenAI's SDKs prefer to `Retry-After`, so their built-in retry waits exactly as
 * long as the limiter asks.
 */
export function openAiErrorFromConnect(error: ConnectError): RestError {
  const rest = restErrorFromConnect(error);
  const info = error.findDetails(ErrorInfoSchema).find((i) => i.domain === errorDomain);
  const code = info?.reason ?? codeTable[error.code].name.toLowerCase();
  const param = info?.metadata["param"] ?? paramByReason[code as AppErrorCode] ?? null;
  const headers = headersWithRetryAfterMs(error, rest);
  return {
    status: rest.status,
    body: openAiErrorBody(rest.status, error.rawMessage, code, param, errorDetailsOf(error)),
    headers,
  };
}
