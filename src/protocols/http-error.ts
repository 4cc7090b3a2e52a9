import type { Code } from "@connectrpc/connect";
import { type ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { codeTable, httpStatusOfError } from "../errors/index.js";

/** A REST error answer: status, the error JSON body and extra headers. */
export interface RestError {
  readonly status: number;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** The REST error body: `{"error": {"code", "status", "message"}, "detail"}`. */
export function restErrorBody(status: number, code: Code, message: string): string {
  return JSON.stringify({ error: { code: status, status: codeTable[code].name, message }, detail: message });
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
  return { status, body: restErrorBody(status, error.code, error.rawMessage), headers };
}
