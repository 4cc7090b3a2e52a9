import type { Message } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ChatService } from "../../../gen/apikeyserver/v1/chat_pb.js";
import {
  ChatCompletionRequestSchema,
  ModelSchema,
  type ListModelsResponse,
} from "../../../gen/apikeyserver/v1/chat_pb.js";
import type { EdgeEntry, Exchange } from "../../edge/exchange.js";
import { chatMethods } from "../chat-methods.js";
import { AppError } from "../../errors/index.js";
import { compileJsonPlans, fromRestJson, toRestJson } from "../../json/index.js";
import { nonNegativeInt } from "../../lib/options.js";
import type { JsonChat, JsonChatRequest } from "../../services/chat-json.js";
import type { CallPipeline, CallWire } from "../../call/pipeline.js";
import { httpWire } from "../http-wire.js";
import { sendError } from "../http-write.js";
import { openAiErrorFromConnect } from "./openai-error.js";
import { streamJsonWriter } from "../sse.js";
import { parseJsonObjectBody } from "../request-body.js";
import type { EmbeddingService } from "../../../gen/apikeyserver/v1/embeddings_pb.js";
import { createEmbeddingsRoute } from "./embeddings-route.js";
import type { JsonResponses } from "../../services/responses/responses-json.js";
import { responseNotStored, responsesCall } from "./responses-handler.js";

export interface OpenAiEdgeOptions {
  /** The ChatService implementation the Connect router serves (the same object), invoked in-process. */
  readonly chat: ServiceImpl<typeof ChatService>;
  /** The call pipeline every call passes (src/call/pipeline.ts). */
  readonly pipeline: CallPipeline;
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /** Largest deadline a caller may set (connect-timeout-ms / grpc-timeout); a larger one is refused. */
  readonly maxTimeoutMs?: number;
  /**
   * The chat RPCs for JSON callers (chat-json.ts), run by the same core as `chat`: with it, chat requests
   * get JSON in and JSON out without protobuf messages.
   */
  readonly chatJson?: JsonChat | undefined;
  /** The EmbeddingService implementation the router serves: with it, `POST …/v1/embeddings` is served. */
  readonly embeddings?: ServiceImpl<typeof EmbeddingService> | undefined;
  /** OpenAI's Responses API on the chat core (src/services/responses/): with it, `…/responses` is served. */
  readonly responses?: JsonResponses | undefined;
}

/** Paths under the base URL `/openai/<product>/v1`, as OpenAI's SDKs call them. */
const prefix = "/openai/";
const chatPath = "/v1/chat/completions";
const modelsPath = "/v1/models";
const embeddingsPath = "/v1/embeddings";
const responsesPath = "/v1/responses";

type Endpoint =
  | { readonly kind: "chat" }
  | { readonly kind: "models" }
  | { readonly kind: "embeddings" }
  | { readonly kind: "responses" }
  /** A stored response by id (or its `cancel`, `input_items`): none is stored, 404 whatever the method. */
  | { readonly kind: "stored-response" }
  | { readonly kind: "model"; readonly model: string };

/**
 * The OpenAI-compatible surface (README, "OpenAI-compatible base URL"), an edge entry that answers every
 * request under `/openai/` itself and passes any other on: each product is reachable at the base URL
 * `<server>/openai/<product>/v1`, so OpenAI's SDKs work unchanged with `baseURL` set to it and the
 * caller's JWT as `apiKey`.
 *
 * - `POST …/chat/completions` runs CreateChatCompletion, or StreamChatCompletion when the body says
 *   `"stream": true` (answered as OpenAI's SSE: `data: {chunk}` per chunk, `"usage": null` before the
 *   usage chunk with `stream_options.include_usage`, then `data: [DONE]`);
 * - `GET …/models` runs ListModels; `GET …/models/{model}` runs ListModels and answers the one model.
 *
 * These are the ChatService implementations the router serves, invoked in-process through the same
 * interceptors on the call pipeline the REST transcoder uses (http-wire.ts; docs/architecture.md, "HTTP
 * surfaces"): auth, limits, upstream and the access line are the same; only the routing, the framing and
 * the error body differ: OpenAI's `{"error": {"message", "type", "param", "code"}}` with the statuses of
 * the README's error table.
 */
