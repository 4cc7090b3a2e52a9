import type { DescMethod, JsonObject, Message } from "@bufbuild/protobuf";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import type { ServiceImplSpec } from "@connectrpc/connect";
import type { Exchange, NodeServerRequest } from "../edge/exchange.js";
import { AppError } from "../errors/index.js";
import { compileJsonPlans, fromRestJson } from "../json/index.js";
import { nonNegativeInt } from "../lib/options.js";
import type { JsonChat, JsonChatRequest } from "./chat-json.js";
import { createHttpInvoker, type CallWriter, type HttpInvokeOptions } from "./http-invoke.js";
import { restErrorFromConnect } from "./rest-error.js";
import { applyQuery, compileRoutes, setPathValue, type RestRoute } from "./rest-routes.js";
import { streamJsonWriter } from "./rest-sse.js";
import { answerJson, isJsonObject } from "./rest-write.js";
import { parseJsonBody } from "./request-body.js";

export interface RestHandlerOptions extends HttpInvokeOptions {
  /**
   * The services whose methods get routes from their google.api.http options: the very specs registered
   * on the Connect router (see recordServices), invoked in-process.
   */
  readonly services: readonly ServiceImplSpec[];
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /**
   * The chat RPCs for JSON callers (chat-json.ts): with it, the chat routes take JSON in and give JSON out
   * without protobuf messages; every other route (and the chat routes without it) is built as a message.
   */
  readonly chatJson?: JsonChat | undefined;
}

/** The innermost edge handler for REST requests (the dispatcher's last resort: it answers 404 itself). */
export type RestHandler = (exchange: Exchange) => void;

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

type Built =
  | { readonly route: RestRoute; readonly request: Message; readonly json?: undefined }
  | { readonly route: RestRoute; readonly json: JsonChatRequest; readonly chat: JsonChat };

const jsonText = (json: JsonObject): string => JSON.stringify(json);

/** The REST writer of a route: the REST JSON writer (and `response_body`), the error table's bodies. */
function writerOf(route: RestRoute): CallWriter {
  const output = route.spec.method.output;
  const toJson = (message: Message): string => answerJson(route, output, message);
  return {
    error: restErrorFromConnect,
    unary: toJson,
    stream: (request) => (route.responseBody === undefined ? streamJsonWriter(output, request) : toJson),
  };
}

/**
 * Creates the REST transcoder: routes from the google.api.http options of the services' methods, compiled
 * once (throws on an invalid rule). Per request it matches the route (404 unknown path, 405 with `Allow`
 * for a known path with another method), reads the body up to `maxBodyBytes` (413), requires
 * `application/json` for a non-empty body (415), builds the request from body, query and path (400 naming
 * the field), and invokes the method's implementation in-process on the call path it shares with the
 * OpenAI-compatible surface (http-invoke.ts): the same interceptors, context, deadline and error handling
 * as the Connect router, without serializing the messages. Answers use the REST JSON writer; server
 * streams are Server-Sent Events (`data: <json>` per message with OpenAI's `"usage": null` rule,
 * `data: [DONE]` after the last, a failure as `event: error` with the error body); errors use the error
 * table's body and status.
 */
export function createRestHandler(options: RestHandlerOptions): RestHandler {
  nonNegativeInt("createRestHandler", "maxBodyBytes", options.maxBodyBytes);
  const routes = compileRoutes(options.services);
  compileJsonPlans(routes.flatMap((r) => [r.spec.method.input, r.spec.method.output]));
  const { maxBodyBytes } = options;
  const http = createHttpInvoker(options);
  const writers = new Map(routes.map((route) => [route, writerOf(route)]));
  const { chatJson } = options;
  const chatMethods: ReadonlySet<DescMethod> = new Set([
    ChatService.method.createChatCompletion,
    ChatService.method.streamChatCompletion,
  ]);

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
    // Read (size-limited) and prechecked by auth, but not parsed: no unauthenticated request costs a parse.
    const body = await http.read(exchange, spec.method, maxBodyBytes);
    const built = requestJson(route, pathValues, exchange.query, body, req);
    if (chatJson !== undefined && chatMethods.has(spec.method)) {
      return { route, json: chatJson.take(built), chat: chatJson };
    }
    return { route, request: fromRestJson(route.spec.method.input, built) };
  }

  async function handle(exchange: Exchange): Promise<void> {
    let built: Built;
    try {
      built = await build(exchange);
    } catch (thrown) {
      if (!(thrown instanceof AppError)) throw thrown;
      http.refuse(exchange, thrown, restErrorFromConnect);
      return;
    }
    const { route } = built;
    if (built.json !== undefined) {
      const { spec, url } = route;
      const { chat } = built;
      const request = built.json;
      await http.invokeJson(
        exchange,
        route.serverStreaming
          ? { spec, url, request, stream: chat.stream, text: chat.chunkText(request) }
          : { spec, url, request, unary: chat.complete, text: jsonText },
        restErrorFromConnect,
      );
      return;
    }
    const writer = writers.get(route) ?? writerOf(route);
    await http.invoke(exchange, { spec: route.spec, request: built.request, url: route.url }, writer);
  }

  return http.handler("REST transcoder", "rest", handle, restErrorFromConnect);
}
