import type { HandlerContext } from "@connectrpc/connect";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  notAChatCompletion,
  type AnswerCodec,
  type ChatCore,
  type ChatRequestView,
  type ChunkCodec,
} from "../chat/chat-core.js";
import type { JsonObject, TokenUsage } from "../chat/ports.js";
import type { JsonValue } from "../upstream/index.js";
import { compileJsonPlans, readAnswer, readRequest } from "../json/index.js";

/** A chat request from JSON: the core's view of the caller's (checked and normalized) JSON. */
export interface JsonChatRequest {
  readonly view: ChatRequestView;
  /** `stream_options.include_usage`: every chunk without usage then says `"usage": null`, as OpenAI's do. */
  readonly includeUsage: boolean;
}

/**
 * The chat RPCs for the JSON surfaces (REST `/v1/chat/<product>` and `:stream`, the OpenAI-compatible
 * route): JSON in, JSON out, one parse each way (docs/architecture.md, "JSON in, JSON out"). The chat
 * steps are the core's (src/chat/chat-core.ts), the very ones gRPC and Connect calls run.
 */
export interface JsonChat {
  /**
   * The request from the caller's REST JSON (with `product` set), checked against the contract and
   * normalized in place by the JSON engine (src/json/); throws AppError `invalid_argument` naming the key
   * for JSON the contract refuses (an unknown field, a wrong type...), leaving the JSON as it was.
   */
  readonly take: (json: JsonObject) => JsonChatRequest;
  /** CreateChatCompletion's steps; the answer is the provider's JSON, checked and normalized. */
  readonly complete: (request: JsonChatRequest, ctx: HandlerContext) => Promise<JsonObject>;
  /** StreamChatCompletion's steps; each chunk is the provider's JSON, checked and normalized. */
  readonly stream: (request: JsonChatRequest, ctx: HandlerContext) => AsyncIterable<JsonObject>;
  /** The SSE `data:` of each chunk of the request's stream (OpenAI's `"usage": null` rule). */
  readonly chunkText: (request: JsonChatRequest) => (chunk: JsonObject) => string;
}

export function createJsonChat(core: ChatCore): JsonChat {
  compileJsonPlans([ChatCompletionRequestSchema, ChatCompletionSchema, ChatCompletionChunkSchema]);
  return {
    take: (json) => {
      readRequest(ChatCompletionRequestSchema, json);
      return { view: viewOf(json), includeUsage: includeUsage(json) };
    },
    complete: (request, ctx) => core.complete(request.view, ctx, jsonAnswer),
    stream: (request, ctx) => core.stream(request.view, ctx, jsonChunk),
    chunkText: (request) => {
      if (!request.includeUsage) return (chunk) => JSON.stringify(chunk);
      return (chunk) => {
        if (chunk["usage"] === undefined) chunk["usage"] = null;
        return JSON.stringify(chunk);
      };
    },
  };
}

/** The view of normalized request JSON: every implicit field is there, unset optional ones are not. */
function viewOf(json: JsonObject): ChatRequestView {
  const messages = (json["messages"] as JsonObject[] | undefined) ?? [];
  return {
    product: json["product"] as string,
    model: json["model"] as string,
    stream: json["stream"] as boolean | undefined,
    maxTokens: json["max_tokens"] as number | undefined,
    maxCompletionTokens: json["max_completion_tokens"] as number | undefined,
    messageCount: messages.length,
    role: (i) => (messages[i]?.["role"] as string | undefined) ?? "",
    upstreamBody() {
      // A rest copy rather than `delete`, which would leave the object in V8's slow dictionary mode for
      // the JSON.stringify that follows.
      const { product: _product, ...body } = json;
      return body;
    },
  };
}

function includeUsage(json: JsonObject): boolean {
  const options = json["stream_options"];
  return typeof options === "object" && options !== null && !Array.isArray(options)
    ? options["include_usage"] === true
    : false;
}

/**
 * The provider's unary answer for a JSON caller: its JSON, checked against the contract and normalized in
 * place as the REST JSON writer would write it (fields the contract does not know are dropped); an answer
 * that does not fit is a 502 (chat-core.ts, notAChatCompletion).
 */
export const jsonAnswer: AnswerCodec<JsonObject> = (body, provider) => {
  const value = readAnswer(ChatCompletionSchema, body);
  if (value === undefined) throw notAChatCompletion(provider, notA(ChatCompletionSchema.typeName));
  return value;
};

/** A chunk of the provider's stream for a JSON caller, checked and normalized as `jsonAnswer`, and its usage. */
export const jsonChunk: ChunkCodec<JsonObject> = (chunk, provider) => {
  const value = readAnswer(ChatCompletionChunkSchema, chunk);
  if (value === undefined) throw notAChatCompletion(provider, notA(ChatCompletionChunkSchema.typeName));
  return { value, usage: usageOf(value["usage"]) };
};

const notA = (typeName: string): Error => new Error(`the JSON does not fit ${typeName}`);

/** A normalized `usage` object's counts (its implicit fields are all there). */
function usageOf(usage: JsonValue | undefined): TokenUsage | undefined {
  if (typeof usage !== "object" || usage === null || Array.isArray(usage)) return undefined;
  return {
    promptTokens: usage["prompt_tokens"] as number,
    completionTokens: usage["completion_tokens"] as number,
    totalTokens: usage["total_tokens"] as number,
  };
}