export function createOpenAiEdge(options: OpenAiEdgeOptions): EdgeEntry {
  const maxBodyBytes = nonNegativeInt("createOpenAiEdge", "maxBodyBytes", options.maxBodyBytes);
  const maxTimeoutMs = options.maxTimeoutMs ?? Number.MAX_SAFE_INTEGER;
  const { pipeline, chatJson, responses } = options;
  const { unary, stream, models } = chatMethods("createOpenAiEdge", options.chat);
  const text = (answer: unknown): string => JSON.stringify(answer);
  const chunkText = (request: unknown): ((message: unknown) => string) =>
    isMessage(request)
      ? (streamJsonWriter(stream.spec.method.output, request) as (m: unknown) => string)
      : (chatJson?.chunkText(request as JsonChatRequest) as (m: unknown) => string);
  const chatText = (answer: unknown): string =>
    isMessage(answer) ? JSON.stringify(toRestJson(unary.spec.method.output, answer)) : text(answer);
  const modelsText = (answer: unknown): string =>
    JSON.stringify(toRestJson(models.spec.method.output, answer as Message));
  compileJsonPlans([unary.spec.method.output, models.spec.method.input, models.spec.method.output]);
  const modelText =
    (id: string) =>
    (answer: unknown): string => {
      const model = (answer as ListModelsResponse).data.find((m) => m.id === id);
      if (model === undefined) throw new AppError("model_not_found", { param: "model" });
      return JSON.stringify(toRestJson(ModelSchema, model));
    };

  const embeddingsCall =
    options.embeddings &&
    createEmbeddingsRoute({ embeddings: options.embeddings, maxBodyBytes, maxTimeoutMs });

  /** The call of an endpoint: chat picks CreateChatCompletion or StreamChatCompletion by the body. */
  function callOf(exchange: Exchange, product: string, endpoint: Endpoint): CallWire {
    if (endpoint.kind === "embeddings") {
      // route() refused the path when the server has no EmbeddingService.
      if (embeddingsCall === undefined) throw new AppError("route_not_found");
      return embeddingsCall(exchange, product);
    }
    if (endpoint.kind === "responses" && responses !== undefined) {
      return responsesCall(exchange, { responses, product, unary, stream, maxBodyBytes, maxTimeoutMs });
    }
    if (endpoint.kind === "models" || endpoint.kind === "model") {
      exchange.rpc = models.rpc;
      return httpWire(exchange, {
        name,
        spec: models.spec,
        url: models.url,
        maxBodyBytes,
        maxTimeoutMs,
        decode: () => ({ request: fromRestJson(models.spec.method.input, { product }) }),
        unary: endpoint.kind === "models" ? modelsText : modelText(endpoint.model),
        stream: () => text,
        error: openAiErrorFromConnect,
      });
    }
    // The body tells which of the two RPCs runs: until it is read, the call is named after the unary one.
    exchange.rpc = unary.rpc;
    return httpWire(exchange, {
      name,
      spec: unary.spec,
      url: unary.url,
      maxBodyBytes,
      maxTimeoutMs,
      decode(body) {
        const json = parseJsonObjectBody(exchange.req, body);
        const withProduct = { ...json, product };
        if (chatJson !== undefined) {
          // The JSON chat checks the request against the contract (its 400s) and normalizes it.
          const taken = chatJson.take(withProduct);
          const streaming = taken.view.stream === true;
          exchange.rpc = streaming ? stream.rpc : unary.rpc;
          return streaming
            ? { request: taken, stream: chatJson.stream as never, spec: stream.spec }
            : { request: taken, unary: chatJson.complete, spec: unary.spec };
        }
        const request = fromRestJson(ChatCompletionRequestSchema, withProduct);
        const called = request.stream ? stream : unary;
        exchange.rpc = called.rpc;
        return { request, spec: called.spec };
      },
      unary: chatText,
      stream: chunkText,
      error: openAiErrorFromConnect,
    });
  }

  return (next) => (exchange) => {
    if (!exchange.path.startsWith(prefix)) {
      next(exchange);
      return;
    }
    exchange.protocol = "openai";
    let target: { product: string; endpoint: Endpoint };
    try {
      target = route(exchange, responses !== undefined);
      // Served only when the server was given the EmbeddingService (src/server.ts).
      if (target.endpoint.kind === "embeddings" && embeddingsCall === undefined) {
        throw new AppError("route_not_found");
      }
    } catch (thrown) {
      pipeline.refuse(exchange, thrown, (err) =>
        sendError(exchange.req, exchange.res, openAiErrorFromConnect(err)),
      );
      return;
    }
    void pipeline.run(exchange, callOf(exchange, target.product, target.endpoint));
  };
}

const name = "OpenAI surface";

/** Whether an answer is a protobuf message (the JSON chat answers plain JSON). */
function isMessage(value: unknown): value is Message {
  return typeof value === "object" && value !== null && "$typeName" in value;
}

/**
 * The product and endpoint of a path under `/openai/` (404 `route_not_found` for any other, 405 with
 * `Allow` for the wrong method). Path segments are percent-decoded: the SDKs encode a model id such as
 * `meta-llama/Llama-3-8B` as one segment.
 */
function route(exchange: Exchange, servesResponses: boolean): { product: string; endpoint: Endpoint } {
  const { path } = exchange;
  const slash = path.indexOf("/", prefix.length);
  const product = slash < 0 ? undefined : decode(path.slice(prefix.length, slash));
  const rest = slash < 0 ? "" : path.slice(slash);
  let endpoint: Endpoint | undefined;
  if (rest === chatPath) endpoint = { kind: "chat" };
  else if (rest === modelsPath) endpoint = { kind: "models" };
  else if (rest === embeddingsPath) endpoint = { kind: "embeddings" };
  else if (servesResponses && rest === responsesPath) endpoint = { kind: "responses" };
  else if (servesResponses && rest.startsWith(`${responsesPath}/`)) endpoint = { kind: "stored-response" };
  else if (rest.startsWith(`${modelsPath}/`)) {
    const model = decode(rest.slice(modelsPath.length + 1));
    if (model !== undefined && model !== "") endpoint = { kind: "model", model };
  }
  if (product === undefined || product === "" || endpoint === undefined)
    throw new AppError("route_not_found");
  if (endpoint.kind === "responses" || endpoint.kind === "stored-response")
    exchange.record.surface = "responses";
  if (endpoint.kind === "stored-response") throw responseNotStored();
  const allowed =
    endpoint.kind === "chat" || endpoint.kind === "embeddings" || endpoint.kind === "responses"
      ? "POST"
      : "GET";
  if (exchange.method !== allowed) throw new AppError("method_not_allowed", { headers: { allow: allowed } });
  return { product, endpoint };
}

function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
