import type { DescMessage, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import type { ContextValues, Interceptor, ServiceImplSpec } from "@connectrpc/connect";
import type { Exchange } from "../edge/index.js";
import { AppError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import { createHttpCaller, type CallWriter, type NodeServerRequest } from "./http-call.js";
import { parseJsonBody } from "./json-body.js";
import { readBody } from "./read-body.js";
import { restErrorFromConnect } from "./rest-error.js";
import { fromRestJson, toRestJson } from "./rest-json.js";
import { applyQuery, compileRoutes, setPathValue, type RestRoute } from "./rest-routes.js";
import { streamJsonWriter } from "./sse.js";

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

function isJsonObject(value: JsonValue): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The request JSON of a route: body, then query parameters, then path variables (which win). */
function requestJson(
  route: RestRoute,
  pathValues: readonly string[],
  rawQuery: string,
  body: Buffer,
  req: NodeServerRequest,
): JsonObject {
  let json: JsonObject = {};
  if (body.length > 0) {
    if (route.body === undefined) {
      throw new AppError("invalid_argument", { message: "This method takes no request body" });
    }
    const parsed = parseJsonBody(req, body);
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
 * server streams are Server-Sent Events (`data: <json>` per message with OpenAI's `"usage": null` rule,
 * `data: [DONE]` after the last, a failure as `event: error` with the S7 body); errors use the S7 body and
 * status. The call itself runs on the path shared with the OpenAI surface (http-call.ts).
 */
export function createRestHandler(options: RestHandlerOptions): RestHandler {
  if (!Number.isSafeInteger(options.maxBodyBytes) || options.maxBodyBytes < 0) {
    throw new Error(
      `createRestHandler: maxBodyBytes must be a non-negative integer, got ${String(options.maxBodyBytes)}`,
    );
  }
  const routes = compileRoutes(options.services);
  const { maxBodyBytes } = options;
  const caller = createHttpCaller(options);

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
    const built = requestJson(route, pathValues, exchange.query, body, req);
    return { route, request: fromRestJson(route.spec.method.input, built), body };
  }

  async function handle(exchange: Exchange, signal: AbortSignal): Promise<void> {
    let built: Built;
    try {
      built = await build(exchange);
    } catch (thrown) {
      if (!(thrown instanceof AppError)) throw thrown;
      caller.refuse(exchange, thrown, restErrorFromConnect);
      return;
    }
    const { route, request, body } = built;
    const writer = writers.get(route) ?? writerOf(route);
    await caller.invoke(exchange, signal, { spec: route.spec, request, body, url: route.url }, writer);
  }

  /** The REST writer of a route: the REST JSON writer (and `response_body`), S7 error bodies. */
  function writerOf(route: RestRoute): CallWriter {
    const output = route.spec.method.output;
    return {
      error: restErrorFromConnect,
      unary: (message) => answerJson(route, output, message),
      stream: (request) =>
        route.responseBody === undefined
          ? streamJsonWriter(output, request)
          : (message) => answerJson(route, output, message),
    };
  }
  const writers = new Map(routes.map((route) => [route, writerOf(route)]));
  return caller.handler("REST transcoder", "rest", handle, restErrorFromConnect);
}
