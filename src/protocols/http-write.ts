import type { OutgoingHttpHeaders } from "node:http";
import type { DescMessage, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import type { ConnectError, HandlerContext } from "@connectrpc/connect";
import type { NodeServerRequest, NodeServerResponse } from "../edge/exchange.js";
import { toRestJson } from "../json/index.js";
import { isProtocolHeader, type RestError } from "./http-error.js";
import type { RestRoute } from "./rest/rest-routes.js";

// The JSON answers of the HTTP surfaces (the REST transcoder and the OpenAI-compatible one): a message, or
// an error of the error table in the surface's shape (docs/architecture.md).

export function isJsonObject(value: JsonValue): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function sendJson(
  res: NodeServerResponse,
  status: number,
  body: string,
  headers: OutgoingHttpHeaders,
): void {
  headers["content-type"] = "application/json";
  headers["content-length"] = Buffer.byteLength(body);
  res.writeHead(status, headers);
  res.end(body);
}

export function sendError(
  req: NodeServerRequest,
  res: NodeServerResponse,
  err: RestError,
  closeConnection = false,
): void {
  const headers: OutgoingHttpHeaders = { ...err.headers };
  // An unread HTTP/1.1 body would otherwise be parsed as the next request; over HTTP/2 the one-port server
  // drains an unread body before the answer ends (src/transport/one-port.ts).
  if (closeConnection && req.httpVersionMajor === 1) headers["connection"] = "close";
  sendJson(res, err.status, err.body, headers);
}

/** Copies the non-protocol entries of call metadata into HTTP response headers. */
export function copyHeaders(from: Headers, to: OutgoingHttpHeaders): OutgoingHttpHeaders {
  from.forEach((value, name) => {
    if (!isProtocolHeader(name)) to[name] = value;
  });
  return to;
}

/**
 * The answer of a failed call: the error table's status and the surface's body (`errorOf`); as headers,
 * the call's response headers (unary only) and trailers, then the error's metadata, as a Connect handler
 * would send them.
 */
export function callError(
  err: ConnectError,
  context: HandlerContext,
  unary: boolean,
  errorOf: (err: ConnectError) => RestError,
): RestError {
  const answer = errorOf(err);
  const headers: OutgoingHttpHeaders = {};
  if (unary) copyHeaders(context.responseHeader, headers);
  copyHeaders(context.responseTrailer, headers);
  return {
    status: answer.status,
    body: answer.body,
    headers: Object.assign(headers, answer.headers),
  };
}

/** The REST JSON of a response message, or of its `response_body` field. */
export function answerJson(route: RestRoute, output: DescMessage, message: Message): string {
  const json = toRestJson(output, message);
  if (route.responseBody === undefined || !isJsonObject(json)) return JSON.stringify(json);
  return JSON.stringify(json[route.responseBody.name] ?? null);
}
