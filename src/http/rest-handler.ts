import { hash } from "node:crypto";
import { once } from "node:events";
import type { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { DescMessage, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import {
  createContextValues,
  createHandlerContext,
  type ConnectError,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  invokeUnaryImplementation,
  transformInvokeImplementation,
} from "@connectrpc/connect/protocol";
import { parseTimeout } from "@connectrpc/connect/protocol-connect";
import { exchangeKey, type Exchange } from "../edge/exchange.js";
import { AppError, scrubSecrets } from "../errors/index.js";
import { callEnded, createCallSignals } from "../lib/call-signals.js";
import { httpRequestInfoKey, type HttpRequestInfo } from "../lib/request-context.js";
import type { Logger } from "../log/index.js";
import { accessRecordKey } from "../rpc/access-record.js";
import { failCall } from "../rpc/wire-error.js";
import { isProtocolHeader, restErrorFromConnect, type RestError } from "./rest-error.js";
import { fromRestJson, toRestJson } from "./rest-json.js";
import { sseDone, sseEvent, streamJsonWriter } from "./sse.js";
import { applyQuery, compileRoutes, setPathValue, type RestRoute } from "./rest-routes.js";

type NodeServerRequest = Exchange["req"];
type NodeServerResponse = Exchange["res"];

export interface RestHandlerOptions {
  /**
   * The services whose methods get routes from their google.api.http options: the very specs registered
   * on the Connect router (see recordServices), invoked in-process.
   */
  readonly services: readonly ServiceImplSpec[];
  /** The router's interceptors, outermost first; they run for every REST call as for gRPC and Connect. */
  readonly interceptors: readonly Interceptor[];
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /**
   * Largest deadline (connect-timeout-ms / grpc-timeout) a caller may set, as the router's option of the
   * same name; a larger one is refused with INVALID_ARGUMENT. Default: unlimited, like Connect.
   */
  readonly maxTimeoutMs?: number;
  /** Aborting it aborts the context signal of every running REST call (last step of a shutdown). */
  readonly shutdownSignal?: AbortSignal;
  /** For failures of the transcoder itself (not for caller errors). */
  readonly logger?: Logger;
  /** Extra context values per request, like connectNodeAdapter's option of the same name. */
  readonly contextValues?: (req: NodeServerRequest) => ContextValues;
}

/** The innermost edge handler for REST requests (the dispatcher's last resort: it answers 404 itself). */
export type RestHandler = (exchange: Exchange) => void;

/** Caller headers an interceptor may need; everything else stays behind. */
function passesThrough(name: string): boolean {
  return (
    name === "authorization" ||
    name === "traceparent" ||
    name === "tracestate" ||
    name === "x-cloud-trace-context" ||
    name === "user-agent" ||
    name === "connect-timeout-ms" ||
    (name.charCodeAt(0) === 120 /* x */ && name.charCodeAt(1) === 45) /* - */
  );
}

const grpcTimeoutRe = /^(\d{1,8})([HMSmun])$/;
const grpcTimeoutUnitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 } as const;

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * The request headers interceptors see: the caller's that pass through, and a gRPC-style deadline as the
 * Connect one (`connect-timeout-ms`), which is also the deadline of the call.
 */
function requestHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) {
    if (!passesThrough(name)) continue;
    const v = headerValue(headers[name]);
    if (v !== undefined) out[name] = v;
  }
  const grpcTimeout = headers["grpc-timeout"];
  if (grpcTimeout !== undefined && out["connect-timeout-ms"] === undefined) {
    const m = grpcTimeoutRe.exec(headerValue(grpcTimeout) ?? "");
    if (m !== null) {
      const ms = Math.ceil(Number(m[1]) * grpcTimeoutUnitMs[m[2] as keyof typeof grpcTimeoutUnitMs]);
      out["connect-timeout-ms"] = String(ms);
    }
  }
  return out;
}

function sendJson(res: NodeServerResponse, status: number, body: string, headers: OutgoingHttpHeaders): void {
  headers["content-type"] = "application/json";
  headers["content-length"] = Buffer.byteLength(body);
  res.writeHead(status, headers);
  res.end(body);
}

