import { createHash } from "node:crypto";
import { once } from "node:events";
import type { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import {
  fromBinary,
  toBinary,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues } from "@connectrpc/connect";
import {
  createAsyncIterable,
  encodeEnvelope,
  pipe,
  readAllBytes,
  transformSplitEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import {
  codeFromHttpStatus,
  endStreamFlag,
  endStreamFromJson,
  errorFromJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { AppError, errorTable, httpStatusOf, scrubSecrets } from "../errors/index.js";
import { httpRequestInfoKey } from "../lib/request-context.js";
import type { Logger } from "../log/index.js";
import { restResponseSlotKey, type RestResponseSlot } from "./rest-capture.js";
import { isProtocolHeader, restError, restErrorFromConnect, type RestError } from "./rest-error.js";
import { fromRestJson, toRestJson } from "./rest-json.js";
import { applyQuery, compileRoutes, setPathValue, type RestRoute } from "./rest-routes.js";

type NodeHandlerFn = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** An HTTP/1.1 `IncomingMessage` or an HTTP/2 compat `Http2ServerRequest`. */
export type NodeServerRequest = Parameters<NodeHandlerFn>[0];
/** An HTTP/1.1 `ServerResponse` or an HTTP/2 compat `Http2ServerResponse`. */
export type NodeServerResponse = Parameters<NodeHandlerFn>[1];

export interface RestHandlerOptions {
  /** The router's universal handlers (`router.handlers`); every method with google.api.http gets routes. */
  readonly handlers: readonly UniversalHandler[];
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /** For failures of the transcoder itself (not for caller errors). */
  readonly logger?: Logger;
  /** Extra context values per request, like connectNodeAdapter's option of the same name. */
  readonly contextValues?: (req: NodeServerRequest) => ContextValues;
}

/** A Node request listener for HTTP/1.1 and HTTP/2 compat requests; fits connectNodeAdapter's `fallback`. */
export type RestHandler = (req: NodeServerRequest, res: NodeServerResponse) => void;

// The transcoder talks to the handlers in binary protobuf: the request is validated once by fromRestJson
// and the handler's own decoding of bytes is cheap.
const contentTypeUnary = "application/proto";
const contentTypeStream = "application/connect+proto";
// Handler responses come from our own code in-process; the request limit is enforced before the call.
const maxHandlerBytes = 0xffffffff;

/** Caller headers an interceptor may need; everything else stays behind. */
function passesThrough(name: string): boolean {
  return (
    name === "authorization" ||
    name === "traceparent" ||
    name === "tracestate" ||
    name === "x-cloud-trace-context" ||
    name === "user-agent" ||
    name === "connect-timeout-ms" ||
    name.startsWith("x-")
  );
}

const grpcTimeoutRe = /^(\d{1,8})([HMSmun])$/;
const grpcTimeoutUnitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 } as const;

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

function handlerHeaders(req: NodeServerRequest, contentType: string): Headers {
  const header = new Headers();
  for (const [name, value] of Object.entries(req.headers as IncomingHttpHeaders)) {
    const v = headerValue(value);
    if (v !== undefined && !name.startsWith(":") && passesThrough(name)) header.set(name, v);
  }
  // A gRPC-style deadline becomes the Connect one the handler enforces (maxTimeoutMs applies).
  const grpcTimeout = grpcTimeoutRe.exec(headerValue(req.headers["grpc-timeout"]) ?? "");
  if (grpcTimeout !== null && !header.has("connect-timeout-ms")) {
    const ms = Math.ceil(
      Number(grpcTimeout[1]) * grpcTimeoutUnitMs[grpcTimeout[2] as keyof typeof grpcTimeoutUnitMs],
    );
    header.set("connect-timeout-ms", String(ms));
  }
  header.set("content-type", contentType);
  header.set("connect-protocol-version", "1");
  return header;
}

function sendJson(res: NodeServerResponse, status: number, body: string, headers: OutgoingHttpHeaders): void {
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function sendError(
  req: NodeServerRequest,
  res: NodeServerResponse,
  err: RestError,
  closeConnection = false,
): void {
  const headers: OutgoingHttpHeaders = { ...err.headers };
  // An unread HTTP/1.1 body would otherwise be parsed as the next request; HTTP/2 resets the stream itself.
  if (closeConnection && req.httpVersionMajor === 1) headers["connection"] = "close";
  sendJson(res, err.status, err.body, headers);
}

function fromAppError(err: AppError): RestError {
  return restError(httpStatusOf(err.code), errorTable[err.code].code, err.message, { ...err.headers });
}

function responseHeaders(header: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  header?.forEach((value, name) => {
    // Unary Connect answers carry trailers as "trailer-" headers.
    const plain = name.startsWith("trailer-") ? name.slice("trailer-".length) : name;
    if (!isProtocolHeader(plain)) out[plain] = value;
  });
  return out;
}

interface ReadBody {
  readonly bytes: Buffer;
  readonly sha256: string;
}

async function readBody(req: NodeServerRequest, maxBytes: number): Promise<ReadBody | undefined> {
  const declared = Number(headerValue(req.headers["content-length"]) ?? "0");
  if (declared > maxBytes) return undefined;
  const hash = createHash("sha256");
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) return undefined;
    hash.update(chunk);
    chunks.push(chunk);
  }
  return { bytes: Buffer.concat(chunks, total), sha256: hash.digest("hex") };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function isJsonObject(value: JsonValue): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The request JSON of a route: body, then query parameters, then path variables (which win). */
function requestJson(
  route: RestRoute,
  pathValues: readonly string[],
  rawQuery: string,
  body: Buffer,
  contentType: string | undefined,
  contentEncoding: string | undefined,
): { json: JsonObject } | { error: RestError } {
  let json: JsonObject = {};
  if (body.length > 0) {
    if (route.body === undefined) {
      return { error: restError(400, Code.InvalidArgument, "This method takes no request body") };
    }
    const mime = contentType?.split(";")[0]?.trim().toLowerCase();
    if (mime !== "application/json" || (contentEncoding !== undefined && contentEncoding !== "identity")) {
      return { error: restError(415, Code.InvalidArgument, "Content-Type must be application/json") };
    }
    let parsed: JsonValue;
    try {
      parsed = JSON.parse(utf8.decode(body)) as JsonValue;
    } catch {
      return { error: restError(400, Code.InvalidArgument, "Malformed JSON body") };
    }
    if (route.body === "*") {
      if (!isJsonObject(parsed)) {
        return { error: restError(400, Code.InvalidArgument, "Request body must be a JSON object") };
      }
      json = parsed;
    } else {
      json = { [route.body.name]: parsed };
    }
  }
  if (route.body !== "*" && rawQuery !== "") applyQuery(route, json, new URLSearchParams(rawQuery));
  route.pathFields.forEach((fields, i) => setPathValue(json, fields, pathValues[i] ?? ""));
  return { json };
}

function connectErrorFromBytes(status: number, bytes: Uint8Array, header: Headers | undefined): ConnectError {
  const fallback = new ConnectError("Internal server error", codeFromHttpStatus(status));
  try {
    return errorFromJsonBytes(bytes, header, fallback);
  } catch (err) {
    return err instanceof ConnectError ? err : fallback;
  }
}

/** The REST JSON of a response message, or of its `response_body` field. */
function answerJson(route: RestRoute, output: DescMessage, message: Message): string {
  const json = toRestJson(output, message);
  if (route.responseBody === undefined || !isJsonObject(json)) return JSON.stringify(json);
  return JSON.stringify(json[route.responseBody.name] ?? null);
}

function sseEvent(json: string, event?: string): string {
  return event === undefined ? `data: ${json}\n\n` : `event: ${event}\ndata: ${json}\n\n`;
}

/** Writes a chunk and waits for the socket to drain; false when the client has gone. */
async function write(res: NodeServerResponse, chunk: string, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (res.write(chunk)) return true;
  try {
    await once(res as unknown as EventEmitter, "drain", { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates the REST transcoder: routes from the google.api.http options of the handlers' methods, compiled
 * once (throws on an invalid rule). Per request it matches the route (404 unknown path, 405 with `Allow`
 * for a known path with another method), reads the body up to `maxBodyBytes` (413), requires
 * `application/json` for a non-empty body (415), builds the request from body, query and path (400 naming
 * the field), and calls the method's own handler, so every router interceptor runs exactly as for gRPC
 * and Connect. Interceptors see `httpRequestInfoKey` (method, raw path and query, body SHA-256) and the
 * caller's authorization, `x-*` and trace headers. Answers use the REST JSON writer; server streams are
 * Server-Sent Events (`data: <json>` per message, a failure as `event: error` with the S7 body); errors
 * use the S7 body and status.
 */
export function createRestHandler(options: RestHandlerOptions): RestHandler {
  if (!Number.isSafeInteger(options.maxBodyBytes) || options.maxBodyBytes < 0) {
    throw new Error(
      `createRestHandler: maxBodyBytes must be a non-negative integer, got ${String(options.maxBodyBytes)}`,
    );
  }
  const routes = compileRoutes(options.handlers);
  const { maxBodyBytes, logger } = options;

  async function handle(req: NodeServerRequest, res: NodeServerResponse, signal: AbortSignal): Promise<void> {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const rawQuery = q < 0 ? "" : url.slice(q + 1);
    const method = (req.method ?? "GET").toUpperCase();

    let route: RestRoute | undefined;
    let pathValues: string[] | undefined;
    const allowed = new Set<string>();
    for (const candidate of routes) {
      const values = candidate.template.match(path);
      if (values === undefined) continue;
      if (candidate.httpMethod !== method) {
        allowed.add(candidate.httpMethod);
        continue;
      }
      route = candidate;
      pathValues = values;
      break;
    }
    if (route === undefined || pathValues === undefined) {
      if (allowed.size > 0) {
        sendError(
          req,
          res,
          restError(405, Code.Unimplemented, "Method not allowed", { allow: [...allowed].join(", ") }),
        );
      } else {
        sendError(req, res, restError(404, Code.NotFound, "Not found"));
      }
      return;
    }

    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) {
      const row = errorTable.request_too_large;
      sendError(req, res, restError(row.http, row.code, row.message), true);
      return;
    }
    const input = route.handler.method.input;
    let request: Message;
    try {
      const built = requestJson(
        route,
        pathValues,
        rawQuery,
        body.bytes,
        headerValue(req.headers["content-type"]),
        headerValue(req.headers["content-encoding"]),
      );
      if ("error" in built) {
        sendError(req, res, built.error);
        return;
      }
      request = fromRestJson(input, built.json);
    } catch (err) {
      if (err instanceof AppError) {
        sendError(req, res, fromAppError(err));
        return;
      }
      throw err;
    }

    const slot: RestResponseSlot = { message: undefined };
    const contextValues = (options.contextValues?.(req) ?? createContextValues())
      .set(httpRequestInfoKey, { method, path, query: rawQuery, bodySha256: body.sha256 })
      .set(restResponseSlotKey, slot);
    const payload = toBinary(input, request);
    const uReq: UniversalServerRequest = {
      httpVersion: req.httpVersion,
      url: `http://localhost${route.handler.requestPath}`,
      method: "POST",
      header: handlerHeaders(req, route.serverStreaming ? contentTypeStream : contentTypeUnary),
      body: createAsyncIterable([route.serverStreaming ? encodeEnvelope(0, payload) : payload]),
      signal,
      contextValues,
    };
    const output = route.handler.method.output;
    const uRes = await route.handler(uReq);

    if (!route.serverStreaming) {
      const bytes =
        uRes.body === undefined ? new Uint8Array(0) : await readAllBytes(uRes.body, maxHandlerBytes);
      if (uRes.status !== 200) {
        sendError(req, res, restErrorFromConnect(connectErrorFromBytes(uRes.status, bytes, uRes.header)));
        return;
      }
      const message = slot.message ?? fromBinary(output, bytes);
      sendJson(res, 200, answerJson(route, output, message), responseHeaders(uRes.header));
      return;
    }

    if (uRes.status !== 200 || uRes.body === undefined) {
      throw new Error(`stream handler answered HTTP ${String(uRes.status)}`);
    }
    const envelopes = pipe(uRes.body, transformSplitEnvelope(maxHandlerBytes))[Symbol.asyncIterator]();
    let first = await envelopes.next();
    // An error before the first message (authentication, limits) is an ordinary REST error, not a stream.
    if (!first.done && (first.value.flags & endStreamFlag) === endStreamFlag) {
      const end = endStreamFromJson(first.value.data);
      if (end.error !== undefined) {
        sendError(req, res, restErrorFromConnect(end.error));
        return;
      }
    }
    res.writeHead(200, {
      ...responseHeaders(uRes.header),
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
    });
    try {
      for (; !first.done; first = await envelopes.next()) {
        const { flags, data } = first.value;
        if ((flags & endStreamFlag) === endStreamFlag) {
          const end = endStreamFromJson(data);
          if (end.error !== undefined) {
            if (!signal.aborted)
              await write(res, sseEvent(restErrorFromConnect(end.error).body, "error"), signal);
          }
          break;
        }
        const json = answerJson(route, output, fromBinary(output, data));
        if (!(await write(res, sseEvent(json), signal))) break;
      }
    } finally {
      await envelopes.return?.();
    }
    res.end();
  }

  return function restHandler(req, res) {
    const abort = new AbortController();
    // Abort the call (and the upstream request behind it) when the caller goes away before the answer.
    (res as unknown as EventEmitter).once("close", () => abort.abort());
    handle(req, res, abort.signal).catch((err: unknown) => {
      // Only a scrubbed message: the cause of an unexpected failure may quote anything.
      const cause = scrubSecrets(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
      logger?.error({ cause, path: req.url?.split("?")[0] }, "REST transcoder failure");
      if (!res.headersSent) {
        const row = errorTable.internal;
        sendError(req, res, restError(row.http, row.code, row.message), true);
      } else if (!res.writableEnded) {
        const row = errorTable.internal;
        res.end(sseEvent(restError(row.http, row.code, row.message).body, "error"));
      }
    });
  };
}
