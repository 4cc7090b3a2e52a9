import type { DescMethod, Message } from "@bufbuild/protobuf";
import type { ServiceImplSpec } from "@connectrpc/connect";
import {
  ChatCompletionRequestSchema,
  ChatService,
  ModelSchema,
  type ChatCompletionRequest,
  type ListModelsResponse,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import type { EdgeEntry, Exchange } from "../edge/index.js";
import { AppError } from "../errors/index.js";
import type { CallWriter, HttpCaller } from "./http-call.js";
import { parseJsonBody } from "./json-body.js";
import { openAiErrorFromConnect } from "./openai-error.js";
import { readBody } from "./read-body.js";
import { fromRestJson, toRestJson } from "./rest-json.js";
import { streamJsonWriter } from "./sse.js";

export interface OpenAiEdgeOptions {
  /** The services registered on the Connect router (see recordServices); ChatService must be one of them. */
  readonly services: readonly ServiceImplSpec[];
  /** The in-process call path the REST transcoder uses too: same interceptors, deadline and shutdown. */
  readonly caller: HttpCaller;
  /** Largest accepted request body in bytes; larger bodies get 413 before they are read in full. */
  readonly maxBodyBytes: number;
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
 * interceptors by the same call path as the REST transcoder (auth, limits, upstream and the access line
 * are the same); only the framing and the error body differ: OpenAI's `{"error": {"message", "type",
 * "param", "code"}}` with the statuses of the README's error table.
 */
export function createOpenAiEdge(options: OpenAiEdgeOptions): EdgeEntry {
  if (!Number.isSafeInteger(options.maxBodyBytes) || options.maxBodyBytes < 0) {
    throw new Error(
      `createOpenAiEdge: maxBodyBytes must be a non-negative integer, got ${String(options.maxBodyBytes)}`,
    );
  }
  const chat = options.services.find((s) => s.service.typeName === ChatService.typeName);
  const specOf = (method: DescMethod) => {
    const spec = chat?.methods[method.localName];
    if (spec === undefined) throw new Error("createOpenAiEdge: ChatService is not among the services");
    return {
      spec,
      url: `/${method.parent.typeName}/${method.name}`,
      rpc: `${method.parent.typeName}/${method.name}`,
    };
  };
  const unary = specOf(ChatService.method.createChatCompletion);
  const stream = specOf(ChatService.method.streamChatCompletion);
  const models = specOf(ChatService.method.listModels);
  const { caller, maxBodyBytes } = options;

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

  async function handle(exchange: Exchange, signal: AbortSignal): Promise<void> {
    let target: { product: string; endpoint: Endpoint };
    let request: Message;
    let body: Buffer = emptyBody;
    try {
      target = route(exchange);
      const { product, endpoint } = target;
      if (endpoint.kind === "chat") {
        const read = await readBody(exchange.req, maxBodyBytes);
        if (read === undefined) throw new AppError("request_too_large");
        body = read;
        request = chatRequest(exchange, body, product);
      } else {
        request = fromRestJson(models.spec.method.input, { product });
      }
    } catch (thrown) {
      if (!(thrown instanceof AppError)) throw thrown;
      caller.refuse(exchange, thrown, openAiErrorFromConnect);
      return;
    }
    const { endpoint } = target;
    const called =
      endpoint.kind !== "chat" ? models : (request as ChatCompletionRequest).stream === true ? stream : unary;
    exchange.rpc = called.rpc;
    const writer =
      endpoint.kind === "chat"
        ? chatWriter
        : endpoint.kind === "models"
          ? modelsWriter
          : modelWriter(endpoint.model);
    await caller.invoke(exchange, signal, { spec: called.spec, request, body, url: called.url }, writer);
  }

  const handler = caller.handler("OpenAI surface", "openai", handle, openAiErrorFromConnect);
  return (next) => (exchange) => {
    if (exchange.path.startsWith(prefix)) handler(exchange);
    else next(exchange);
  };
}

const emptyBody = Buffer.alloc(0);

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

/** The chat request from the body: OpenAI's JSON with the product of the path (which wins). */
function chatRequest(exchange: Exchange, body: Buffer, product: string): ChatCompletionRequest {
  const json = parseJsonBody(exchange.req, body);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AppError("invalid_argument", { message: "Request body must be a JSON object" });
  }
  return fromRestJson(ChatCompletionRequestSchema, { ...json, product });
}

function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
