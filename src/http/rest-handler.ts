import { hash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import {
  createContextValues,
  type ConnectError,
  type ContextValues,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import { parseTimeout } from "@connectrpc/connect/protocol-connect";
import { exchangeKey, type Exchange } from "../edge/exchange.js";
import { AppError, scrubSecrets } from "../errors/index.js";
import { nonNegativeInt } from "../lib/options.js";
import { httpRequestInfoKey, type HttpRequestInfo } from "../lib/request-context.js";
import type { Auth } from "../auth/index.js";
import type { Logger } from "../log/index.js";
import { accessRecordKey } from "../rpc/access-record.js";
import { failCall } from "../rpc/wire-error.js";
import { createInProcessCalls } from "../server/in-process-call.js";
import { readBody } from "../server/read-body.js";
import { restErrorFromConnect } from "./rest-error.js";
import { fromRestJson } from "./rest-json.js";
import { applyQuery, compileRoutes, setPathValue, type RestRoute } from "./rest-routes.js";
import { sseEvent, writeSse } from "./rest-sse.js";
import { answerJson, callError, copyHeaders, isJsonObject, sendError, sendJson } from "./rest-write.js";

type NodeServerRequest = Exchange["req"];

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
  /**
   * Auth's body-free checks (see `Auth.precheck`), run before the request body is parsed, so that no
   * unauthenticated request costs a parse. None by default.
   */
  readonly precheck?: Auth["precheck"];
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

const bodyTooLarge = new Error("request body over the limit");
const bodyClosed = (): Error => new Error("the request body ended early");

/** Reads the whole body (undefined when it is larger than maxBytes: the rest is left unread). */
async function readRestBody(req: NodeServerRequest, maxBytes: number): Promise<Buffer | undefined> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) return undefined;
  try {
    return await readBody(req, (_chunk, total) => (total > maxBytes ? bodyTooLarge : undefined), bodyClosed);
  } catch (err) {
    if (err !== bodyTooLarge) throw err;
    req.pause();
    return undefined;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

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
 * error body); errors use the error table's body and status.
 */
export function createRestHandler(options: RestHandlerOptions): RestHandler {
  nonNegativeInt("createRestHandler", "maxBodyBytes", options.maxBodyBytes);
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
    const body = await readRestBody(req, maxBodyBytes);
    if (body === undefined) throw new AppError("request_too_large");
    // Read (size-limited) but not parsed: no unauthenticated request costs a JSON parse.
    const headers = {
      get: (name: string) => headerValue(req.headers[name]) ?? null,
      has: (name: string) => name in req.headers,
    };
    await options.precheck?.(spec.method.parent.typeName, spec.method.name, headers, req.rawHeaders);
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

  async function handle(exchange: Exchange): Promise<void> {
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
    const call = calls.open(exchange, spec, {
      protocolName: "rest",
      url: route.url,
      requestHeader,
      timeoutMs: timeout.timeoutMs,
      contextValues,
    });
    const { context } = call;
    const toJson = (message: Message) => answerJson(route, spec.method.output, message);

    if (spec.kind === "unary") {
      let message: Message;
      try {
        message = await call.unary(request);
      } catch (err) {
        sendError(req, res, callError(err as ConnectError, context, true));
        return;
      }
      const headers = copyHeaders(context.responseTrailer, copyHeaders(context.responseHeader, {}));
      sendJson(res, 200, toJson(message), headers);
      return;
    }

    const messages = call.stream(request);
    let first: IteratorResult<Message>;
    try {
      first = await messages.next();
    } catch (err) {
      // An error before the first message (authentication, limits) is an ordinary REST error, not a stream.
      sendError(req, res, callError(err as ConnectError, context, false));
      return;
    }
    await writeSse(res, copyHeaders(context.responseHeader, {}), first, messages, toJson, context.signal);
  }

  const calls = createInProcessCalls({ interceptors, shutdownSignal });

  return function restHandler(exchange) {
    const { req, res } = exchange;
    exchange.protocol = "rest";
    handle(exchange).catch((err: unknown) => {
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
