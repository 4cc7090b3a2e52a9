import type { DescMethod, Message } from "@bufbuild/protobuf";
import { createServiceImplSpec, type ServiceImpl } from "@connectrpc/connect";
import {
  ChatCompletionRequestSchema,
  ChatService,
  ModelSchema,
  type ChatCompletionRequest,
  type ListModelsResponse,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import type { EdgeEntry, Exchange } from "../edge/exchange.js";
import { AppError } from "../errors/index.js";
import { compileJsonPlans, fromRestJson, toRestJson } from "../json/index.js";
import { nonNegativeInt } from "../lib/options.js";
import type { JsonChat, JsonChatRequest } from "./chat-json.js";
import { createHttpInvoker, type CallWriter, type HttpInvokeOptions } from "./http-invoke.js";
import { openAiErrorFromConnect } from "./openai-error.js";
import { streamJsonWriter } from "./rest-sse.js";
import { parseJsonBody } from "./request-body.js";

export interface OpenAiEdgeOptions extends HttpInvokeOptions {
  /** The ChatService implementation the Connect router serves (the same object), invoked in-process. */
  readonly chat: ServiceImpl<typeof ChatService>;
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
  /**
   * The chat RPCs for JSON callers (chat-json.ts), run by the same core as `chat`: with it, chat requests
   * get JSON in and JSON out without protobuf messages.
   */
  readonly chatJson?: JsonChat | undefined;
}

/** A chat request taken as JSON, with the JSON chat that runs it. */
interface JsonChatCall {
  readonly chat: JsonChat;
  readonly json: JsonChatRequest;
}

/** Paths under the base URL `/openai/<product>/v1`, as OpenAI's SDKs call them. */
const prefix = "/openai/";
const chatPath = "/v1/chat/completions";
const modelsPath = "/v1/models";

type Endpoint =
  | { readonly kind: "chat" }
  | { readonly kind: "models" }
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
 * interceptors on the call path the REST transcoder uses (http-invoke.ts; docs/architecture.md, "HTTP
 * surfaces"): auth, limits, upstream and the access line are the same; only the routing, the framing and
 * the error body differ: OpenAI's `{"error": {"message", "type", "param", "code"}}` with the statuses of
 * the README's error table.
 */
export function createOpenAiEdge(options: OpenAiEdgeOptions): EdgeEntry {
  const maxBodyBytes = nonNegativeInt("createOpenAiEdge", "maxBodyBytes", options.maxBodyBytes);
  const chat = createServiceImplSpec<typeof ChatService>(ChatService, options.chat);
  const specOf = (method: DescMethod) => {
    const spec = chat.methods[method.localName];
    if (spec === undefined) throw new Error(`createOpenAiEdge: chat has no ${method.name}`);
    return {
      spec,
      url: `/${method.parent.typeName}/${method.name}`,
      rpc: `${method.parent.typeName}/${method.name}`,
    };
  };
  const unary = specOf(ChatService.method.createChatCompletion);
  const stream = specOf(ChatService.method.streamChatCompletion);
  const models = specOf(ChatService.method.listModels);
  const http = createHttpInvoker(options);
  compileJsonPlans([unary.spec.method.output, models.spec.method.input, models.spec.method.output]);

  const chatWriter: CallWriter = {
    error: openAiErrorFromConnect,
    unary: (message) => JSON.stringify(toRestJson(unary.spec.method.output, message)),
    stream: (request) => streamJsonWriter(stream.spec.method.output, request),
  };
  const modelsWriter: CallWriter = {
    ...chatWriter,
    unary: (message) => JSON.stringify(toRestJson(models.spec.method.output, message)),
  };
  const modelWriter = (id: string): CallWriter => ({
    ...chatWriter,
    unary: (message) => {
      const model = (message as ListModelsResponse).data.find((m) => m.id === id);
      if (model === undefined) throw new AppError("model_not_found", { param: "model" });
      return JSON.stringify(toRestJson(ModelSchema, model));
    },
  });

  async function handle(exchange: Exchange): Promise<void> {
    let target: { product: string; endpoint: Endpoint };
    let request: Message | JsonChatCall;
    try {
      target = route(exchange);
      const { product, endpoint } = target;
      // Read and prechecked by auth before any parse. For chat the parse tells which of the two RPCs
      // runs, so the precheck names the unary one (it only goes into its log line's procedure).
      const method = endpoint.kind === "chat" ? unary.spec.method : models.spec.method;
      const body = await http.read(exchange, method, maxBodyBytes);
      request =
        endpoint.kind === "chat"
          ? chatRequest(exchange, body, product, options.chatJson)
          : fromRestJson(models.spec.method.input, { product });
    } catch (thrown) {
      if (!(thrown instanceof AppError)) throw thrown;
      http.refuse(exchange, thrown, openAiErrorFromConnect);
      return;
    }
    const { endpoint } = target;
    if ("chat" in request) {
      const { chat, json } = request;
      const streaming = json.view.stream === true;
      const { spec, url, rpc } = streaming ? stream : unary;
      exchange.rpc = rpc;
      await http.invokeJson(
        exchange,
        streaming
          ? { spec, url, request: json, stream: chat.stream, text: chat.chunkText(json) }
          : {
              spec,
              url,
              request: json,
              unary: chat.complete,
              text: (answer) => JSON.stringify(answer),
            },
        openAiErrorFromConnect,
      );
      return;
    }
    const called =
      endpoint.kind !== "chat" ? models : (request as ChatCompletionRequest).stream === true ? stream : unary;
    exchange.rpc = called.rpc;
    const writer =
      endpoint.kind === "chat"
        ? chatWriter
        : endpoint.kind === "models"
          ? modelsWriter
          : modelWriter(endpoint.model);
    await http.invoke(exchange, { spec: called.spec, request, url: called.url }, writer);
  }

  const handler = http.handler("OpenAI surface", "openai", handle, openAiErrorFromConnect);
  return (next) => (exchange) => {
    if (exchange.path.startsWith(prefix)) handler(exchange);
    else next(exchange);
  };
}

/**
 * The product and endpoint of a path under `/openai/` (404 `route_not_found` for any other, 405 with
 * `Allow` for the wrong method). Path segments are percent-decoded: the SDKs encode a model id such as
 * `meta-llama/Llama-3-8B` as one segment.
 */
function route(exchange: Exchange): { product: string; endpoint: Endpoint } {
  const { path } = exchange;
  const slash = path.indexOf("/", prefix.length);
  const product = slash < 0 ? undefined : decode(path.slice(prefix.length, slash));
  const rest = slash < 0 ? "" : path.slice(slash);
  let endpoint: Endpoint | undefined;
  if (rest === chatPath) endpoint = { kind: "chat" };
  else if (rest === modelsPath) endpoint = { kind: "models" };
  else if (rest.startsWith(`${modelsPath}/`)) {
    const model = decode(rest.slice(modelsPath.length + 1));
    if (model !== undefined && model !== "") endpoint = { kind: "model", model };
  }
  if (product === undefined || product === "" || endpoint === undefined)
    throw new AppError("route_not_found");
  const allowed = endpoint.kind === "chat" ? "POST" : "GET";
  if (exchange.method !== allowed) throw new AppError("method_not_allowed", { headers: { allow: allowed } });
  return { product, endpoint };
}

/**
 * The chat request from the body: OpenAI's JSON with the product of the path (which wins), taken as JSON
 * (chat-json.ts); built as a message only when the edge has no JSON chat (chatJson unset).
 */
function chatRequest(
  exchange: Exchange,
  body: Buffer,
  product: string,
  chatJson: JsonChat | undefined,
): ChatCompletionRequest | JsonChatCall {
  const json = parseJsonBody(exchange.req, body);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AppError("invalid_argument", { message: "Request body must be a JSON object" });
  }
  const withProduct = { ...json, product };
  if (chatJson !== undefined) return { chat: chatJson, json: chatJson.take(withProduct) };
  return fromRestJson(ChatCompletionRequestSchema, withProduct);
}

function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
