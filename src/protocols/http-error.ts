import type { Code } from "@connectrpc/connect";
import { type ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { codeTable, errorDomain, httpStatusOfError } from "../errors/index.js";

/** A REST error answer: status, the error JSON body and extra headers. */
export interface RestError {
  readonly status: number;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * One entry of `error.details` in a JSON error body: our google.rpc.ErrorInfo as Google's REST APIs write
 * it (AIP-193), e.g. `{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "request_too_large",
 * "domain": "api-key-server", "metadata": {"limit_bytes": "16384"}}`.
 */
export interface ErrorInfoJson {
  readonly "@type": "type.googleapis.com/google.rpc.ErrorInfo";
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * The details a JSON error body carries beside its exact message: our ErrorInfo (all of its metadata) when
 * the error has a hint or a limit (`hint`, `limit_bytes`, `limit`), else undefined, so the body of every
 * other error stays the plain `{"error": {"code", "status", "message"}, "detail"}` its clients know.
 */
export function errorDetailsOf(error: ConnectError): ErrorInfoJson[] | undefined {
  const info = error.findDetails(ErrorInfoSchema).find((i) => i.domain === errorDomain);
  if (info === undefined || !Object.keys(info.metadata).some((key) => key !== "param")) return undefined;
  return [
    {
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: info.reason,
      domain: info.domain,
      metadata: info.metadata,
    },
  ];
}

/**
 * The REST error body: `{"error": {"code", "status", "message", "details"?}, "detail"}`. `message` and
 * `detail` are exactly the error table's; a hint or limit travels only in `details` (errorDetailsOf).
 */
export function restErrorBody(
  status: number,
  code: Code,
  message: string,
  details?: readonly ErrorInfoJson[],
): string {
  const error = { code: status, status: codeTable[code].name, message };
  return JSON.stringify({
    error: details === undefined ? error : { ...error, details },
    detail: message,
  });
}

/** Response or error metadata that must not be copied to a REST answer (protocol framing). */
export function isProtocolHeader(name: string): boolean {
  return (
    name === "content-type" ||
    name === "content-length" ||
    name === "content-encoding" ||
    name === "accept-encoding" ||
    name === "transfer-encoding" ||
    name === "connection" ||
    name.startsWith("connect-") ||
    name.startsWith("grpc-")
  );
}

/**
 * Turns a ConnectError into the REST answer: the error table's status and body, the error's metadata as headers (rate-limit
 * headers) and, for 429, `Retry-After` in whole seconds from google.rpc.RetryInfo.
 */
export function restErrorFromConnect(error: ConnectError): RestError {
  const status = httpStatusOfError(error);
  const headers: Record<string, string> = {};
  error.metadata.forEach((value, name) => {
    if (!isProtocolHeader(name)) headers[name] = value;
  });
  if (status === 429) {
    const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    if (retry !== undefined) {
      const seconds = Math.max(0, Math.ceil(Number(retry.seconds) + retry.nanos / 1e9));
      headers["retry-after"] = String(seconds);
    }
  }
  return {
    status,
    body: restErrorBody(status, error.code, error.rawMessage, errorDetailsOf(error)),
    headers,
  };
}

/**
 * The headers of a REST error answer plus, on 429, `retry-after-ms` from google.rpc.RetryInfo: the OpenAI
 * and Anthropic SDKs read it before `Retry-After`, so their built-in retry waits exactly as long as asked.
 */
export function headersWithRetryAfterMs(error: ConnectError, rest: RestError): Record<string, string> {
  const headers = { ...rest.headers };
  const retry = rest.status === 429 ? error.findDetails(RetryInfoSchema)[0]?.retryDelay : undefined;
  if (retry !== undefined) {
    headers["retry-after-ms"] = String(
      Math.max(0, Math.ceil(Number(retry.seconds) * 1000 + retry.nanos / 1e6)),
    );
  }
  return headers;
}