function sendError(
  req: NodeServerRequest,
  res: NodeServerResponse,
  err: RestError,
  closeConnection = false,
): void {
  const headers: OutgoingHttpHeaders = { ...err.headers };
  // An unread HTTP/1.1 body would otherwise be parsed as the next request; over HTTP/2 the one-port server
  // drains an unread body before the answer ends (src/server/one-port.ts).
  if (closeConnection && req.httpVersionMajor === 1) headers["connection"] = "close";
  sendJson(res, err.status, err.body, headers);
}

/** Copies the non-protocol entries of call metadata into REST response headers. */
function copyHeaders(from: Headers, to: OutgoingHttpHeaders): OutgoingHttpHeaders {
  from.forEach((value, name) => {
    if (!isProtocolHeader(name)) to[name] = value;
  });
  return to;
}

/**
 * The REST answer of a failed call: the S7 status and body; as headers, the call's response headers (unary
 * only) and trailers, then the error's metadata, as a Connect handler would send them.
 */
function callError(err: ConnectError, context: HandlerContext, unary: boolean): RestError {
  const answer = restErrorFromConnect(err);
  const headers: OutgoingHttpHeaders = {};
  if (unary) copyHeaders(context.responseHeader, headers);
  copyHeaders(context.responseTrailer, headers);
  return {
    status: answer.status,
    body: answer.body,
    headers: Object.assign(headers, answer.headers),
  };
}

const emptyBody = Buffer.alloc(0);
const emptySha256 = hash("sha256", emptyBody, "hex");

/**
 * The REST request info for interceptors. The body's SHA-256 is computed on first read: only HMAC
 * verification needs it, a JWT caller's call never pays for it.
 */
function requestInfo(method: string, path: string, query: string, body: Buffer): HttpRequestInfo {
  let sha256: string | undefined = body.length === 0 ? emptySha256 : undefined;
  return {
    method,
    path,
    query,
    get bodySha256(): string {
      return (sha256 ??= hash("sha256", body, "hex"));
    },
  };
}

class BodyClosedError extends Error {
  constructor() {
    super("the request body ended early");
    this.name = "BodyClosedError";
  }
}

/** Reads the whole body (undefined when it is larger than maxBytes: the rest is left unread). */
function readBody(req: NodeServerRequest, maxBytes: number): Promise<Buffer | undefined> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) return Promise.resolve(undefined);
  if (req.readableEnded) return Promise.resolve(emptyBody);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const stream = req as unknown as EventEmitter;
    const cleanup = (): void => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
    };
    function onData(chunk: Buffer): void {
      total += chunk.length;
      if (total > maxBytes) {
        cleanup();
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    }
    function onEnd(): void {
      cleanup();
      if (total === 0) {
        resolve(emptyBody);
        return;
      }
      const first = chunks[0];
      resolve(chunks.length === 1 && first !== undefined ? first : Buffer.concat(chunks, total));
    }
    function onError(err: unknown): void {
      cleanup();
      reject(err instanceof Error ? err : new Error(String(err)));
    }
    function onClose(): void {
      cleanup();
      reject(new BodyClosedError());
    }
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
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
): JsonObject {
  let json: JsonObject = {};
  if (body.length > 0) {
    if (route.body === undefined) {
      throw new AppError("invalid_argument", { message: "This method takes no request body" });
    }
    const mime = contentType?.split(";")[0]?.trim().toLowerCase();
    if (mime !== "application/json" || (contentEncoding !== undefined && contentEncoding !== "identity")) {
      throw new AppError("unsupported_media_type");
    }
    let parsed: JsonValue;
    try {
      parsed = JSON.parse(utf8.decode(body)) as JsonValue;
    } catch {
      throw new AppError("invalid_argument", { message: "Malformed JSON body" });
    }
    if (route.body === "*") {
      if (!isJsonObject(parsed)) {
        throw new AppError("invalid_argument", { message: "Request body must be a JSON object" });
      }
      json = parsed;
    } else {
      json = { [route.body.name]: parsed };
    }
  }
  if (route.body !== "*" && rawQuery !== "") applyQuery(route, json, new URLSearchParams(rawQuery));
  route.pathFields.forEach((fields, i) => setPathValue(json, fields, pathValues[i] ?? ""));
  return json;
}

