import type { DescMethod, JsonObject, Message } from "@bufbuild/protobuf";
import { ChatService } from "../../../gen/apikeyserver/v1/chat_pb.js";
import type { ServiceImplSpec } from "@connectrpc/connect";
import type { Exchange, NodeServerRequest } from "../../edge/exchange.js";
import { AppError } from "../../errors/index.js";
import { compileJsonPlans, fromRestJson } from "../../json/index.js";
import { nonNegativeInt } from "../../lib/options.js";
import type { JsonChat, JsonChatRequest } from "../../services/chat-json.js";
import type { CallPipeline } from "../../call/pipeline.js";
import { httpWire } from "../http-wire.js";
import { restErrorFromConnect } from "../http-error.js";
import { applyQuery, compileRoutes, setPathValue, type RestRoute } from "./rest-routes.js";
import { streamJsonWriter } from "../sse.js";
import { answerJson, isJsonObject, sendError } from "../http-write.js";
import { parseJsonBody } from "../request-body.js";

export interface RestHandlerOptions {
  /**
   * The services whose methods get routes from their google.api.http options: the very specs registered
   * on the Connect router (see recordServices), invoked in-process.
   */
  readonly services: readonly ServiceImplSpec[];
  /** The call pipeline every call passes (src/call/pipeline.ts). */
  readonly pipeline: CallPipeline;
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /** Largest deadline a caller may set (connect-timeout-ms / grpc-timeout); a larger one is refused. */
  readonly maxTimeoutMs?: number;
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
  body: Uint8Array,
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

const jsonText = (json: unknown): string => JSON.stringify(json);
const name = "REST transcoder";

/**
 * Creates the REST transcoder: routes from the google.api.http options of the services' methods, compiled
 * once (throws on an invalid rule). Per request it matches the route (404 unknown path, 405 with `Allow`
 * for a known path with another method) and hands the call to the call pipeline with the HTTP codec
 * (http-wire.ts): the body read up to `maxBodyBytes` (413), auth's precheck, then `application/json`
 * required for a non-empty body (415) and the request built from body, query and path (400 naming the
 * field). Answers use the REST JSON writer; server streams are Server-Sent Events (`data: <json>` per
 * message with OpenAI's `"usage": null` rule, `data: [DONE]` after the last, a failure as `event: error`
 * with the error body); errors use the error table's body and status.
 */
export function createRestHandler(options: RestHandlerOptions): RestHandler {
  nonNegativeInt("createRestHandler", "maxBodyBytes", options.maxBodyBytes);
  const routes = compileRoutes(options.services);
  compileJsonPlans(routes.flatMap((r) => [r.spec.method.input, r.spec.method.output]));
  const { maxBodyBytes, pipeline, chatJson } = options;
  const maxTimeoutMs = options.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER;
  const chatMethods: ReadonlySet<DescMethod> = new Set([
    ChatService.method.createChatCompletion,
    ChatService.method.streamChatCompletion,
  ]);
  const calls = new Map(
    routes.map((route) => {
      const output = route.spec.method.output;
      const unary = (answer: unknown): string =>
        isMessage(answer) ? answerJson(route, output, answer) : jsonText(answer);
      return [route, { unary, stream: streamText(route, unary) }] as const;
    }),
  );

  /** The route and its path values; throws the AppError of an unknown path (404) or method (405). */
  function match(exchange: Exchange): { route: RestRoute; pathValues: string[] } {
    const { method, path } = exchange;
    let allowed: Set<string> | undefined;
    for (const candidate of routes) {
      const values = candidate.template.match(path);
      if (values === undefined) continue;
      if (candidate.httpMethod !== method) {
        (allowed ??= new Set()).add(candidate.httpMethod);
        continue;
      }
      return { route: candidate, pathValues: values };
    }
    if (allowed === undefined) throw new AppError("route_not_found");
    throw new AppError("method_not_allowed", { headers: { allow: [...allowed].join(", ") } });
  }

  return function restHandler(exchange) {
    exchange.protocol = "rest";
    let matched: { route: RestRoute; pathValues: string[] };
    try {
      matched = match(exchange);
    } catch (thrown) {
      pipeline.refuse(exchange, thrown, (err) =>
        sendError(exchange.req, exchange.res, restErrorFromConnect(err)),
      );
      return;
    }
    const { route, pathValues } = matched;
    const { spec } = route;
    exchange.rpc = `${spec.method.parent.typeName}/${spec.method.name}`;
    const writers = calls.get(route);
    if (writers === undefined) throw new Error("unreachable: every route has its writers");
    const chat = chatJson !== undefined && chatMethods.has(spec.method) ? chatJson : undefined;
    void pipeline.run(
      exchange,
      httpWire(exchange, {
        name,
        spec,
        url: route.url,
        maxBodyBytes,
        maxTimeoutMs,
        decode(body) {
          const built = requestJson(route, pathValues, exchange.query, body, exchange.req);
          if (chat !== undefined) {
            // The JSON chat checks the request against the contract (its 400s) and normalizes it.
            const json = chat.take(built);
            return route.serverStreaming
              ? { request: json, stream: chat.stream as never }
              : { request: json, unary: chat.complete };
          }
          return { request: fromRestJson(spec.method.input, built) };
        },
        unary: writers.unary,
        stream: (request) =>
          chat !== undefined && !isMessage(request)
            ? (chat.chunkText(request as JsonChatRequest) as (m: unknown) => string)
            : writers.stream(request),
        error: restErrorFromConnect,
      }),
    );
  };
}

/** Whether an answer is a protobuf message (the JSON chat answers plain JSON). */
function isMessage(value: unknown): value is Message {
  return typeof value === "object" && value !== null && "$typeName" in value;
}

/** The SSE `data:` writer of a route's stream for a request message: the REST JSON writer's. */
function streamText(
  route: RestRoute,
  unary: (answer: unknown) => string,
): (request: unknown) => (message: unknown) => string {
  const output = route.spec.method.output;
  return (request) =>
    route.responseBody === undefined && isMessage(request)
      ? (streamJsonWriter(output, request) as (m: unknown) => string)
      : unary;
}