/** The REST JSON of a response message, or of its `response_body` field. */
function answerJson(route: RestRoute, output: DescMessage, message: Message): string {
  const json = toRestJson(output, message);
  if (route.responseBody === undefined || !isJsonObject(json)) return JSON.stringify(json);
  return JSON.stringify(json[route.responseBody.name] ?? null);
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

interface Built {
  readonly route: RestRoute;
  readonly request: Message;
  readonly body: Buffer;
}

/**
 * Creates the REST transcoder: routes from the google.api.http options of the services' methods, compiled
 * once (throws on an invalid rule). Per request it matches the route (404 unknown path, 405 with `Allow`
 * for a known path with another method), reads the body up to `maxBodyBytes` (413), requires
 * `application/json` for a non-empty body (415), builds the request from body, query and path (400 naming
 * the field), and invokes the method's implementation in-process through the given interceptors, exactly
 * as the Connect router does for gRPC and Connect (same context, deadline and error handling), without
 * serializing the messages. Interceptors see `httpRequestInfoKey` (method, raw path and query, body
 * SHA-256) and the caller's authorization, `x-*` and trace headers. Answers use the REST JSON writer;
 * server streams are Server-Sent Events (`data: <json>` per message, a failure as `event: error` with the
 * S7 body); errors use the S7 body and status.
 */
export function createRestHandler(options: RestHandlerOptions): RestHandler {
  if (!Number.isSafeInteger(options.maxBodyBytes) || options.maxBodyBytes < 0) {
    throw new Error(
      `createRestHandler: maxBodyBytes must be a non-negative integer, got ${String(options.maxBodyBytes)}`,
    );
  }
  const routes = compileRoutes(options.services);
  const { maxBodyBytes, logger, shutdownSignal } = options;
  const maxTimeoutMs = options.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER;
  const interceptors = [...options.interceptors];

  /**
   * Matches the route and builds the request message; throws an AppError for what the caller got wrong
   * (404, 405 with `Allow`, 413, 415, 400).
   */
  async function build(exchange: Exchange): Promise<Built> {
    const { method, path } = exchange;
    let route: RestRoute | undefined;
    let pathValues: string[] | undefined;
    let allowed: Set<string> | undefined;
    for (const candidate of routes) {
      const values = candidate.template.match(path);
      if (values === undefined) continue;
      if (candidate.httpMethod !== method) {
        (allowed ??= new Set()).add(candidate.httpMethod);
        continue;
      }
      route = candidate;
      pathValues = values;
      break;
    }
    if (route === undefined || pathValues === undefined) {
      if (allowed === undefined) throw new AppError("route_not_found");
      throw new AppError("method_not_allowed", { headers: { allow: [...allowed].join(", ") } });
    }
    const spec = route.spec;
    exchange.rpc = `${spec.method.parent.typeName}/${spec.method.name}`;

    const { req } = exchange;
    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) throw new AppError("request_too_large");
    const built = requestJson(
      route,
      pathValues,
      exchange.query,
      body,
      headerValue(req.headers["content-type"]),
      headerValue(req.headers["content-encoding"]),
    );
    return { route, request: fromRestJson(route.spec.method.input, built), body };
  }

  async function handle(exchange: Exchange, signal: AbortSignal): Promise<void> {
    const { req, res, method, path, query: rawQuery } = exchange;
    const contextValues = (options.contextValues?.(req) ?? createContextValues())
      .set(exchangeKey, exchange)
      .set(accessRecordKey, exchange.record);
    let built: Built;
    try {
      built = await build(exchange);
    } catch (thrown) {
      if (!(thrown instanceof AppError)) throw thrown;
      const err = failCall(contextValues, thrown);
      // An unread HTTP/1.1 body would otherwise be parsed as the next request.
      sendError(req, res, restErrorFromConnect(err), thrown.code === "request_too_large");
      return;
    }
    const { route, request, body } = built;

    const requestHeader = requestHeaders(req.headers);
    const timeout = parseTimeout(requestHeader["connect-timeout-ms"] ?? null, maxTimeoutMs);
    if (timeout.error !== undefined) {
      // Refused before the call, as the Connect handler does (no interceptor runs).
      sendError(req, res, restErrorFromConnect(failCall(contextValues, timeout.error)));
      return;
    }
    contextValues.set(httpRequestInfoKey, requestInfo(method, path, rawQuery, body));
    const spec = route.spec;
    const init: Parameters<typeof createHandlerContext>[0] = {
      service: spec.method.parent,
      method: spec.method,
      protocolName: "rest",
      requestMethod: "POST",
      url: route.url,
      requestSignal: signal,
      requestHeader,
      contextValues,
    };
    // The shutdown signal reaches the call through `signal` (see restHandler), not as a listener per call.
    if (timeout.timeoutMs !== undefined) init.timeoutMs = timeout.timeoutMs;
    const context = createHandlerContext(init);
    const output = spec.method.output;

    if (spec.kind === "unary") {
      let message: Message;
      try {
        message = await invokeUnaryImplementation(spec, context, request, interceptors);
      } catch (thrown) {
        const err = failCall(contextValues, thrown);
        context.abort(err);
        sendError(req, res, callError(err, context, true));
        return;
      }
      // Connect aborts the context after every call. Its signal is linked only to this request's own
      // signals, which nothing else holds: an abort is needed only to stop the deadline timer (an abort
      // costs a DOMException and an event to every signal derived from it, AbortSignal.any included).
      if (timeout.timeoutMs !== undefined) context.abort(callEnded);
      const headers = copyHeaders(context.responseTrailer, copyHeaders(context.responseHeader, {}));
      sendJson(res, 200, answerJson(route, output, message), headers);
      return;
    }

    const messages = transformInvokeImplementation(
      spec,
      context,
      interceptors,
    )(createAsyncIterable([request]))[Symbol.asyncIterator]();
    let next: IteratorResult<Message>;
    try {
      next = await messages.next();
    } catch (thrown) {
      // An error before the first message (authentication, limits) is an ordinary REST error, not a stream.
      const err = failCall(contextValues, thrown);
      context.abort(err);
      sendError(req, res, callError(err, context, false));
      return;
    }
    const toJson =
      route.responseBody === undefined
        ? streamJsonWriter(output, request)
        : (message: Message) => answerJson(route, output, message);
    const headers = copyHeaders(context.responseHeader, {});
    headers["content-type"] = "text/event-stream; charset=utf-8";
    headers["cache-control"] = "no-cache";
    res.writeHead(200, headers);
    try {
      while (next.done !== true) {
        if (!(await write(res, sseEvent(toJson(next.value)), signal))) break;
        try {
          next = await messages.next();
        } catch (thrown) {
          const err = failCall(contextValues, thrown);
          context.abort(err);
          if (!signal.aborted) await write(res, sseEvent(restErrorFromConnect(err).body, "error"), signal);
          break;
        }
      }
      // Only a stream that finished well ends with OpenAI's terminator; a failed one ended on its error event.
      if (next.done === true) await write(res, sseDone, signal);
    } finally {
      if (next.done !== true) await messages.return?.();
      context.abort();
    }
    res.end();
  }

  const calls = createCallSignals(shutdownSignal);

  return function restHandler(exchange) {
    const { req, res } = exchange;
    exchange.protocol = "rest";
    const abort = calls.open();
    // Abort the call (and the upstream request behind it) when the caller goes away before the answer;
    // a response that finished needs no abort.
    (res as unknown as EventEmitter).once("close", () => {
      calls.close(abort);
      // Over HTTP/2 a client's RST_STREAM also marks the compat response finished: its code tells.
      if (!res.writableFinished || ("stream" in req && req.stream.rstCode !== 0)) abort.abort();
    });
    handle(exchange, abort.signal).catch((err: unknown) => {
      // Only a scrubbed message: the cause of an unexpected failure may quote anything.
      const cause = scrubSecrets(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
      logger?.error({ cause, path: exchange.path }, "REST transcoder failure");
      exchange.error ??= failCall(createContextValues(), err);
      const answer = restErrorFromConnect(exchange.error);
      if (!res.headersSent) {
        sendError(req, res, answer, true);
      } else if (!res.writableEnded) {
        res.end(sseEvent(answer.body, "error"));
      }
    });
  };
}
